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
- scan and create through libntfs-3g (the default for a partition given as itself) against the
  same through ntfs-3g's mount (DIFFIMG_NTFS_FUSE=1);
- status of the restored volume, and diff of a copy with 1% of its files changed, against
  `wimcapture CHANGED delta.wim --update-of=base.wim:1 --delta-from=base.wim`;
- restore of the base onto another such copy (only what differs is written), against
  wimapply onto a fresh volume.
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


def change_one_percent(volume, point):
    """Rewrite every 100th file of the volume (mounted with ntfs-3g for it): a 1% change."""
    mount(volume, point)
    try:
        count = 0
        for folder, _, files in os.walk(point):
            for name in sorted(files):
                count += 1
                if count % 100 == 0:
                    with open(os.path.join(folder, name), "ab") as f:
                        f.write(b"changed %d" % count)
        return count // 100
    finally:
        umount(point)


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

    changed = os.path.join(w, "changed.ntfs")
    fuse = ["env", "DIFFIMG_NTFS_FUSE=1"]
    delta_wim = os.path.join(w, "delta.wim")
    again = os.path.join(w, "again.ntfs")
    rows = [
        # key, label, prepare, command
        ("scan", "diffimg scan VOLUME (libntfs-3g)", None,
         ours + ["scan", source, "-q", "-o", os.path.join(w, "scan.dimf")]),
        ("scan_fuse", "diffimg scan VOLUME through ntfs-3g's mount", None,
         fuse + ours + ["scan", source, "-q", "-o", os.path.join(w, "scan.dimf")]),
        ("create", "diffimg create VOLUME (libntfs-3g)", lambda: remove(base_img),
         ours + ["create", source, base_img, "-q"]),
        ("create_fuse", "diffimg create VOLUME through ntfs-3g's mount", lambda: remove(base_img),
         fuse + ours + ["create", source, base_img, "-q"]),
        ("wimcapture", "wimcapture VOLUME (NTFS mode)", lambda: remove(base_wim),
         ["wimcapture", source, base_wim, "--config=/dev/null"]),
        ("wimapply", "wimapply onto a fresh volume (+ sync)", lambda: new_volume(fresh, size),
         synced(["wimapply", base_wim, "1", fresh])),
        ("restore", "diffimg restore onto a fresh volume (+ sync)", lambda: new_volume(fresh, size),
         synced(ours + ["restore", base_img, fresh, "-q"])),
        # (right after the restore: fresh holds what diffimg restored)
        ("status", "diffimg status RESTORED (libntfs-3g)", None, ours + ["status", fresh]),
        ("diff", "diffimg diff CHANGED base.img (1% changed)",
         lambda: remove(os.path.join(w, "d1.img")),
         ours + ["diff", changed, base_img, "-o", os.path.join(w, "d1.img"), "-q"]),
        ("wimdelta", "wimcapture CHANGED --update-of --delta-from (1% changed)",
         lambda: remove(delta_wim),
         ["wimcapture", changed, delta_wim, "--config=/dev/null", f"--update-of={base_wim}:1",
          f"--delta-from={base_wim}"]),
        # a lab PC holding the base with 1% of its files changed, brought back to the base
        ("restore_changed", "diffimg restore base.img onto CHANGED (1% changed, + sync)",
         lambda: (subprocess.run(["cp", "--sparse=always", source, again], check=True),
                  change_one_percent(again, point)),
         synced(ours + ["restore", base_img, again, "-q"])),
    ]
    results = {}
    for key, label, prepare, cmd in rows:
        if key == "diff":
            log("changing 1% of the files of a copy ...")
            subprocess.run(["cp", "--sparse=always", source, changed], check=True)
            results["changed_files"] = change_one_percent(changed, point)
        best = None
        for _ in range(args.repeat):
            if prepare is not None:
                prepare()
            log(f"run {key} ...")
            r = run(cmd)
            if r["rc"] != 0:
                sys.exit(f"{label} failed: {r['error']}")
            if best is None or r["seconds"] < best[0]:
                best = (r["seconds"], r.get("rss_kib"))
        results[key] = {"label": label, "seconds": best[0], "peak_rss_kib": best[1],
                        "command": " ".join(map(str, cmd))}
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
    finally:
        umount(point)
        umount(restored)
    print(f"NTFS volume: {args.entries:,} entries written by gentree.py, {args.bytes / 1e6:.0f} MB; "
          f"best of {args.repeat}, warm cache; {results.pop('changed_files')} files changed for the "
          "diff\n")
    print("| work | diffimg | peer | ratio |\n|---|---|---|---|")
    for ours_key, peer_key in (("scan", "scan_fuse"), ("create", "wimcapture"),
                               ("create_fuse", "wimcapture"), ("restore", "wimapply"),
                               ("restore_changed", "wimapply"), ("status", "wimdelta"),
                               ("diff", "wimdelta"),
                               ("compare", "rsync_n")):
        a, b = results[ours_key], results[peer_key]
        print(f"| {a['label']} | {a['seconds']:.2f} s | {b['label']} {b['seconds']:.2f} s | "
              f"{a['seconds'] / b['seconds']:.2f}x |")
    print("\nPeak memory: " + ", ".join(f"{k} {v['peak_rss_kib'] / 1024:.0f} MiB"
                                        for k, v in results.items() if v.get("peak_rss_kib")))
    print("\nCommands:\n" + "\n".join(f"- {r['label']}: `{r['command']}`" for r in results.values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results}, f, indent=2)


if __name__ == "__main__":
    main()
