#!/usr/bin/env python3
"""The whole benchmark suite in one run: scan, images and restore, each row beside its peer.

    python bench/suite.py [--entries 10000] [--repeat 3] [--workdir DIR] [--out bench/results]

Runs bench_scan.py, bench_images.py and bench_restore.py on one generated tree (made once in
WORKDIR, default /var/tmp/diffimg-suite-ENTRIES, and reused), then writes OUT/latest.md (the
table of issue 10's targets: each row, its peer, the ratio, the target, met or not, with the
machine and the date), OUT/latest.json (every number the three scripts measured) and
OUT/latest.png (the ratios as bars, the peer at 1.0). Run as root: the images are mounted.
`make bench` runs it with 10k entries; `make bench ENTRIES=100000` for the size the targets
are stated at. The exit status is 0 when every row ran, whether or not it met its target.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_images  # noqa: E402  (found through the sys.path line above)
import bench_restore  # noqa: E402
import bench_scan  # noqa: E402

RSS_LIMIT_MIB = 300     # peak memory of scan, diff and restore, stated for 1M entries

# (what, script, our row, peer row, measure, target ratio at most, how the target reads)
ROWS = [
    ("quick scan (scan --previous)", "scan", "ours_quick", "stat_floor", "seconds", 1.5,
     "<= 1.5x"),
    ("checksum scan (scan --checksum)", "scan", "ours_checksum", "hash_floor", "seconds", 1.2,
     "<= 1.2x"),
    ("change detection (compare TREE IMAGE)", "images", "compare", "rsync_n", "seconds", 0.25,
     ">= 4x faster"),
    ("differential image, time", "images", "diff", "wim_update", "seconds", 1.0, "<= 1x"),
    ("differential image, size", "images", "diff", "wim_update", "bytes", 1.0, "<= 1x"),
    # --update-of trusts size and mtime and misses the files rewritten with both kept, which
    # our default diff stores (its stat proof includes the ctime): the peer as exact as ours
    ("differential image, size, against an exact peer", "images", "diff", "wim_full", "bytes",
     1.0, "<= 1x"),
    ("full image (create)", "images", "create", "mksquashfs", "seconds", 1.2, "<= 1.2x"),
    ("restore into an empty folder (+ sync)", "restore", "restore_empty", "unsquashfs",
     "seconds", 1.2, "<= 1.2x"),
    ("apply onto a copy of the base (+ sync)", "restore", "apply", "rsync_base", "seconds",
     1 / 3, ">= 3x faster"),
]
MEMORY_ROWS = [("scan", "ours_quick"), ("images", "diff"), ("restore", "restore_empty")]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_scripts(args, workdir, scratch):
    """Each script's results (its --json output), keyed scan, images, restore."""
    common = ["--entries", str(args.entries), "--workdir", workdir, "--repeat", str(args.repeat),
              "--python", args.python]
    out = {}
    for name, module in (("scan", bench_scan), ("images", bench_images),
                         ("restore", bench_restore)):
        path = os.path.join(scratch, name + ".json")
        log(f"== {name} ==")
        module.main(common + ["--json", path])
        with open(path) as f:
            out[name] = json.load(f)
    return out


def ratio_rows(measured):
    """The table's rows: (what, ours, peer label, peer, ratio, target text, met)."""
    rows = []
    for what, script, ours, peer, measure, limit, text in ROWS:
        results = measured[script]["results"]
        a, b = results[ours].get(measure), results[peer].get(measure)
        ratio = a / b if a is not None and b else None
        met = None if ratio is None else ratio <= limit
        error = results[ours].get("error") or results[peer].get("error")
        rows.append({"what": what, "measure": measure, "ours": a, "peer": b,
                     "peer_label": results[peer]["label"], "ratio": ratio, "limit": limit,
                     "target": text, "met": met, "error": error})
    return rows


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rev = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "memory_gib": round(mem, 1),
            "kernel": platform.release(), "python": platform.python_version(), "diffimg": rev}


def shown(value, measure):
    if value is None:
        return "-"
    return f"{value / 1e6:.1f} MB" if measure == "bytes" else f"{value:.2f} s"


def markdown(rows, memory, measured, info, args):
    counts = measured["scan"]["counts"]
    lines = [
        f"# diffimg benchmark suite, {info['date']}",
        "",
        f"Tree: {counts['entries']:,} entries ({counts['files']:,} files, {counts['dirs']:,} "
        f"folders), {counts['bytes'] / 1e9:.2f} GB, made by `bench/gentree.py`; the changed tree "
        f"T1: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in
                            measured["images"]["mutated"].items())
        + f". Warm page cache, best of {args.repeat}.",
        "",
        f"Machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory_gib']} GiB, Linux "
        f"{info['kernel']}, Python {info['python']}, diffimg {info['diffimg']}.",
        "",
        "| work | diffimg | peer | peer's | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['what']} | FAILED: {r['error']} | {r['peer_label']} | | | "
                         f"{r['target']} | |")
            continue
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['what']} | {shown(r['ours'], r['measure'])} | {r['peer_label']} | "
                     f"{shown(r['peer'], r['measure'])} | {ratio} | {r['target']} | {met} |")
    lines += ["", f"Ratio: diffimg / peer (below 1: diffimg is faster or smaller). Peak memory "
              f"(target <= {RSS_LIMIT_MIB} MiB, stated at 1M entries):", ""]
    for label, mib in memory:
        lines.append(f"- {label}: {mib:.0f} MiB" if mib else f"- {label}: -")
    lines += ["", "Commands:", ""]
    for script, data in measured.items():
        for r in data["results"].values():
            lines.append(f"- {script}, {r['label']}: `{r['command']}`")
    lines += ["", "![ratios](latest.png)", ""]
    return "\n".join(lines)


def chart(rows, path, title):
    """A PNG of the ratios, one bar per row, the peer at 1.0 and each target marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown_rows = [r for r in rows if r["ratio"] is not None]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(shown_rows) + 1.5))
    names = [r["what"] for r in shown_rows][::-1]
    ratios = [r["ratio"] for r in shown_rows][::-1]
    colours = ["tab:green" if r["met"] else "tab:red" for r in shown_rows][::-1]
    ax.barh(names, ratios, color=colours)
    for i, r in enumerate(shown_rows[::-1]):
        ax.plot([r["limit"]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(r["ratio"], i, f" {r['ratio']:.2f}x", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")             # 0.3x and 9x alike: both are a factor from the peer
    ax.set_xlabel("diffimg / peer (peer = 1.0, dashed; black tick: target; green: met)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", help="default /var/tmp/diffimg-suite-ENTRIES")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--python", default=sys.executable, help="interpreter for diffimg")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmarks mount images")
    workdir = os.path.abspath(args.workdir or f"/var/tmp/diffimg-suite-{args.entries}")
    info = machine()
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory() as scratch:
        measured = run_scripts(args, workdir, scratch)
    rows = ratio_rows(measured)
    memory = []
    for script, key in MEMORY_ROWS:
        r = measured[script]["results"][key]
        memory.append((r["label"], r["rss_kib"] / 1024 if r.get("rss_kib") else None))
    os.makedirs(args.out, exist_ok=True)
    text = markdown(rows, memory, measured, info, args)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump({"machine": info, "entries": args.entries, "repeat": args.repeat,
                   "rows": rows, "measured": measured}, f, indent=2, ensure_ascii=False)
    chart(rows, os.path.join(args.out, "latest.png"),
          f"diffimg vs peers, {measured['scan']['counts']['entries']:,} entries, {info['date']}")
    print(text)
    failed = [r["what"] for r in rows if r["error"]]
    if failed:
        sys.exit("rows that failed: " + ", ".join(failed))


if __name__ == "__main__":
    main()
