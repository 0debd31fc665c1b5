"""A small classroom (a server and 3 clients in network namespaces, ports rate-limited): a
3-layer chain restored straight from the web server is exact on every client; BitTorrent and
multicast deliver caches byte-identical to the server's images, restored exact; a client killed
mid-download, a slow one and packet loss do not keep the others from finishing; nothing is
left running. The full lab with timings is `make bench-deploy`."""

import filecmp
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli
from lab import Lab
from snapshot import assert_same_tree, snapshot
from treebuild import change_everything
from webserver import Nginx

pytestmark = pytest.mark.root
CLIENTS = ("c1", "c2", "c3")
DIFFIMG = [sys.executable, "-m", "diffimg"]


@pytest.fixture
def lab(tmp_path):
    with Lab(3, rate="400mbit") as lab:
        root = tmp_path / "www"
        root.mkdir()
        lab.web = Nginx(root, tmp_path / "nginx", host=lab.address("server"), port=80,
                        netns=lab.ns("server")).start()
        try:
            yield lab
        finally:
            lab.web.stop()
        # nothing is left running on any host (udp-receiver, a seeder, a fetch)
        left = {host: lab.pids(host) for host in lab.hosts}
        assert not any(left.values()), left


def _wait_all(procs, timeout=180):
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        out.append((p.returncode, err))
    return out


def test_a_chain_restored_from_the_web_server_is_exact_on_every_client(rich_tree, tmp_path,
                                                                        lab):
    www = tmp_path / "www"
    run_cli("create", rich_tree, www / "base.img", "-q", check_rc=0)
    change_everything(rich_tree)
    run_cli("diff", rich_tree, www / "base.img", "-o", www / "d1.img", "-q", check_rc=0)
    with open(os.path.join(rich_tree, b"Program Files/cap-bin"), "ab") as f:
        f.write(b" patched again")
    run_cli("diff", rich_tree, www / "base.img", www / "d1.img", "-o", www / "d2.img", "-q",
            check_rc=0)
    urls = [f"{lab.web.url}/{n}" for n in ("base.img", "d1.img", "d2.img")]
    targets = {c: tmp_path / c for c in CLIENTS}
    for t in targets.values():
        t.mkdir()
    # c2 already holds the base: it fetches only what the diffs store
    run_cli("restore", www / "base.img", targets["c2"], "-q", check_rc=0)
    before = len(lab.web.log())
    procs = [lab.start(c, [*DIFFIMG, "restore", *urls, targets[c], "-q"], stderr=subprocess.PIPE)
             for c in CLIENTS]
    assert [rc for rc, _ in _wait_all(procs)] == [0, 0, 0]
    want = snapshot(rich_tree)
    for t in targets.values():
        assert_same_tree(snapshot(t), want)
    # what the client at the base asked of base.img: its metadata, never its content
    by_client = [r for r in lab.web.log()[before:] if r[1] == "/base.img"]
    assert sum(1 for r in by_client if not r[4].startswith("bytes=-")) == 2     # c1, c3


def _bulky_tree(root, megabytes=24, seed=5):
    rng = random.Random(seed)
    for n in range(megabytes * 4):
        folder = os.path.join(root, f"d{n % 9}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"f{n}"), "wb") as f:
            f.write(rng.randbytes(256 << 10))


def test_torrent_and_multicast_give_every_client_the_servers_images(tmp_path, lab):
    tree = tmp_path / "tree"
    _bulky_tree(tree)
    image = tmp_path / "www/base.img"
    run_cli("create", tree, image, "-q", check_rc=0)
    url = f"{lab.web.url}/base.img"
    caches = {c: tmp_path / f"cache-{c}" for c in CLIENTS}
    for cache in caches.values():
        cache.mkdir()
    # BitTorrent: the server seeds (the web server a web seed); c3 is killed mid-way, c2 is slow
    lab.limit("c2", "40mbit")
    seeder = lab.start("server", [*DIFFIMG, "seed", image, "--via", "torrent", "--web-seed",
                                  lab.web.url, "--for", "120"], stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        procs = [lab.start(c, [*DIFFIMG, "fetch", url, "--cache", caches[c], "--via", "torrent",
                               "--seed-for", "2", "-q"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE) for c in CLIENTS]
        time.sleep(0.7)
        procs[2].send_signal(signal.SIGKILL)
        results = _wait_all(procs[:2])
        procs[2].wait()
    finally:
        seeder.send_signal(signal.SIGTERM)
        seeder.wait(30)
    assert [rc for rc, _ in results] == [0, 0], results
    for c in ("c1", "c2"):
        assert filecmp.cmp(caches[c] / "base.img", image, shallow=False)
    # the killed client runs again and finishes from the web seed alone
    proc = lab.run("c3", [*DIFFIMG, "fetch", url, "--cache", caches["c3"], "--via", "torrent",
                          "-q"])
    assert proc.returncode == 0, proc.stderr
    assert filecmp.cmp(caches["c3"] / "base.img", image, shallow=False)
    assert not [n for n in os.listdir(caches["c3"]) if n.startswith(".")]

    # multicast: 1% packet loss on c1; a copy is proven before it is named
    for cache in caches.values():
        (cache / "base.img").unlink()
    lab.limit("c2", "400mbit")
    lab.lose("c1", 1)
    sender = lab.start("server", [*DIFFIMG, "seed", image, "--via", "multicast",
                                  "--min-receivers", "3", "--max-wait", "20", "--interface",
                                  "eth0", "--max-bitrate", "300m"], stderr=subprocess.PIPE)
    procs = [lab.start(c, [*DIFFIMG, "fetch", url, "--cache", caches[c], "--via", "multicast",
                           "--interface", "eth0", "--start-timeout", "30", "-q"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in CLIENTS]
    results = _wait_all(procs)
    assert [rc for rc, _ in results] == [0, 0, 0], results
    assert sender.wait(60) == 0
    for c in CLIENTS:
        assert filecmp.cmp(caches[c] / "base.img", image, shallow=False)
    # and a cached image restores like the server's
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", caches["c1"] / "base.img", target, "-q", check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))
