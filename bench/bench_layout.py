#!/usr/bin/env python3
"""Which squashfs layout suits clients that fetch only what they lack (issue 14).

Packs one tree twice with the options diffimg's squashfs containers use (zstd level 9), with
mksquashfs's default fragments and with -no-fragments, and for a scattered share of the files
(the same seeded sample for both) computes, with diffimg's own range planner (remote.py):
the compressed bytes those files take in the container, the bytes a client would fetch for them
(fragments are fetched whole; nearby ranges merged) and the requests it would make.

    python bench/bench_layout.py [--tree DIR | --entries N] [--share 0.01] [--seed 1]
"""

import argparse
import json
import mmap
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from diffimg.image import squashmap  # noqa: E402
from diffimg.image.remote import MERGE_GAP, merge_spans  # noqa: E402
from diffimg.system.http import MAX_RANGES  # noqa: E402

SIZE = squashmap.SIZE_MASK


def pack(tree: str, out: str, fragments: bool) -> float:
    cmd = ["mksquashfs", tree, out, "-comp", "zstd", "-Xcompression-level", "9", "-noappend",
           "-quiet", "-no-progress", "-processors", str(os.cpu_count() or 1)]
    if not fragments:
        cmd.append("-no-fragments")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def fetch_cost(image: str, sample: set) -> dict:
    with open(image, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as data:
        m = squashmap.read_map(data, len(data))
        bs = m["block_size"]
        # a fragment's uncompressed length: the tails it holds (for each tail's share of it)
        frag_plain = {}
        for _path, _start, _words, frag, off, size in m["files"]:
            if frag is not None:
                frag_plain[frag] = max(frag_plain.get(frag, 0), off + size % bs)
        lacked = 0.0
        spans = []
        frags = set()
        files = 0
        for path, start, words, frag, _off, size in m["files"]:
            if path not in sample:
                continue
            files += 1
            span = sum(w & SIZE for w in words)
            lacked += span
            if span:
                spans.append((start, span))
            if frag is not None:
                fstart, fword = m["fragments"][frag]
                lacked += (size % bs) * (fword & SIZE) / frag_plain[frag]
                frags.add((fstart, fword & SIZE))
        spans += sorted(frags)
        ranges = merge_spans(spans, MERGE_GAP)
        fetched = sum(n for _, n in ranges)
        return {"files": files, "lacked_bytes": int(lacked), "fetched_bytes": fetched,
                "ranges": len(ranges), "requests": -(-len(ranges) // MAX_RANGES),
                "ratio": fetched / lacked if lacked else 0.0,
                "image_bytes": os.path.getsize(image), "fragments": len(m["fragments"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree")
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--share", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default="/var/tmp/diffimg-bench-layout")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    tree = args.tree
    if tree is None:
        tree = os.path.join(args.work, "tree")
        if not os.path.isdir(tree):
            subprocess.run([sys.executable, os.path.join(HERE, "gentree.py"), tree, "--entries",
                            str(args.entries)], check=True)
    files = []
    for folder, _dirs, names in os.walk(tree):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path):
                files.append(os.fsencode(os.path.relpath(path, tree)))
    files.sort()
    sample = set(random.Random(args.seed).sample(files, max(1, int(len(files) * args.share))))
    results = {}
    tmp = tempfile.mkdtemp(dir=args.work)
    try:
        for name, fragments in (("fragments", True), ("no-fragments", False)):
            out = os.path.join(tmp, name + ".sqfs")
            seconds = pack(tree, out, fragments)
            results[name] = {"pack_seconds": round(seconds, 2), **fetch_cost(out, sample)}
            os.unlink(out)
    finally:
        shutil.rmtree(tmp)
    print(f"tree {tree}: {len(files):,} non-empty files; a client lacking {len(sample):,} "
          f"({args.share:.0%}), scattered (seed {args.seed})")
    print(f"{'layout':14} {'image':>12} {'pack':>7} {'lacked':>12} {'fetched':>12} {'ratio':>6} "
          f"{'ranges':>7} {'requests':>8}")
    for name, r in results.items():
        print(f"{name:14} {r['image_bytes']:>12,} {r['pack_seconds']:>6.2f}s {r['lacked_bytes']:>12,} "
              f"{r['fetched_bytes']:>12,} {r['ratio']:>5.2f}x {r['ranges']:>7,} {r['requests']:>8}")
    grow = results["no-fragments"]["image_bytes"] / results["fragments"]["image_bytes"] - 1
    print(f"-no-fragments makes the image {grow:+.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tree": tree, "share": args.share, "seed": args.seed, **results}, f, indent=1)


if __name__ == "__main__":
    main()
