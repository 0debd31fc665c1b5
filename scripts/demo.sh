#!/usr/bin/env bash
# The main job on an embedded default: a sample Windows-like tree is imaged, changed, and the
# change shipped as a differential image; both are verified, then restored into an empty folder,
# and the diff applied to a copy of the base, each compared with the model.
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

echo "== 2. full image: $OUT/base.img"
diffimg create "$OUT/model" "$OUT/base.img"
diffimg compare -q "$OUT/base.img" "$OUT/model"
echo "   the image's tree and the model are identical"

echo "== 3. change about 3% of the model (new, changed, renamed, deleted, chmod/touch only)"
"$PYTHON" bench/gentree.py "$OUT/model" --mutate 0.03 >/dev/null

echo "== 4. differential image, hashing every file: $OUT/change.diff"
diffimg diff --checksum "$OUT/model" "$OUT/base.img" -o "$OUT/change.diff"

echo "== 5. verify the chain (metadata, parent IDs, every stored byte)"
diffimg verify "$OUT/base.img" "$OUT/change.diff"

echo "== 6. the chain's tree equals the changed model, hashing every file"
diffimg compare -q --checksum "$OUT/change.diff" "$OUT/model"

echo "== 7. restore base + diff into an empty folder, then compare it with the model (hashing)"
mkdir "$OUT/restored"
diffimg restore "$OUT/base.img" "$OUT/change.diff" "$OUT/restored"
diffimg compare -q --checksum "$OUT/model" "$OUT/restored"
echo "   the restored folder equals the changed model in every recorded attribute"

echo "== 8. a machine still on the base: restore the base alone, then apply the diff to it"
mkdir "$OUT/machine"
diffimg restore -q "$OUT/base.img" "$OUT/machine"
diffimg apply "$OUT/change.diff" "$OUT/machine"
diffimg compare -q --checksum "$OUT/model" "$OUT/machine"
echo "   the machine equals the changed model; apply touched only the paths the diff changes"
echo "== 9. which image is on the machine, and has anyone changed it since?"
diffimg status "$OUT/machine"

diffimg info --json "$OUT/base.img" > "$OUT/base.json"
diffimg info --json "$OUT/change.diff" > "$OUT/change.json"
echo "== summary"
"$PYTHON" - "$OUT/base.json" "$OUT/change.json" <<'PY'
import json, sys
base, change = (json.load(open(p)) for p in sys.argv[1:])
mib = 2 ** 20
print(f"   base: {base['entries']:,} entries, {base['stored_bytes'] / mib:.1f} MiB stored, "
      f"container {base['container_bytes'] / mib:.1f} MiB, tree {base['tree_id']}")
print(f"   diff: {change['stored_files']:,} files, {change['stored_bytes'] / mib:.1f} MiB stored, "
      f"container {change['container_bytes'] / mib:.1f} MiB, tree {change['tree_id']}")
print("   changes: " + ", ".join(f"{n} {a}" for a, n in sorted(change["changes"].items())))
PY
echo "demo: OK"
