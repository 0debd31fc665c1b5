#!/usr/bin/env python3
"""What carrying a host layer onto a model update costs (issue 15), against making a diff.

Builds (or reuses) a gentree tree as the model, images it (base.img), makes a host's own
changes on a hardlinked copy (files rewritten by replacement, a new folder of files, chmods,
xattrs, removals) and its diff (host.diff), then updates the model (gentree --mutate, 1%) and
imports the update as d1.img. It then times, side by side:
- `diffimg rebase host.diff --onto base.img d1.img` (three manifests merged, the host's stored
  content read from its image);
- `diffimg diff MODEL base.img` for the update, the cheapest way there is to make a diff of a
  tree of that size (a scan whose digests the image's stat section proves), which is what a
  machine would otherwise run to make its layer again.

    python bench/bench_rebase.py [--entries 100000] [--work DIR] [--json OUT]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(*args) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "diffimg", *map(str, args)], check=True,
                          stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - start, done.stdout


def host_changes(host: str, count: int):
    """count files rewritten (by replacement: the copy is hardlinked), chmodded and given an
    xattr each, count removed, and a new folder of count files."""
    files = []
    for folder, _, names in os.walk(host):
        files += [os.path.join(folder, n) for n in sorted(names)
                  if os.path.isfile(os.path.join(folder, n))
                  and not os.path.islink(os.path.join(folder, n))]
        if len(files) > 40 * count:
            break
    for i, path in enumerate(files[:4 * count:4]):
        if i % 4 == 0:
            with open(path + ".new", "wb") as f:
                f.write(os.urandom(20_000))
            os.replace(path + ".new", path)
        elif i % 4 == 1:
            new = path + ".chmod"
            shutil.copy2(path, new)
            os.chmod(new, 0o600)
            os.replace(new, path)
        elif i % 4 == 2:
            new = path + ".xattr"
            shutil.copy2(path, new)
            os.setxattr(new, b"user.host", b"pc12")
            os.replace(new, path)
        else:
            os.unlink(path)
    os.mkdir(os.path.join(host, "HostOwn"))
    for i in range(count):
        with open(os.path.join(host, "HostOwn", f"licence-{i}.dat"), "wb") as f:
            f.write(os.urandom(50_000))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--bytes", default="1G")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--work", default="/var/tmp/diffimg-bench-rebase")
    ap.add_argument("--json")
    args = ap.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model, host = os.path.join(work, "model"), os.path.join(work, "host")
    subprocess.run([sys.executable, os.path.join(HERE, "gentree.py"), model, "--entries",
                    str(args.entries), "--bytes", args.bytes, "--seed", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    img = {name: os.path.join(work, name) for name in ("base.img", "host.diff", "d1.img",
                                                        "rebased.diff", "d1-again.img")}
    run("create", model, img["base.img"], "-q")
    subprocess.run(["cp", "-al", model, host], check=True)
    host_changes(host, args.changes)
    run("diff", host, img["base.img"], "-o", img["host.diff"], "-q")
    shutil.rmtree(host)                   # the host's tree is not needed any more
    subprocess.run([sys.executable, os.path.join(HERE, "gentree.py"), model, "--mutate", "0.01",
                    "--seed", "2"], check=True, stdout=subprocess.DEVNULL)
    diff_s, _ = run("diff", model, img["base.img"], "-o", img["d1.img"], "-q")
    # the random update may touch a file the host changed too: the model's side is taken
    rebase_s, said = run("rebase", img["host.diff"], "--onto", img["base.img"], img["d1.img"],
                         "-o", img["rebased.diff"], "--prefer", "chain")
    diff_again_s, _ = run("diff", model, img["base.img"], "-o", img["d1-again.img"], "-q")
    result = {"entries": args.entries, "host_changes": args.changes,
              "rebase_s": round(rebase_s, 2), "diff_s": round(diff_s, 2),
              "diff_warm_s": round(diff_again_s, 2),
              "rebase_over_diff": round(rebase_s / min(diff_s, diff_again_s), 2),
              "conflicts_decided": said.count("decided (chain)"),
              "host_diff_bytes": os.path.getsize(img["host.diff"]),
              "rebased_bytes": os.path.getsize(img["rebased.diff"])}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
