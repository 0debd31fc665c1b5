#!/usr/bin/env python3
"""diffimg convert against its parts: a partclone image of a 2 GiB ext4 volume.

    python bench/bench_convert.py [--entries 50000] [--bytes 1200M] [--workdir DIR] [--repeat 2]

gentree.py writes its tree onto a fresh ext4 volume in a file; partclone.ext4 clones it, and
zstd compresses the clone (as Clonezilla does). Then, side by side, warm cache:
- `diffimg convert CLONE.zst out.img`, while the size on disk of its temporary folder is
  sampled every 50 ms (its peak: the temporary space convert needs);
- the same by hand: `zstd -dc CLONE.zst | partclone.restore -C -s - -O VOLUME`, the volume
  extended to its full size and mounted read-only with a loop device, `diffimg create MOUNT
  out.img`, unmount.
The target: convert takes no longer than the hand-made way, and its temporary space is no
more than the filesystem's used blocks (the partclone header's, shown too).
Run as root; needs partclone and zstd. Prints a table and writes --json if asked.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import gentree  # noqa: E402  (found through the sys.path lines above)
from bench_scan import run  # noqa: E402

from diffimg.make.convert import compression_of, parts_of, read_header  # noqa: E402

PY = sys.executable
VOLUME_SIZE = 2 << 30


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ensure_clone(w, entries, total):
    clone = os.path.join(w, "volume.ptcl-img.zst")
    done = os.path.join(w, "clone.json")
    want = {"entries": entries, "bytes": total, "size": VOLUME_SIZE}
    if os.path.exists(done):
        with open(done) as f:
            if json.load(f) == want:
                log(f"reusing {clone}")
                return clone
    volume = os.path.join(w, "volume.ext4")
    with open(volume, "wb") as f:
        f.truncate(VOLUME_SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", volume], check=True)
    point = os.path.join(w, "mnt")
    os.makedirs(point, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", volume, point], check=True)
    try:
        log(f"writing {entries:,} entries onto ext4 ...")
        # (in a folder of its own, beside lost+found)
        gentree.generate(os.path.join(point, "data", ""), entries, seed=5, total_bytes=total)
    finally:
        subprocess.run(["umount", point], check=True)
    log("cloning with partclone.ext4 | zstd ...")
    subprocess.run(f"partclone.ext4 -q -c -s {volume} -o - | zstd -q -3 -T0 > {clone}",
                   shell=True, check=True, capture_output=True)
    os.remove(volume)
    with open(done, "w") as f:
        json.dump(want, f)
    return clone


class PeakSpace:
    """The peak bytes on disk of the folders named .diffimg-convert-* in where, sampled."""

    def __init__(self, where):
        self.where, self.peak, self._stop = where, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.05):
            used = 0
            for name in os.listdir(self.where):
                if name.startswith(".diffimg-convert-"):
                    for folder, _, files in os.walk(os.path.join(self.where, name)):
                        for f in files:
                            try:
                                used += os.lstat(os.path.join(folder, f)).st_blocks * 512
                            except OSError:
                                pass
            self.peak = max(self.peak, used)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=50_000)
    ap.add_argument("--bytes", type=gentree.parse_bytes, default=1200 << 20)
    ap.add_argument("--workdir", default="/var/tmp/diffimg-bench-convert")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    w = args.workdir
    os.makedirs(w, exist_ok=True)
    clone = ensure_clone(w, args.entries, args.bytes)
    parts = parts_of(clone)
    with open(clone, "rb") as f:
        header = read_header(parts, compression_of(f.read(16))[1], clone)
    out, raw, point = os.path.join(w, "out.img"), os.path.join(w, "volume.raw"), os.path.join(w, "mnt")
    by_hand = (f"touch {raw} && zstd -dc {clone} | partclone.restore -q -C -s - -O {raw} -L {raw}.log && "
               f"truncate -s {header.device_size} {raw} && mount -o loop,ro {raw} {point} && "
               f"{PY} -m diffimg create {point} {out} -q; rc=$?; umount {point}; exit $rc")

    def remove():
        for p in (out, raw, raw + ".log"):
            if os.path.exists(p):
                os.remove(p)

    results = {}
    for key, label, cmd in (("convert", "diffimg convert CLONE.zst", [PY, "-m", "diffimg", "convert",
                                                                       clone, out, "-q"]),
                            ("by_hand", "zstd -dc | partclone.restore, mount, diffimg create",
                             by_hand)):
        best, peak = None, 0
        for _ in range(args.repeat):
            remove()
            log(f"run {key} ...")
            with PeakSpace(w) as space:
                r = run(cmd)
            if r["rc"] != 0:
                sys.exit(f"{label} failed: {r['error']}")
            best = min(best or r["seconds"], r["seconds"])
            peak = max(peak, space.peak)
        results[key] = {"label": label, "seconds": best, "temp_peak_bytes": peak,
                        "command": cmd if isinstance(cmd, str) else " ".join(cmd)}
    remove()
    shutil.rmtree(point, ignore_errors=True)
    a, b = results["convert"], results["by_hand"]
    print(f"ext4 volume of {VOLUME_SIZE >> 30} GiB: {args.entries:,} entries written by gentree.py, "
          f"{header.used_bytes / 2**30:.2f} GiB used (partclone header), clone compressed with "
          f"zstd -3 ({os.path.getsize(clone) / 2**30:.2f} GiB); best of {args.repeat}, warm cache\n")
    print("| work | seconds | ratio |\n|---|---|---|")
    print(f"| {a['label']} | {a['seconds']:.2f} s | {a['seconds'] / b['seconds']:.2f}x |")
    print(f"| {b['label']} | {b['seconds']:.2f} s | 1.00x |")
    print(f"\nTemporary space of convert at its peak: {a['temp_peak_bytes'] / 2**30:.2f} GiB, "
          f"{a['temp_peak_bytes'] / header.used_bytes:.2f}x the used blocks.")
    print("\nCommands:\n" + "\n".join(f"- {r['label']}: `{r['command']}`" for r in results.values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "used_bytes": header.used_bytes}, f, indent=2)


if __name__ == "__main__":
    main()
