#!/usr/bin/env python3
"""Time diffimg apply and restore against rsync, unsquashfs and wimapply.

    python bench/bench_restore.py [--entries 100000] [--workdir /var/tmp/diffimg-bench-images]
                                  [--repeat 1] [--json results.json]

Run as root (diffimg mounts its images). Reuses bench_images.py's work folder:
the pristine tree T0 (`tree/`), T1 = T0 mutated 3 % (`t1/`), base.img,
d.img (diff of T1 on base.img), base.wim and delta-update.wim, making only the
missing or stale ones, untimed. Every timed command gets a fresh target,
prepared untimed (`cp -a T0`, `mkdir`), and the target is checked untimed with
`diffimg compare --checksum` afterwards, then deleted. See bench/README.md for
the rows and targets. The exit status is 0 even when a row fails.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gentree  # noqa: E402  (found through the sys.path line above)
from bench_images import (  # noqa: E402
    WIM_OPTS,
    check_targets,
    ensure_mutated,
    info_json,
    log,
    print_commands,
    remove,
    warm_cache,
)
from bench_scan import NCPU, ensure_tree, run  # noqa: E402

USED = {"fraction": 0.01, "seed": 7}  # how a "used" target drifted away from T0

# (row, peer row, operator, limit, text): ratio = row seconds / peer seconds
TARGETS = [
    ("apply", "rsync_base", "seconds", "<=", 1 / 3, "time <= 1/3x"),
    ("restore_used", "rsync_used", "seconds", "<=", 0.5, "time <= 0.5x"),
    ("restore_empty", "unsquashfs", "seconds", "<=", 1.2, "time <= 1.2x"),
    ("restore_empty", "wimapply", "seconds", "<", 1.0, "time < 1x"),
]


def fresh(path, *deps):
    """path exists and is not older than any of deps (a rebuilt input makes it stale)."""
    return os.path.exists(path) and all(
        os.path.getmtime(path) >= os.path.getmtime(d) for d in deps)


def make(what, cmd, ok=(0,)):
    """Run an untimed setup command; stop the benchmark if it fails."""
    log(f"making {what} (untimed) ...")
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode not in ok:
        sys.exit(f"making {what} failed (exit {p.returncode}): {p.stderr.strip()}")


def ensure_inputs(w, t0, t1, py):
    """The images the rows read, made from T0 and T1 when missing or stale."""
    p = {n: os.path.join(w, n) for n in ("base.img", "d.img", "base.wim", "delta-update.wim")}
    tree_marker, t1_marker = os.path.join(w, "tree.json"), os.path.join(w, "t1.json")
    if not fresh(p["base.img"], tree_marker):
        make("base.img", [py, "-m", "diffimg", "create", t0, p["base.img"], "-q"])
    # d.img must sit on this very base.img
    base_id = info_json(p["base.img"], py)["tree_id"]
    d = info_json(p["d.img"], py) if fresh(p["d.img"], p["base.img"], t1_marker) else None
    if not d or d.get("parent_id") != base_id:
        remove(p["d.img"])
        make("d.img", [py, "-m", "diffimg", "diff", t1, p["base.img"], "-o", p["d.img"], "-q"])
    if not fresh(p["base.wim"], tree_marker):
        make("base.wim", ["wimcapture", t0, p["base.wim"]] + WIM_OPTS)
    # the same command bench_images.py times as "wimcapture --delta-from --update-of"
    if not fresh(p["delta-update.wim"], p["base.wim"], t1_marker):
        remove(p["delta-update.wim"])
        make("delta-update.wim", ["wimcapture", t1, p["delta-update.wim"],
                                  "--delta-from=" + p["base.wim"],
                                  "--update-of=" + p["base.wim"] + ":1"] + WIM_OPTS)
    return p


def plain_squashfs(w, base_img, py):
    """What unsquashfs can read: base.img itself if unsquashfs accepts it (it
    should: the squashfs superblock says where the filesystem ends), else a copy
    cut to the container's length."""
    if subprocess.run(["unsquashfs", "-s", base_img], capture_output=True).returncode == 0:
        return base_img
    cut = os.path.join(w, "base-container.sqfs")
    if not os.path.exists(cut):
        log("unsquashfs cannot read base.img: making a copy cut to its container (untimed)")
        with open(base_img, "rb") as src, open(cut, "wb") as dst:
            dst.write(src.read(info_json(base_img, py)["container"]["length"]))
    return cut


def check(py, images, target):
    """Untimed: does target equal the tree of images, content hashed?
    Returns (identical, the difference lines compare printed)."""
    p = subprocess.run([py, "-m", "diffimg", "compare", "--checksum", "-q", *images, target],
                       capture_output=True, text=True)
    lines = p.stdout.strip().splitlines()
    if p.returncode not in (0, 1):
        lines = [f"compare failed (exit {p.returncode}): {p.stderr.strip()}"]
    return p.returncode == 0, lines


def kinds(lines):
    """Count compare's difference lines by kind: `~ path: mode 0600 -> 0644` counts as
    `~ mode`, `~ path: content` as `~ content`, `+ path` as `+`."""
    out = {}
    for line in lines:
        k = line[:1] + (" " + line.rsplit(": ", 1)[-1].split()[0] if ": " in line else "")
        out[k] = out.get(k, 0) + 1
    return out


def measure(r, py, timeout):
    """One timed run of row r on a freshly prepared target, checked afterwards."""
    remove(r["target"])
    used = r["prepare"]()
    if used:
        r["used"] = used  # what gentree.mutate did to the used target, for the report
    os.sync()  # the copy's writeback must not land inside the timing
    log(f"run {r['key']} ...")
    res = run(r["cmd"], timeout)
    if res["rc"] != 0:
        r["error"] = f"exit code {res['rc']}: {res['error']}"
    else:
        r["runs"].append(res["seconds"])
        r["rss_kib"] = max(r["rss_kib"], res["rss_kib"])
        if r["expect"]:
            same, lines = check(py, r["expect"], r["target"])
            r["identical"] = same and r["identical"] is not False
            if lines and not r["diff_lines"]:
                r["diff_lines"] = lines  # the first run that differed
    remove(r["target"])  # disk is limited: at most one target exists at a time
    os.sync()


def table(res):
    head = (f"{'row':34} {'seconds':>8} {'RSS MiB':>8}  {'vs':34} {'ratio':>7}  "
            f"{'target':13} {'met':4}  identical")
    lines = [head]
    for r in res.values():
        secs = f"{r['seconds']:8.2f}" if r["seconds"] is not None else f"{'-':>8}"
        rss = f"{r['rss_kib'] / 1024:8.1f}" if r["rss_kib"] else f"{'':>8}"
        first = f"{r['label']:34} {secs} {rss}  "
        if r["error"]:
            lines.append(first + f"FAILED: {r['error']}")
            continue
        if r["identical"] is None:
            ident = "-"
        else:
            ident = "yes" if r["identical"] else f"NO ({len(r['diff_lines'])} lines)"
        if r["expect"] and r["expect"][-1].endswith("base.img"):
            ident += " (vs base.img)"
        for i, t in enumerate(r.get("targets") or [None]):
            lead = first if i == 0 else " " * len(first)
            if t is None:
                lines.append(f"{lead}{'':34} {'':7}  {'':13} {'':4}  {ident}")
                continue
            ratio = f"{t['ratio']:6.3f}x" if t["ratio"] is not None else f"{'-':>7}"
            lines.append(f"{lead}{res[t['peer']]['label']:34} {ratio}  {t['target']:13} "
                         f"{t['status']:4}  {ident if i == 0 else ''}".rstrip())
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--workdir", default="/var/tmp/diffimg-bench-images")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1, help="gentree seed of T0")
    ap.add_argument("--timeout", type=float, default=3600, help="per command, seconds")
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    ap.add_argument("--python", default=sys.executable, help="interpreter for diffimg")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        sys.exit("run as root: diffimg mounts its images")
    for tool in ("cp", "rsync", "unsquashfs", "wimcapture", "wimapply", "mksquashfs"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install -y squashfs-tools wimtools rsync)")

    w = os.path.abspath(args.workdir)
    py = args.python
    t0, counts = ensure_tree(w, args.entries, args.seed, None, False, log)
    t1, mutated = ensure_mutated(w, t0)
    p = ensure_inputs(w, t0, t1, py)
    sqfs = plain_squashfs(w, p["base.img"], py)
    tmp = os.path.join(w, "restore-tmp")  # every target lives here; deleted at the end
    target = os.path.join(tmp, "target")

    def copy_t0():
        os.makedirs(tmp, exist_ok=True)
        subprocess.run(["cp", "-a", t0, target], check=True)

    def used_t0():
        copy_t0()
        return gentree.mutate(target, **USED)  # same seed: identical for ours and rsync

    def empty():
        os.makedirs(target)

    def nothing():
        os.makedirs(tmp, exist_ok=True)  # the tool makes target itself

    ours = [py, "-m", "diffimg"]

    def synced(cmd):
        """cmd, then sync: diffimg's restore ends with sync, so every row ends on disk."""
        return ["sh", "-c", '"$0" "$@" && sync'] + cmd

    rsync = synced(["rsync", "-aHAX", "--delete", t1 + "/", target + "/"])
    d_tree = [p["d.img"]]  # compare d.img TARGET: the tree d.img describes (T1)
    rows = [
        # key, label, prepare, command, tree to compare with (None: no check)
        ("apply", "apply (ours), onto T0", copy_t0,
         ours + ["apply", p["d.img"], target, "-q"], d_tree),
        ("rsync_base", "rsync -aHAX --delete, onto T0", copy_t0, rsync, d_tree),
        ("restore_used", "restore (ours), used target", used_t0,
         ours + ["restore", "--yes", p["base.img"], p["d.img"], target, "-q"], d_tree),
        ("rsync_used", "rsync -aHAX --delete, used target", used_t0, rsync, d_tree),
        # reference: restore and rsync both trust size and mtime, so neither repairs a
        # file the use rewrote with the same size and mtime; --checksum hashes instead
        ("restore_used_c", "restore --checksum (ours), used", used_t0,
         ours + ["restore", "--yes", "--checksum", p["base.img"], p["d.img"], target, "-q"], d_tree),
        ("restore_empty", "restore (ours), empty folder", empty,
         ours + ["restore", "--yes", p["base.img"], p["d.img"], target, "-q"], d_tree),
        # the base alone (T0): checked against base.img, not d.img
        ("unsquashfs", "unsquashfs base (T0 only)", nothing,
         synced(["unsquashfs", "-d", target, "-f", "-no-progress", sqfs]), [p["base.img"]]),
        # wimlib without --unix-data records no modes or owners: not comparable
        ("wimapply", "wimapply delta --ref=base", nothing,
         synced(["wimapply", p["delta-update.wim"], target, "--ref=" + p["base.wim"]]), None),
    ]
    res = {}
    for key, label, prepare, cmd, expect in rows:
        res[key] = {"key": key, "label": label, "prepare": prepare, "cmd": cmd,
                    "command": " ".join(cmd), "expect": expect, "target": target,
                    "runs": [], "rss_kib": 0, "error": None, "identical": None,
                    "diff_lines": []}

    log("warming the page cache ...")
    warm_cache(t0, t1)
    run(["cat", p["base.img"], p["d.img"], p["base.wim"], p["delta-update.wim"], sqfs])
    try:
        # round-robin: each repetition runs every row once
        for _ in range(args.repeat):
            for r in res.values():
                if not r["error"]:
                    measure(r, py, args.timeout)
    finally:
        remove(tmp)

    for r in res.values():
        r["seconds"] = min(r["runs"]) if r["runs"] and not r["error"] else None
        del r["prepare"], r["cmd"]  # not JSON; "command" keeps the text
    check_targets(res, TARGETS)

    print(f"diffimg restore benchmark: T0 {counts['entries']} entries ({counts['files']} files, "
          f"{counts['dirs']} dirs), {counts['bytes'] / 1e9:.2f} GB in {t0}")
    print("T1 = T0 mutated: " + ", ".join(f"{k} {v}" for k, v in mutated.items()))
    used = res["restore_used"].get("used") or res["rsync_used"].get("used")
    if used:
        print(f"used target = T0 mutated with {USED}: "
              + ", ".join(f"{k} {v}" for k, v in used.items()))
    print(f"best of {args.repeat}, warm page cache, {NCPU} CPUs, Python "
          f"{platform.python_version()}; ratio = row / vs; identical = "
          f"`diffimg compare --checksum d.img TARGET` (untimed)\n")
    print(table(res))
    for r in res.values():
        if r["diff_lines"]:
            n = len(r["diff_lines"])
            print(f"\n  {r['label']}: compare printed {n} line(s) {kinds(r['diff_lines'])}"
                  + (", the first 10:" if n > 10 else ":"))
            for line in r["diff_lines"][:10]:
                print("    " + line)
    print()
    print_commands(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"t0": t0, "t1": t1, "counts": counts, "mutated": mutated,
                       "used": USED, "repeat": args.repeat, "cpus": NCPU,
                       "python": platform.python_version(), "results": _trimmed(res)},
                      f, indent=2, ensure_ascii=False)


def _trimmed(res):
    """The results with at most 20 of each row's compare lines (and their count): a peer that
    keeps no metadata differs at every entry, 20 MB of lines at 100k."""
    out = {}
    for key, r in res.items():
        lines = r["diff_lines"]
        out[key] = dict(r, diff_lines=lines[:20], diff_line_count=len(lines),
                        diff_kinds=kinds(lines) if lines else "")
    return out


if __name__ == "__main__":
    main()
