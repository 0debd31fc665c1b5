#!/usr/bin/env python3
"""Time issue 8's exact-by-default diff and restore against the old quick rules.

    python bench/bench_exact.py [--entries 100000] [--workdir /var/tmp/diffimg-bench-exact]
                                [--source /var/tmp/diffimg-bench-images] [--repeat 3]

Run as root (restore mounts the images). Copies the pristine tree T0 from the
--source work folder when its tree.json matches (else generates it in --workdir),
then, untimed: W = cp -a T0, sleep 2.1 s (W's files must be older than the
racy margin), base.img = create W, mutate W by 3 % (gentree.mutate, as
bench_images.py). Timed, each row --repeat times round-robin, median kept:

 1. diff W base.img -o dX (stat-proved) vs diff --trust-mtime (size+mtime only):
    <= 1x; diff --checksum for reference. Untimed check: compare --checksum
    base.img OUT W (--trust-mtime misses the rewrites that kept size and mtime).
 2. TARGET already at base.img+dX: restore base.img dX TARGET with the state
    in TARGET/.diffimg vs find TARGET -printf (the stat walk): <= 1.5x; the
    same without state (.diffimg deleted before each run) for reference.
 3. TARGET at base.img (restored by diffimg): restore base.img dX TARGET with
    state vs without (.diffimg deleted): <= 1x.

Every timed restore is checked untimed with `compare --checksum base.img dX
TARGET` (exit 0 expected). A failing row shows FAILED; the exit status is 0.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gentree  # noqa: E402  (found through the sys.path line above)
from bench_images import MUTATE, info_json, log, print_commands, remove, warm_cache  # noqa: E402
from bench_scan import NCPU, ensure_tree, generator_version, run  # noqa: E402

RACY_SLEEP = 2.1  # diffimg trusts no file touched less than 2 s before a scan began
ENV = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))  # this checkout's diffimg

# (row, peer row, limit or None, text): ratio = median seconds of row / of peer
TARGETS = [
    ("diff", "diff_tm", 1.0, "<= 1x"),
    ("diff_c", "diff_tm", None, "reference"),
    ("noop_state", "find", 1.5, "<= 1.5x"),
    ("noop_nostate", "find", None, "reference"),
    ("base_state", "base_nostate", 1.0, "<= 1x"),
]


def untimed(what, cmd, ok=(0,)):
    """Run a setup command; return None, or why it failed."""
    log(f"{what} (untimed) ...")
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    if p.returncode in ok:
        return None
    lines = p.stderr.strip().splitlines()
    return f"{what}: exit {p.returncode}: {lines[-1] if lines else ''}"


def check(py, paths):
    """Untimed `compare --checksum PATHS`: '' when identical, else what differed."""
    p = subprocess.run([py, "-m", "diffimg", "compare", "--checksum", "-q", *paths],
                       capture_output=True, text=True, env=ENV)
    if p.returncode == 0:
        return ""
    if p.returncode == 1:
        return f"differs ({len(p.stdout.strip().splitlines())} lines)"
    return f"compare exit {p.returncode}: {p.stderr.strip()[-200:]}"


def row(key, label, cmd, prepare=None, checked=None, ok=(0,)):
    """prepare: callable run untimed before every run, returning None or an error;
    checked: the paths `compare --checksum` gets after every run."""
    return {"key": key, "label": label, "cmd": cmd, "prepare": prepare, "checked": checked,
            "ok": ok, "command": cmd if isinstance(cmd, str) else " ".join(cmd),
            "runs": [], "error": None, "checks": []}


def time_rows(rows, repeat, timeout, py, warm=False):
    """An optional untimed warm-up round, then `repeat` rounds round-robin."""
    for i in range(int(warm) + repeat):
        for r in rows:
            if r["error"]:
                continue
            err = r["prepare"]() if r["prepare"] else None
            if err:
                r["error"] = err
                continue
            os.sync()  # the preparation's writeback must not land inside the timing
            log(f"{'warm-up' if warm and i == 0 else 'run'} {r['key']} ...")
            res = run(r["cmd"], timeout)
            if res["rc"] not in r["ok"]:
                r["error"] = f"exit code {res['rc']}: {res['error']}"
                continue
            if warm and i == 0:
                continue
            r["runs"].append(res["seconds"])
            if r["checked"]:
                r["checks"].append(check(py, r["checked"]))


def table(res):
    lines = [f"{'row':38} {'seconds':>8}  {'vs':38} {'ratio':>7}  {'target':9} {'met':4}  "
             f"{'compare --checksum':24} runs"]
    peers = {key: (peer, limit, text) for key, peer, limit, text in TARGETS}
    for r in res.values():
        if r["error"]:
            lines.append(f"{r['label']:38} {'-':>8}  FAILED: {r['error']}")
            continue
        secs = r["seconds"]
        vs, ratio, text, met = "", "", "", ""
        if r["key"] in peers:
            peer, limit, text = peers[r["key"]]
            vs, p, ratio, met = res[peer]["label"], res[peer]["seconds"], "-", "-"
            if p:
                ratio = f"{secs / p:6.3f}x"
                met = "-" if limit is None else ("PASS" if secs / p <= limit else "MISS")
        bad = [c for c in r["checks"] if c]
        ident = "-" if not r["checks"] else (
            f"{len(r['checks'])}/{len(r['checks'])} identical" if not bad
            else f"{len(bad)}/{len(r['checks'])} {bad[0]}")
        runs = " ".join(f"{s:.2f}" for s in r["runs"])
        lines.append(f"{r['label']:38} {secs:8.2f}  {vs:38} {ratio:>7}  {text:9} {met:4}  "
                     f"{ident:24} {runs}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--workdir", default="/var/tmp/diffimg-bench-exact")
    ap.add_argument("--source", default="/var/tmp/diffimg-bench-images",
                    help="a work folder whose tree/ is copied when its tree.json matches")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1, help="gentree seed of T0")
    ap.add_argument("--format", default="squashfs", help="container of base.img and the diffs")
    ap.add_argument("--timeout", type=float, default=3600, help="per command, seconds")
    ap.add_argument("--python", default=sys.executable, help="interpreter for diffimg")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root: restore mounts the images")

    w, py = os.path.abspath(args.workdir), args.python
    os.makedirs(w, exist_ok=True)
    src = os.path.abspath(args.source)
    if not os.path.exists(os.path.join(w, "tree.json")) and _marker_fits(src, args):
        log(f"copying {src}/tree to {w}/tree ...")  # cp -a: the source stays pristine
        remove(os.path.join(w, "tree"))
        subprocess.run(["cp", "-a", os.path.join(src, "tree"), w], check=True)
        shutil.copy(os.path.join(src, "tree.json"), w)  # marker last: a full copy only
    t0, counts = ensure_tree(w, args.entries, args.seed, log=log)
    p = {n: os.path.join(w, n) for n in ("W", "base.img", "dX", "dY", "dC", "target")}
    wt, base, dx, target = p["W"], p["base.img"], p["dX"], p["target"]
    fmt = ["--format", args.format]
    ours = [py, "-m", "diffimg"]

    # W, base.img made from W by the new code, W mutated in place: all untimed
    remove(wt, base, p["dX"], p["dY"], p["dC"], target)
    log(f"copying {t0} to {wt} ...")
    subprocess.run(["cp", "-a", t0, wt], check=True)
    time.sleep(RACY_SLEEP)
    t = time.perf_counter()
    err = untimed("create W base.img", ours + ["create", wt, base, "-q"] + fmt)
    create_s = time.perf_counter() - t
    log(f"mutating {MUTATE['fraction']:.0%} of {wt} ...")
    mutated = gentree.mutate(wt, **MUTATE)
    warm_cache(wt)

    diff = ours + ["diff", wt, base, "-q"] + fmt + ["-o"]
    rows1 = [
        row("diff", "diff (default, stat-proved)", diff + [dx],
            lambda: remove(dx), [base, dx, wt]),
        row("diff_tm", "diff --trust-mtime (old quick)", diff + [p["dY"], "--trust-mtime"],
            lambda: remove(p["dY"]), [base, p["dY"], wt]),
        row("diff_c", "diff --checksum", diff + [p["dC"], "--checksum"],
            lambda: remove(p["dC"]), [base, p["dC"], wt]),
    ]
    for r in rows1:
        r["error"] = err
    time_rows(rows1, args.repeat, args.timeout, py, warm=True)

    # 2. a target already at base.img + dX, with and without its state
    chain = [base, dx]
    restore = ours + ["restore", "--yes", base, dx, target, "-q"]
    err2 = err or rows1[0]["error"] or os.makedirs(target) or untimed(
        "restore base.img dX onto an empty folder", restore)

    def drop_state():
        remove(os.path.join(target, ".diffimg"))

    rows2 = [
        row("noop_state", "restore no-op, with state", restore, None, chain + [target]),
        row("find", "find -printf (stat walk)",
            f"find '{target}' -printf '%i %s %T@ %m %U %G\\n' > /dev/null"),
        row("noop_nostate", "restore no-op, no state", restore, drop_state, chain + [target]),
    ]

    # 3. a target at base.img (restored by diffimg), with and without its state
    to_base = ours + ["restore", "--yes", base, target, "-q"]
    rows3 = [
        row("base_state", "restore base->base+dX, with state", restore,
            lambda: untimed("restore base.img onto the target", to_base), chain + [target]),
        row("base_nostate", "restore base->base+dX, no state", restore,
            lambda: untimed("restore base.img onto the target", to_base) or drop_state(),
            chain + [target]),
    ]
    for r in rows2 + rows3:
        r["error"] = err2
    if not err2:
        run(["cat", base, dx])  # into the page cache
    try:
        time_rows(rows2, args.repeat, args.timeout, py)
        time_rows(rows3, args.repeat, args.timeout, py)
    finally:
        remove(target)

    res = {r["key"]: r for r in rows1 + rows2 + rows3}
    for r in res.values():
        r["seconds"] = statistics.median(r["runs"]) if r["runs"] and not r["error"] else None
    print(f"diffimg exact-by-default benchmark: T0 {counts['entries']} entries "
          f"({counts['files']} files, {counts['dirs']} dirs), {counts['bytes'] / 1e9:.2f} GB "
          f"in {t0}; --format {args.format}")
    print("W = copy of T0, base.img = create W "
          f"({create_s:.1f} s, untimed), then W mutated: "
          + ", ".join(f"{k} {v}" for k, v in mutated.items()))
    print(f"median of {args.repeat}, warm page cache, {NCPU} CPUs, Python "
          f"{platform.python_version()}; ratio = row / vs; compare --checksum = untimed "
          "check of the output (diff rows) or TARGET (restore rows) after every run\n")
    print(table(res))
    print()
    for key, out in (("diff", dx), ("diff_tm", p["dY"]), ("diff_c", p["dC"])):
        i = None if res[key]["error"] else info_json(out, py)
        if i:
            print(f"  {res[key]['label']}: stored {i['stored_files']} files, "
                  f"{i['stored_bytes'] / 1e6:.1f} MB; changes {i.get('changes')}")
    print()
    print_commands(res)
    # exit status: 0 even when a row failed or missed


def _marker_fits(src, args):
    """Does src hold the tree ensure_tree would make for these parameters?"""
    try:
        with open(os.path.join(src, "tree.json")) as f:
            params = json.load(f).get("params")
    except (OSError, ValueError):
        return False
    return os.path.isdir(os.path.join(src, "tree")) and params == {
        "entries": args.entries, "seed": args.seed,
        "bytes": args.entries * gentree.AVG_BYTES_PER_ENTRY, "generator": generator_version()}


if __name__ == "__main__":
    main()
