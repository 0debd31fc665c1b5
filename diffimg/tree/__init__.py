"""A tree as data: its manifest (entries, stat proofs), the delta between two trees, and the merges and
comparisons over canonical order."""
