#!/usr/bin/env python3
"""Time diffimg's full and differential images against mksquashfs, wimlib,
rsync and the seed's rsync + mksquashfs procedure.

    python bench/bench_images.py [--entries 100000] [--workdir /var/tmp/diffimg-bench-images]
                                 [--repeat 1] [--json results.json]

Run as root (it mounts the base image). Generates (once, reused afterwards) the
pristine tree T0 with gentree.py, makes the base images from it, copies it to
T1 and mutates about 3 % of T1's files, then times the differential images and
change detection of T1 against the bases. See bench/README.md for the rows and
targets. A failing command is reported as FAILED with the last line of its
stderr; the other rows still run. The exit status is 0 either way.
"""

import argparse
import json
import os
import platform
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gentree  # noqa: E402  (found through the sys.path line above)
from bench_scan import NCPU, ensure_tree, run  # noqa: E402

sys.path.insert(0, os.path.dirname(HERE))
from diffimg.image.containers.squashfs import ZSTD_LEVEL  # noqa: E402  (compress as diffimg does)

MUTATE = {"fraction": 0.03, "seed": 2}
SQUASHFS_OPTS = ["-comp", "zstd", "-Xcompression-level", str(ZSTD_LEVEL), "-noappend",
                 "-no-progress", "-quiet", "-processors", str(NCPU)]  # what diffimg create uses
# wimcapture's default capture config leaves out /pagefile.sys, /$Recycle.Bin,
# /System Volume Information and a few more; an empty config captures the same
# tree as the others
WIM_OPTS = ["--config=/dev/null"]
SEED_SCRIPT = os.path.join(HERE, "seed_diff.sh")

# (row, peer row, measure, operator, limit, text): ratio = row / peer
TARGETS = [
    ("create", "mksquashfs", "seconds", "<=", 1.2, "time <= 1.2x"),
    ("diff", "wim_update", "seconds", "<=", 1.0, "time <= 1x"),
    ("diff", "wim_update", "bytes", "<=", 1.0, "size <= 1x"),
    ("diff", "seed", "seconds", "<=", 0.1, "time <= 0.1x"),
    ("diff_checksum", "wim_full", "seconds", "<", 1.0, "time < 1x"),
    ("compare", "rsync_n", "seconds", "<=", 0.25, "time <= 0.25x"),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ensure_mutated(workdir, t0):
    """T1 = a copy of T0 mutated by gentree.mutate; reused while its marker
    matches T0's marker and the mutation parameters."""
    t1 = os.path.join(workdir, "t1")
    marker = os.path.join(workdir, "t1.json")
    with open(os.path.join(workdir, "tree.json")) as f:
        params = {"t0": json.load(f)["params"], **MUTATE}
    if os.path.isdir(t1) and os.path.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        if info.get("params") == params:
            log(f"reusing {t1} ({marker})")
            return t1, info["counts"]
    if os.path.exists(marker):
        os.unlink(marker)  # first: an interrupted run must not leave a valid marker
    if os.path.exists(t1):
        shutil.rmtree(t1)
    log(f"copying {t0} to {t1} and mutating {MUTATE['fraction']:.0%} of its files ...")
    subprocess.run(["cp", "-a", t0, t1], check=True)
    counts = gentree.mutate(t1, **MUTATE)
    with open(marker, "w") as f:
        json.dump({"params": params, "counts": counts}, f, indent=2)
    return t1, counts


def warm_cache(*trees):
    """Read every file once so that the first timed command does not pay for the disk."""
    quoted = " ".join("'%s'" % t for t in trees)
    run(f"find {quoted} -type f -print0 | xargs -0 -n 500 -P {NCPU} cat > /dev/null")


def info_json(image, python):
    """`diffimg info --json IMAGE` as a dict, or None."""
    p = subprocess.run([python, "-m", "diffimg", "info", "--json", image],
                       capture_output=True, text=True)
    return json.loads(p.stdout) if p.returncode == 0 else None


def count_files(top):
    """(regular files, their bytes) below top."""
    files = size = 0
    for dirpath, _, names in os.walk(top):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return files, size


def remove(*paths):
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.unlink(p)


def row(key, label, cmd, out=None, clean=(), ok=(0,), needs=None):
    """One table row. out: the file whose size is the row's output; clean: paths
    removed before every run (outside the timing); ok: exit codes that mean
    success; needs: a callable returning why the row cannot run, or None."""
    return {"key": key, "label": label, "cmd": cmd, "out": out,
            "clean": list(clean) + ([out] if out else []), "ok": ok, "needs": needs,
            "command": cmd if isinstance(cmd, str) else " ".join(cmd),
            "runs": [], "rss_kib": 0, "error": None}


def time_rows(rows, repeat, warm, timeout):
    """Optionally run every row once untimed, then `repeat` times round-robin;
    keep the best time. A row that fails once is not run again."""
    for r in rows:
        if r["needs"] and r["needs"]():
            r["error"] = r["needs"]()
    for i in range(int(warm) + repeat):
        for r in rows:
            if r["error"]:
                continue
            remove(*r["clean"])
            log(f"{'warm-up' if warm and i == 0 else 'run'} {r['key']} ...")
            res = run(r["cmd"], timeout)
            if res["rc"] not in r["ok"]:
                # diff exits 1 when nothing changed, compare 0 when nothing differs
                r["error"] = f"exit code {res['rc']}: {res['error']}"
                continue
            if warm and i == 0:
                continue
            r["runs"].append(res["seconds"])
            r["rss_kib"] = max(r["rss_kib"], res["rss_kib"])
    for r in rows:
        r["seconds"] = min(r["runs"]) if r["runs"] and not r["error"] else None
        r["bytes"] = os.path.getsize(r["out"]) if r["out"] and os.path.exists(r["out"]) \
            and not r["error"] else None


def print_commands(res):
    """Each row's command line, and a warning if diffimg left any image mounted."""
    for r in res.values():
        print(f"  {r['label']}: {r['command']}")
    with open("/proc/mounts") as f:  # diffimg must have unmounted all its images
        left = [line for line in f if "diffimg-run-" in line]
    if left:
        print("\nWARNING: still mounted:\n" + "".join(left))


def check_targets(res, targets=TARGETS):
    """Fill each row's list of targets with ratio and PASS / MISS."""
    for key, peer, measure, op, limit, text in targets:
        a, b = res[key].get(measure), res[peer].get(measure)
        t = {"peer": peer, "measure": measure, "target": text, "ratio": None, "status": "-"}
        if a is not None and b:
            t["ratio"] = a / b
            met = t["ratio"] <= limit if op == "<=" else t["ratio"] < limit
            t["status"] = "PASS" if met else "MISS"
        res[key].setdefault("targets", []).append(t)


def table(res):
    head = (f"{'row':36} {'seconds':>8} {'out MB':>9} {'RSS MiB':>8}  "
            f"{'vs':36} {'ratio':>7}  {'target':14} met")
    lines = [head]
    for r in res.values():
        secs = f"{r['seconds']:8.2f}" if r["seconds"] is not None else f"{'-':>8}"
        size = f"{r['bytes'] / 1e6:9.1f}" if r["bytes"] is not None else f"{'':>9}"
        rss = f"{r['rss_kib'] / 1024:8.1f}" if r["rss_kib"] else f"{'':>8}"
        first = f"{r['label']:36} {secs} {size} {rss}  "
        if r["error"]:
            lines.append(first + f"FAILED: {r['error']}")
            continue
        targets = r.get("targets") or [None]
        for i, t in enumerate(targets):
            lead = first if i == 0 else " " * len(first)
            if t is None:
                lines.append(lead.rstrip())
                continue
            ratio = f"{t['ratio']:6.3f}x" if t["ratio"] is not None else f"{'-':>7}"
            vs = res[t["peer"]]["label"]
            lines.append(f"{lead}{vs:36} {ratio}  {t['target']:14} {t['status']}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--workdir", default="/var/tmp/diffimg-bench-images")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1, help="gentree seed of T0")
    ap.add_argument("--regen", action="store_true", help="regenerate T0 (and T1)")
    ap.add_argument("--timeout", type=float, default=3600, help="per command, seconds")
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    ap.add_argument("--python", default=sys.executable, help="interpreter for diffimg")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark mounts the base image")
    for tool in ("mksquashfs", "wimcapture", "rsync", "xargs", "mount"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install -y squashfs-tools wimtools rsync)")

    w = os.path.abspath(args.workdir)
    t0, counts = ensure_tree(w, args.entries, args.seed, None, args.regen, log)
    if args.regen:
        remove(os.path.join(w, "t1.json"))
    t1, mutated = ensure_mutated(w, t0)
    p = {name: os.path.join(w, name) for name in (
        "base.img", "plain.sqfs", "base.wim", "d.img", "dc.img", "delta-update.wim",
        "delta-full.wim", "seed", "mnt")}
    py = args.python
    mnt = p["mnt"]
    if os.path.ismount(mnt):  # left over from an interrupted run
        subprocess.run(["umount", mnt], check=True)

    def need(path):
        return lambda: None if os.path.exists(path) else f"no {os.path.basename(path)}"

    def need_mount():
        return None if os.path.ismount(mnt) else "base.img is not mounted"

    # 1. the bases, from T0. Too slow to run twice for a warm-up: warm_cache instead.
    base = [
        row("create", "create (ours)", [py, "-m", "diffimg", "create", t0, p["base.img"], "-q"],
            out=p["base.img"]),
        row("mksquashfs", "mksquashfs (same compression)",
            ["mksquashfs", t0, p["plain.sqfs"]] + SQUASHFS_OPTS, out=p["plain.sqfs"]),
        row("wim_base", "wimcapture base", ["wimcapture", t0, p["base.wim"]] + WIM_OPTS, out=p["base.wim"]),
    ]
    log("warming the page cache ...")
    warm_cache(t0, t1)
    time_rows(base, args.repeat, False, args.timeout)

    # 2. mount base.img's container (its first container.length bytes) for rsync
    os.makedirs(mnt, exist_ok=True)
    info = info_json(p["base.img"], py) if not base[0]["error"] else None
    if info:
        n = info["container"]["length"]
        m = subprocess.run(["mount", "-t", "squashfs", "-o", f"loop,ro,sizelimit={n}",
                            p["base.img"], mnt], capture_output=True, text=True)
        if m.returncode:
            log(f"mount failed: {m.stderr.strip()}")
    try:
        # 3. the differential images and change detection of T1 against the bases
        ours_diff = [py, "-m", "diffimg", "diff", t1, p["base.img"], "-q", "-o"]
        wim_delta = ["wimcapture", t1, "--delta-from=" + p["base.wim"]] + WIM_OPTS
        delta = [
            row("diff", "diff (ours)", ours_diff + [p["d.img"]], out=p["d.img"],
                needs=need(p["base.img"])),
            row("diff_checksum", "diff --checksum (ours)",
                ours_diff + [p["dc.img"], "--checksum"], out=p["dc.img"],
                needs=need(p["base.img"])),
            row("wim_update", "wimcapture --delta-from --update-of",
                wim_delta + [p["delta-update.wim"], "--update-of=" + p["base.wim"] + ":1"],
                out=p["delta-update.wim"], needs=need(p["base.wim"])),
            row("wim_full", "wimcapture --delta-from (full hash)",
                wim_delta + [p["delta-full.wim"]], out=p["delta-full.wim"],
                needs=need(p["base.wim"])),
            row("seed", "seed procedure (seed_diff.sh)", ["bash", SEED_SCRIPT, t1, mnt, p["seed"]],
                out=os.path.join(p["seed"], "seed.sqfs"), clean=[p["seed"]], needs=need_mount),
            row("compare", "compare (ours)", [py, "-m", "diffimg", "compare", p["base.img"], t1, "-q"],
                ok=(1,), needs=need(p["base.img"])),
            row("rsync_n", "rsync -aHAXn --delete",
                f"rsync -aHAXn --delete '{t1}/' '{mnt}/' > /dev/null", needs=need_mount),
            row("rsync_nc", "rsync -aHAXnc --delete (reference)",
                f"rsync -aHAXnc --delete '{t1}/' '{mnt}/' > /dev/null", needs=need_mount),
        ]
        warm_cache(t1)
        time_rows(delta, args.repeat, True, args.timeout)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["umount", mnt], check=True)

    res = {r["key"]: r for r in base + delta}
    for r in res.values():
        del r["cmd"], r["needs"]  # not JSON; "command" keeps the text
    check_targets(res)
    # what each differential output holds
    for key in ("create", "diff", "diff_checksum"):
        if res[key]["out"] and not res[key]["error"]:
            res[key]["info"] = info_json(res[key]["out"], py)
    if not res["seed"]["error"]:
        files, size = count_files(os.path.join(p["seed"], "img.tmp"))
        lists = {}
        for name in ("list_rsync", "list_ln", "list_rm"):
            with open(os.path.join(p["seed"], name), "rb") as f:
                lists[name] = sum(1 for line in f if line.strip())
        res["seed"]["copied"] = {"files": files, "bytes": size, "list_lines": lists}

    print(f"diffimg image benchmark: T0 {counts['entries']} entries ({counts['files']} files, "
          f"{counts['dirs']} dirs), {counts['bytes'] / 1e9:.2f} GB in {t0}")
    print("T1 = T0 mutated: " + ", ".join(f"{k} {v}" for k, v in mutated.items()))
    print(f"best of {args.repeat}, warm page cache, {NCPU} CPUs, "
          f"Python {platform.python_version()}; ratio = row / vs, out = output file size\n")
    print(table(res))
    print()
    for key in ("diff", "diff_checksum"):
        i = res[key].get("info")
        if i:
            print(f"  {res[key]['label']}: stored {i['stored_files']} files, "
                  f"{i['stored_bytes'] / 1e6:.1f} MB; container {i['container_bytes'] / 1e6:.1f} MB; "
                  f"changes {i.get('changes')}")
    c = res["seed"].get("copied")
    if c:
        print(f"  seed procedure: copied {c['files']} files, {c['bytes'] / 1e6:.1f} MB; "
              f"non-empty lines: {c['list_lines']}")
    print()
    for r in res.values():
        print(f"  {r['label']}: {r['command']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"t0": t0, "t1": t1, "counts": counts, "mutated": mutated,
                       "repeat": args.repeat, "cpus": NCPU,
                       "python": platform.python_version(), "results": res},
                      f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
