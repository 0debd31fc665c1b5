#!/usr/bin/env python3
"""Windows partitions: diffimg against wimlib in NTFS mode, on a real NTFS volume in a file.

    python bench/bench_ntfs.py [--entries 50000] [--bytes 500M] [--workdir DIR] [--repeat 2]

gentree.py writes its Windows-like tree onto a fresh NTFS volume (mkntfs, mounted with ntfs-3g);
then, side by side, warm cache:
- capture: `diffimg create VOLUME base.img` (the volume file, mounted read-only by diffimg)
  against `wimcapture VOLUME base.wim --config=/dev/null` (wimlib reads it with libntfs-3g);
- restore onto a fresh volume: `diffimg restore base.img FRESH` (mounted with ntfs-3g) against
  `wimapply base.wim 1 FRESH` (libntfs-3g), both followed by sync;
- compare: `diffimg compare base.img MOUNT` against `rsync -aHAXn --delete MOUNT/ RESTORED/`;
- the cost of the NTFS attributes: a scan of the mounted volume asking for them (as diffimg
  does) against the same scan without them, per entry.
Run as root; needs ntfs-3g and wimtools. Prints a table and writes --json if asked.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gentree  # noqa: E402  (found through the sys.path line above)
from bench_scan import run  # noqa: E402

PY = sys.executable


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def new_volume(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkntfs", "-q", "-F", "-f", path], check=True, capture_output=True)


def mount(volume, point):
    os.makedirs(point, exist_ok=True)
    subprocess.run(["ntfs-3g", volume, point], check=True)


def umount(point):
    subprocess.run(["umount", point], check=False, capture_output=True)


def ensure_source(w, entries, total):
    volume = os.path.join(w, "source.ntfs")
    done = os.path.join(w, "source.json")
    want = {"entries": entries, "bytes": total}
    if os.path.exists(done):
        with open(done) as f:
            if json.load(f) == want:
                log(f"reusing {volume}")
                return volume
    size = int(total * 1.6) + (256 << 20)
    new_volume(volume, size)
    point = os.path.join(w, "mnt")
    mount(volume, point)
    try:
        log(f"writing {entries:,} entries onto NTFS ...")
        started = time.perf_counter()
        gentree.generate(os.path.join(point, ""), entries, seed=3, total_bytes=total)
        log(f"  {time.perf_counter() - started:.1f} s")
    finally:
        umount(point)
    with open(done, "w") as f:
        json.dump(want, f)
    return volume


def scan_cost(point, repeat):
    """Seconds of a scan of the mounted volume with and without the NTFS attributes asked."""
    code = f"""
import sys, time
from diffimg import ntfs, scanner
if sys.argv[1] == "without":
    ntfs.Volume.of = classmethod(lambda cls, where, mount_point: cls())
started = time.perf_counter()
n = sum(1 for _ in scanner.scan({point!r}, checksum=False, previous=None, windows_files=True))
print(n, time.perf_counter() - started)
"""
    out = {}
    for how in ("with", "without"):
        best = None
        for _ in range(repeat):
            done = subprocess.run([PY, "-c", code, how], capture_output=True, text=True, check=True,
                                  env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
            n, seconds = done.stdout.split()
            best = min(best or float(seconds), float(seconds))
        out[how] = (int(n), best)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=50_000)
    ap.add_argument("--bytes", type=gentree.parse_bytes, default=500 << 20)
    ap.add_argument("--workdir", default="/var/tmp/diffimg-bench-ntfs")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    w = args.workdir
    os.makedirs(w, exist_ok=True)
    source = ensure_source(w, args.entries, args.bytes)
    size = os.path.getsize(source)
    fresh = os.path.join(w, "fresh.ntfs")
    base_img, base_wim = os.path.join(w, "base.img"), os.path.join(w, "base.wim")
    point, restored = os.path.join(w, "mnt"), os.path.join(w, "restored")
    ours = [PY, "-m", "diffimg"]

    def synced(cmd):
        return ["sh", "-c", '"$0" "$@" && sync'] + cmd

    def remove(*paths):
        for p in paths:
            if os.path.exists(p):
                os.remove(p)

    rows = [
        # key, label, prepare, command
        ("create", "diffimg create VOLUME", lambda: remove(base_img),
         ours + ["create", source, base_img, "-q"]),
        ("wimcapture", "wimcapture VOLUME (NTFS mode)", lambda: remove(base_wim),
         ["wimcapture", source, base_wim, "--config=/dev/null"]),
        ("restore", "diffimg restore onto a fresh volume (+ sync)", lambda: new_volume(fresh, size),
         synced(ours + ["restore", base_img, fresh, "-q"])),
        ("wimapply", "wimapply onto a fresh volume (+ sync)", lambda: new_volume(fresh, size),
         synced(["wimapply", base_wim, "1", fresh])),
    ]
    results = {}
    for key, label, prepare, cmd in rows:
        best = None
        for _ in range(args.repeat):
            prepare()
            log(f"run {key} ...")
            r = run(cmd)
            if r["rc"] != 0:
                sys.exit(f"{label} failed: {r['error']}")
            best = min(best or r["seconds"], r["seconds"])
        results[key] = {"label": label, "seconds": best, "command": " ".join(map(str, cmd))}
    # compare: our image against the mounted source, rsync between the source and a restore
    new_volume(fresh, size)
    subprocess.run(ours + ["restore", base_img, fresh, "-q"], check=True)
    mount(source, point)
    mount(fresh, restored)
    try:
        for key, label, cmd, ok in (
                ("compare", "diffimg compare base.img MOUNT", ours + ["compare", base_img, point, "-q"],
                 (0,)),
                ("rsync_n", "rsync -aHAXn --delete MOUNT/ RESTORED/",
                 ["rsync", "-aHAXn", "--delete", point + "/", restored + "/"], (0,))):
            best = None
            for _ in range(args.repeat):
                log(f"run {key} ...")
                r = run(cmd)
                if r["rc"] not in ok:
                    sys.exit(f"{label} failed: {r['error']}")
                best = min(best or r["seconds"], r["seconds"])
            results[key] = {"label": label, "seconds": best, "command": " ".join(map(str, cmd))}
        cost = scan_cost(point, args.repeat)
    finally:
        umount(point)
        umount(restored)
    n = cost["with"][0]
    per_entry_us = (cost["with"][1] - cost["without"][1]) / n * 1e6
    print(f"NTFS volume: {args.entries:,} entries written by gentree.py, {args.bytes / 1e6:.0f} MB; "
          f"best of {args.repeat}, warm cache\n")
    print("| work | diffimg | peer | ratio |\n|---|---|---|---|")
    for ours_key, peer_key in (("create", "wimcapture"), ("restore", "wimapply"),
                               ("compare", "rsync_n")):
        a, b = results[ours_key], results[peer_key]
        print(f"| {a['label']} | {a['seconds']:.2f} s | {b['label']} {b['seconds']:.2f} s | "
              f"{a['seconds'] / b['seconds']:.2f}x |")
    print(f"\nScan of the mounted volume ({n:,} entries): {cost['with'][1]:.2f} s asking for the "
          f"NTFS attributes, {cost['without'][1]:.2f} s without: {per_entry_us:.0f} us per entry.")
    print("\nCommands:\n" + "\n".join(f"- {r['label']}: `{r['command']}`" for r in results.values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "scan_cost": cost}, f, indent=2)


if __name__ == "__main__":
    main()
