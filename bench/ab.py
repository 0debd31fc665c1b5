#!/usr/bin/env python3
"""Time two checkouts of diffimg side by side: diff, restore and apply at 100k entries.

    python bench/ab.py OLD_CHECKOUT NEW_CHECKOUT [--repeat 3] [--rows diff,apply] [--workdir DIR]

For a change that must not change speed (a refactor): each repetition runs every row with the
old code, then with the new, so both see the same machine state; prints the medians and the
ratio new / old. Reuses bench_images.py's work folder (T0 = tree, T1 = t1, base.img, d.img:
run bench_images.py and bench_restore.py once first). Run as root (restore mounts images).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def run_timed(cmd, env, ok=(0,)) -> float:
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - started
    if proc.returncode not in ok:
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def fresh(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/var/tmp/diffimg-bench-images")
    ap.add_argument("--rows", help="comma-separated row names to run (default: all)")
    args = ap.parse_args()
    w = args.workdir
    t0, t1, base, d = (os.path.join(w, n) for n in ("tree", "t1", "base.img", "d.img"))
    out, target = os.path.join(w, "ab-out.img"), os.path.join(w, "ab-target")
    py = [sys.executable, "-m", "diffimg"]

    def empty():
        fresh(target)
        os.mkdir(target)

    def copy_t0():
        fresh(target)
        subprocess.run(["cp", "-a", t0, target], check=True)

    rows = [  # name, prepare, command, accepted exit codes
        ("diff", lambda: fresh(out), py + ["diff", t1, base, "-o", out, "-q"], (0,)),
        ("apply", copy_t0, py + ["apply", d, target, "-q"], (0,)),
        ("restore-used", copy_t0, py + ["restore", "--yes", base, d, target, "-q"], (0,)),
        ("restore-empty", empty, py + ["restore", "--yes", base, d, target, "-q"], (0,)),
    ]
    if args.rows:
        rows = [r for r in rows if r[0] in args.rows.split(",")]
    times = {(name, side): [] for name, *_ in rows for side in ("old", "new")}
    for _ in range(args.repeat):
        for name, prepare, cmd, ok in rows:
            for side in ("old", "new"):
                env = dict(os.environ, PYTHONPATH=os.path.abspath(getattr(args, side)))
                prepare()
                subprocess.run(["sync"])
                times[name, side].append(run_timed(cmd, env, ok))
    fresh(out)
    fresh(target)
    print(f"{'row':<14} {'old s':>8} {'new s':>8} {'new/old':>8}   runs old | new")
    for name, *_ in rows:
        old, new = statistics.median(times[name, "old"]), statistics.median(times[name, "new"])
        runs = " ".join(f"{t:.2f}" for t in times[name, "old"]) + " | " + \
            " ".join(f"{t:.2f}" for t in times[name, "new"])
        print(f"{name:<14} {old:>8.2f} {new:>8.2f} {new / old:>8.3f}   {runs}")


if __name__ == "__main__":
    main()
