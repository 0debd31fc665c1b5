#!/usr/bin/env bash
# The main job on an embedded default: a sample Windows-like tree is recorded, changed, and the
# change found exactly. (It grows with create/diff/restore as those commands land.)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${DEMO_OUT:-demo-out}
ENTRIES=${DEMO_ENTRIES:-5000}
diffimg() { "$PYTHON" -m diffimg "$@"; }

rm -rf "$OUT"
mkdir -p "$OUT"
echo "== 1. a sample Windows-like tree of $ENTRIES entries: $OUT/model"
"$PYTHON" bench/gentree.py "$OUT/model" --entries "$ENTRIES" --bytes 150M >/dev/null

echo "== 2. scan it: $OUT/model.dimf"
diffimg scan "$OUT/model" -o "$OUT/model.dimf"
diffimg compare -q "$OUT/model" "$OUT/model.dimf"
echo "   the tree and its manifest are identical"

echo "== 3. change about 3% of it (new, changed, renamed, deleted, chmod/touch only)"
"$PYTHON" bench/gentree.py "$OUT/model" --mutate 0.03 >/dev/null

echo "== 4. rescan: quickly (trusting size+mtime of unchanged files), then hashing everything"
diffimg scan "$OUT/model" -o "$OUT/changed-quick.dimf" --previous "$OUT/model.dimf"
diffimg scan "$OUT/model" -o "$OUT/changed.dimf" --checksum

echo "== 5. compare the manifests before and after"
summary() {  # summary JSON-FILE: counts of a compare --json document
  "$PYTHON" - "$1" <<'PY'
import collections, json, sys
doc = json.load(open(sys.argv[1]))
counts = collections.Counter(d["change"] for d in doc["differences"])
fields = collections.Counter(f for d in doc["differences"] for f in d["fields"])
print(f"   {len(doc['differences'])} differences: " +
      ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) +
      ("; fields: " + ", ".join(f"{f} {n}" for f, n in fields.most_common(6)) if fields else ""))
PY
}
expect_differences() {  # expect_differences OUT.json A B: compare must exit 1
  local rc=0
  diffimg compare --json "$2" "$3" > "$1" || rc=$?
  [ "$rc" -eq 1 ] || { echo "demo: expected differences (exit 1), got exit $rc" >&2; exit 1; }
  summary "$1"
}
expect_differences "$OUT/changes.json" "$OUT/model.dimf" "$OUT/changed.dimf"
echo "   what the quick rescan missed (content changed, size and mtime kept):"
expect_differences "$OUT/missed.json" "$OUT/changed-quick.dimf" "$OUT/changed.dimf"

echo "== 6. check: the changed tree equals its new manifest, hashing every file"
diffimg compare -q --checksum "$OUT/model" "$OUT/changed.dimf"
echo "demo: OK"
