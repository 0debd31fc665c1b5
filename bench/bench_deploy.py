#!/usr/bin/env python3
"""A simulated classroom on this one machine (issue 14's targets): a server and N clients in
network namespaces on one bridge, every port rate-limited with tbf (tests/lab.py), the images on
a real nginx. Each scenario is measured in the same run as its reference, one client alone
fetching the image by HTTP:

  torrent      N fresh clients fetch the image by BitTorrent (the server seeds, the web server
               is the web seed): time to the first, median and last client against one alone;
               bytes the server's port sent against the image's size
  multicast    the same with udpcast (min receivers N)
  slow/killed  torrent again with one client at a fifth of the rate and one killed mid-way: the
               others' median against the plain torrent run
  loss         multicast again with 1% of the packets each client receives dropped
  lacking      one client whose tree lacks a scattered 1% of the files restores from the URL:
               bytes its port received and requests made, against the compressed bytes lacked

    python bench/bench_deploy.py [--clients 32] [--rate 100mbit] [--mb 60] [--only NAME,...]

Writes bench/results/deploy.json and prints a table. Needs root (namespaces, tc, nftables).
"""

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from lab import Lab  # noqa: E402
from webserver import Nginx  # noqa: E402

from diffimg.image.format import Image  # noqa: E402
from diffimg.image.remote import read_ranges  # noqa: E402

DIFFIMG = [sys.executable, "-m", "diffimg"]


def tx_bytes(lab, host) -> int:
    out = lab.run(host, ["cat", "/sys/class/net/eth0/statistics/tx_bytes"]).stdout
    return int(out)


def rx_bytes(lab, host) -> int:
    return int(lab.run(host, ["cat", "/sys/class/net/eth0/statistics/rx_bytes"]).stdout)


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def timed_fetches(lab, clients, argv_of, ready_of, kill=None):
    """Start every client's fetch at once; seconds until each one's image was ready (its cached
    copy checked and named: ready_of(client) exists; a torrent client seeds on after that), None
    for one that failed or was killed."""
    start = time.monotonic()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = {c: lab.start(c, argv_of(c), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in clients}
    ready, ended = {}, set()
    killed = False
    while len(ended) < len(procs):
        now = time.monotonic() - start
        if kill is not None and not killed and now >= kill[1]:
            procs[kill[0]].send_signal(signal.SIGKILL)
            killed = True
        for c, p in procs.items():
            if c not in ready and os.path.exists(ready_of(c)):
                ready[c] = now
            if c not in ended and p.poll() is not None:
                ended.add(c)
                if p.returncode != 0:
                    ready[c] = None
                    if kill is None or c != kill[0]:
                        print(f"  {c} failed: {p.stderr.read().decode()[-300:]}", file=sys.stderr)
        time.sleep(0.05)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the clients' own CPU time: on this one machine their work queues on its cores, which a
    # real classroom (a CPU per client) does not
    ready["cpu_s"] = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    return ready


def summary(times: dict, alone: float) -> dict:
    times = dict(times)
    cpu = times.pop("cpu_s", 0.0)
    ok = sorted(t for t in times.values() if t is not None)
    if not ok:
        return {"failed": len(times)}
    return {"clients": len(ok), "failed": len(times) - len(ok), "first_s": round(ok[0], 2),
            "median_s": round(statistics.median(ok), 2), "last_s": round(ok[-1], 2),
            "last_vs_alone": round(ok[-1] / alone, 2), "clients_cpu_s": round(cpu, 1),
            "cpu_floor_s": round(cpu / (os.cpu_count() or 1), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--mb", type=int, default=60, help="size of the image's tree")
    ap.add_argument("--work", default="/var/tmp/diffimg-bench-deploy")
    ap.add_argument("--only", default="torrent,multicast,slow,loss,lacking")
    args = ap.parse_args()
    only = set(args.only.split(","))
    work = f"{args.work}-{args.mb}mb"       # the tree and image are made once per size
    os.makedirs(work, exist_ok=True)
    tree, www = os.path.join(work, "tree"), os.path.join(work, "www")
    if not os.path.isdir(tree):
        subprocess.run([sys.executable, os.path.join(HERE, "gentree.py"), tree, "--entries",
                        str(max(500, args.mb * 25)), "--bytes", f"{args.mb}M"], check=True)
    image = os.path.join(www, "base.img")
    if not os.path.exists(image):
        os.makedirs(www, exist_ok=True)
        subprocess.run([*DIFFIMG, "create", tree, image, "-q"], check=True)
    for stale in os.listdir(www):
        if stale.endswith(".torrent"):
            os.unlink(os.path.join(www, stale))
    size = os.path.getsize(image)
    clients = [f"c{n}" for n in range(1, args.clients + 1)]
    results = {"clients": args.clients, "rate": args.rate, "image_bytes": size}
    caches = {c: os.path.join(work, "cache", c) for c in clients}
    with Lab(args.clients, rate=args.rate, prefix=f"dl{os.getpid()}") as lab:
        web = Nginx(www, os.path.join(work, "nginx"), host=lab.address("server"), port=80,
                    netns=lab.ns("server")).start()
        url = f"{web.url}/base.img"
        try:
            def fetch_argv(via, extra=()):
                return lambda c: [*DIFFIMG, "fetch", url, "--cache", caches[c], "--via", via,
                                  "-q", *extra]

            def ready(c):
                return os.path.join(caches[c], "base.img")

            fresh(caches["c1"])
            alone_run = timed_fetches(lab, ["c1"], fetch_argv("http"), ready)
            alone = alone_run["c1"]
            results["alone_cpu_s"] = round(alone_run["cpu_s"], 2)
            results["alone_http_s"] = round(alone, 2)
            print(f"one client alone by HTTP: {alone:.2f} s ({size / alone / 1e6:.1f} MB/s)")

            def torrent_run(name, kill=None, slow=None):
                for c in clients:
                    fresh(caches[c])
                if slow:
                    lab.limit(slow, _fifth(args.rate))
                sent = tx_bytes(lab, "server")
                seeder = lab.start("server", [*DIFFIMG, "seed", image, "--via", "torrent",
                                              "--web-seed", web.url, "--for", "100000"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(2)
                times = timed_fetches(lab, clients, fetch_argv("torrent", ("--seed-for", "15")),
                                      ready, kill)
                seeder.send_signal(signal.SIGTERM)
                seeder.wait(60)
                if slow:
                    lab.limit(slow, args.rate)
                res = summary({c: t for c, t in times.items()
                               if c not in (slow, kill and kill[0])}, alone)
                res["server_sent_vs_image"] = round((tx_bytes(lab, "server") - sent) / size, 2)
                results[name] = res
                print(f"{name}: {res}")

            def multicast_run(name, loss=0):
                for c in clients:
                    fresh(caches[c])
                    if loss:
                        lab.lose(c, loss)
                sent = tx_bytes(lab, "server")
                sender = lab.start("server", [*DIFFIMG, "seed", image, "--via", "multicast",
                                              "--min-receivers", str(len(clients)), "--max-wait",
                                              "60", "--interface", "eth0", "--max-bitrate",
                                              _bitrate(args.rate)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times = timed_fetches(lab, clients, fetch_argv("multicast", (
                    "--interface", "eth0")), ready)
                sender.wait(120)
                res = summary(times, alone)
                res["server_sent_vs_image"] = round((tx_bytes(lab, "server") - sent) / size, 2)
                results[name] = res
                print(f"{name}: {res}")

            if "torrent" in only:
                torrent_run("torrent")
            if "slow" in only:
                torrent_run("torrent_slow_and_killed", kill=(clients[-1], alone / 2),
                            slow=clients[-2] if len(clients) > 2 else None)
                if "torrent" in results:
                    results["torrent_slow_and_killed"]["median_vs_plain"] = round(
                        results["torrent_slow_and_killed"]["median_s"]
                        / results["torrent"]["median_s"], 2)
            if "multicast" in only:
                multicast_run("multicast")
            if "loss" in only:
                multicast_run("multicast_1pct_loss", loss=1)
                if "multicast" in results:
                    results["multicast_1pct_loss"]["last_vs_plain"] = round(
                        results["multicast_1pct_loss"]["last_s"] / results["multicast"]["last_s"], 2)
            if "lacking" in only:
                results["lacking_1pct"] = lacking(lab, web, tree, image, work)
                print(f"lacking_1pct: {results['lacking_1pct']}")
        finally:
            web.stop()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "deploy.json"), "w") as f:
        json.dump(results, f, indent=1)


def lacking(lab, web, tree, image, work) -> dict:
    """c1's target equals the tree but for a scattered 1% of its files, removed: it restores
    from the URL; what its port received, against the compressed bytes of what it lacked."""
    target = os.path.join(work, "target")
    fresh(target)
    subprocess.run([*DIFFIMG, "restore", image, target, "-q"], check=True)
    files = sorted(os.path.relpath(os.path.join(d, n), target) for d, _, names in os.walk(target)
                   for n in names if not os.path.relpath(d, target).startswith(".diffimg"))
    files = [f for f in files if os.path.isfile(os.path.join(target, f))
             and not os.path.islink(os.path.join(target, f))]
    lost = random.Random(1).sample(files, max(1, len(files) // 100))
    _, _, located = read_ranges(Image(image))
    lacked = 0
    for rel in lost:
        blocks = located.get(os.fsencode(rel))
        if blocks is not None:          # (a later hardlink member is stored once)
            lacked += blocks.span()
        os.unlink(os.path.join(target, rel))
    before_rx, before_log = rx_bytes(lab, "c1"), len(web.log())
    start = time.monotonic()
    proc = lab.run("c1", [*DIFFIMG, "restore", f"{web.url}/base.img", target, "-q"])
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        return {"failed": proc.stderr.decode()[-300:]}
    received = rx_bytes(lab, "c1") - before_rx
    asked = web.log()[before_log:]
    length = Image(image).container["length"]       # content ranges start before it
    content = [r for r in asked if _first_byte(r[4]) is not None and _first_byte(r[4]) < length]
    content_bytes = sum(r[3] for r in content)
    return {"files_lacked": len(lost), "lacked_bytes": lacked, "content_bytes": content_bytes,
            "content_vs_lacked": round(content_bytes / lacked, 3) if lacked else None,
            "metadata_bytes": sum(r[3] for r in asked) - content_bytes,
            "port_received_bytes": received, "requests": len(asked),
            "content_requests": len(content),
            "files_per_content_request": round(len(lost) / max(1, len(content)), 1),
            "seconds": round(seconds, 2)}


def _first_byte(header: str):
    """The first byte a Range header asks for (None for a suffix range, bytes=-N)."""
    first = header.split("=", 1)[-1].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _fifth(rate: str) -> str:
    number = int("".join(ch for ch in rate if ch.isdigit()))
    unit = "".join(ch for ch in rate if not ch.isdigit())
    return f"{max(1, number // 5)}{unit}"


def _bitrate(rate: str) -> str:
    """udp-sender's --max-bitrate: 90% of the port's rate (tbf drops what is over it)."""
    number = int("".join(ch for ch in rate if ch.isdigit()))
    unit = "".join(ch for ch in rate if not ch.isdigit()).lower()
    scale = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[unit]
    return f"{int(number * scale * 0.9 / 1e6)}m"


if __name__ == "__main__":
    main()
