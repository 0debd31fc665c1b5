"""Per-host layers: finding a host's diff, and carrying it onto a new model image (rebase)."""
