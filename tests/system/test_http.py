"""Images on a web server (a real nginx on loopback): a chain restored from URLs is exact; a
target that lacks some files fetches only their ranges, in few requests; a server that does not
honour ranges, a dropped connection, damaged content and a crafted ranges blob each end as the
spec says, never with a wrong byte written."""

import http.server
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import assert_one_line_error, run_cli
from crafted import with_ranges
from snapshot import assert_same_tree, snapshot
from treebuild import change_everything
from webserver import Nginx, free_port

from diffimg.image.format import Image
from diffimg.image.remote import read_ranges


def _content_requests(server, name: str, image):
    """The requests for name's content: those asking for bytes of its container (its metadata
    lies after it, and is asked for from the end)."""
    length = Image(image).container["length"]

    def first(header):
        start = header.split("=", 1)[-1].split("-", 1)[0]
        return int(start) if start.isdigit() else None
    return [r for r in server.log() if r[1] == "/" + name and first(r[4]) is not None
            and first(r[4]) < length]


@pytest.mark.root
def test_a_chain_restored_from_a_web_server_is_exact(rich_tree, tmp_path, www):
    run_cli("create", rich_tree, tmp_path / "www/base.img", "-q", check_rc=0)
    change_everything(rich_tree)
    run_cli("diff", rich_tree, tmp_path / "www/base.img", "-o", tmp_path / "www/d1.img", "-q",
            check_rc=0)
    with open(os.path.join(rich_tree, b"Program Files/cap-bin"), "ab") as f:
        f.write(b" patched again")
    run_cli("diff", rich_tree, tmp_path / "www/base.img", tmp_path / "www/d1.img", "-o",
            tmp_path / "www/d2.img", "-q", check_rc=0)
    urls = [f"{www.url}/{name}" for name in ("base.img", "d1.img", "d2.img")]
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", *urls, target, "-q", check_rc=0)
    assert_same_tree(snapshot(target), snapshot(rich_tree))
    # again: nothing differs, so no content is fetched
    before = len(www.log())
    proc = run_cli("restore", *urls, target, check_rc=0)
    assert b"nothing to do" in proc.stderr
    assert all(r[4].startswith("bytes=-") for r in www.log()[before:])    # metadata only
    run_cli("verify", *urls, check_rc=0)
    assert b"kind:       diff" in run_cli("info", urls[2], check_rc=0).stdout
    assert b"Program Files/cap-bin" in run_cli("ls", urls[2], check_rc=0).stdout
    run_cli("compare", *urls, target, check_rc=0)


def _many_files(root, count=1500, seed=7):
    rng = random.Random(seed)
    for n in range(count):
        folder = os.path.join(root, f"d{n % 37}")
        os.makedirs(folder, exist_ok=True)
        size = rng.choice([200, 3000, 40_000, 150_000, 700_000])
        with open(os.path.join(folder, f"f{n}.bin"), "wb") as f:
            f.write(rng.randbytes(size // 2) + bytes(size - size // 2))   # half compressible


def _imaged(tmp_path, count, image="www/base.img"):
    """A tree of count files (_many_files) and its image at tmp_path/image: (tree, image)."""
    tree, image = tmp_path / "tree", tmp_path / image
    _many_files(tree, count=count)
    image.parent.mkdir(exist_ok=True)
    run_cli("create", tree, image, "-q", check_rc=0)
    return tree, image


@pytest.mark.root
def test_a_target_lacking_scattered_files_fetches_only_their_ranges(tmp_path, www):
    tree, image = _imaged(tmp_path, 1500)
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", image, target, "-q", check_rc=0)           # from the local file
    # the target loses a scattered 2% of its files, and 1% more are changed
    files = sorted(p for p in target.rglob("*.bin"))
    rng = random.Random(3)
    lacking = rng.sample(files, len(files) // 50 + len(files) // 100)
    for n, path in enumerate(lacking):
        if n % 3:
            path.unlink()
        else:
            path.write_bytes(b"a local change")
    _, _, located = read_ranges(Image(image))
    lacked = sum(located[os.fsencode(p.relative_to(target))].span() for p in lacking)
    run_cli("restore", f"{www.url}/base.img", target, "-q", check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))
    asked = _content_requests(www, "base.img", image)
    fetched = sum(r[3] for r in asked)
    assert 0 < fetched <= 1.25 * lacked, (fetched, lacked)
    assert len(asked) <= max(1, len(lacking) // 50), (len(asked), len(lacking))
    assert all(r[2] == 206 for r in www.log())


def test_a_server_that_ignores_ranges_is_refused_and_nothing_changes(tmp_path):
    tree, _ = _imaged(tmp_path, 20)
    port = free_port()
    # Python's own http.server answers every GET with the whole file (200)
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", tmp_path / "www"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        target = tmp_path / "target"
        target.mkdir()
        proc = run_cli("restore", f"http://127.0.0.1:{port}/base.img", target)
        line = assert_one_line_error(proc, 19)
        assert "does not honour Range requests" in line
        assert os.listdir(target) == []
    finally:
        server.terminate()
        server.wait()


def test_a_missing_image_and_an_unreachable_server(tmp_path, www):
    proc = run_cli("info", f"{www.url}/nothing.img")
    assert_one_line_error(proc, 3)
    port = free_port()         # a typo in the port: said at once, not retried for 30 s
    started = time.monotonic()
    proc = run_cli("info", f"http://127.0.0.1:{port}/base.img")
    line = assert_one_line_error(proc, 18)
    assert f"nothing answers at 127.0.0.1:{port}" in line and "check" in line, line
    assert time.monotonic() - started < 10


def _wait_for_port(port):
    import socket
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not start")


def test_a_restore_resumes_when_the_server_restarts_mid_fetch(tmp_path):
    tree, _ = _imaged(tmp_path, 150)
    size = os.path.getsize(tmp_path / "www/base.img")
    # about 4 s for the whole image; the server is stopped after 1.5 s and back 2 s later
    server = Nginx(tmp_path / "www", tmp_path / "nginx", extra=f"limit_rate {size // 4};")
    server.start()
    target = tmp_path / "target"
    target.mkdir()
    restore = subprocess.Popen([sys.executable, "-m", "diffimg", "restore",
                                f"{server.url}/base.img", target, "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        server.stop()
        time.sleep(2)
        server.start()
        _, err = restore.communicate(timeout=120)
    finally:
        server.stop()
        if restore.poll() is None:
            restore.kill()
    assert restore.returncode == 0, err
    assert_same_tree(snapshot(target), snapshot(tree))
    # the request after the restart asked for the rest of the range, not from its start again
    # (nginx logs the cut one only when it ends: killed, it is not in its log)
    content = [r for r in server.log() if r[1] == "/base.img"][1:]
    resumed = [int(r[4].split("=")[1].split("-")[0]) for r in content]
    assert resumed and min(resumed) > size // 10, content


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_content_on_the_server_is_never_written(tmp_path, www):
    tree, image = _imaged(tmp_path, 40)
    _, _, located = read_ranges(Image(image))
    victim, blocks = max(located.items(), key=lambda item: item[1].span())
    _flip(image, blocks.start + 10)
    target = tmp_path / "target"
    target.mkdir()
    proc = run_cli("restore", f"{www.url}/base.img", target)
    line = assert_one_line_error(proc, 8)
    assert os.fsdecode(victim) in line
    assert not (target / os.fsdecode(victim)).exists()
    assert not [n for n in os.listdir(target) if n.startswith(".diffimg-")]
    proc = run_cli("verify", f"{www.url}/base.img")
    assert proc.returncode == 1 and os.fsencode(victim) in proc.stdout + proc.stderr


@pytest.mark.root
def test_a_crafted_ranges_blob_never_passes_wrong_bytes(tmp_path, www):
    _, image = _imaged(tmp_path, 40, "base.img")

    def swap(items):      # two files of one size point at each other's blocks
        files = items[1 + items[0]["fragments"]:]
        by_size = {}
        for rec in files:
            by_size.setdefault(rec[5], []).append(rec)
        a, b = next(group for group in by_size.values() if len(group) >= 2)[:2]
        a[1:3], b[1:3] = b[1:3], a[1:3]
        return items

    def past_the_end(items):
        items[-1][1] = 1 << 40
        return items

    for name, edit, line_has in (("swapped.img", swap, "does not match its digest"),
                                 ("past.img", past_the_end, "ranges blob is malformed")):
        with_ranges(image, tmp_path / "www" / name, edit)
        target = tmp_path / f"target-{name}"
        target.mkdir()
        proc = run_cli("restore", f"{www.url}/{name}", target)
        assert line_has in assert_one_line_error(proc, 8)
        # (its folders may be made: the fetch comes after them) no file was written
        assert [p for p in target.rglob("*") if not p.is_dir()
                and not p.relative_to(target).parts[0].startswith(".diffimg")] == []
        # the local copy: verify names the blob that no longer matches the container
        proc = run_cli("verify", tmp_path / "www" / name)
        assert proc.returncode == 1 and b"ranges blob" in proc.stdout + proc.stderr


def test_an_interrupted_fetch_leaves_nothing_and_the_next_restore_converges(tmp_path):
    tree, _ = _imaged(tmp_path, 150)
    size = os.path.getsize(tmp_path / "www/base.img")
    with Nginx(tmp_path / "www", tmp_path / "nginx", extra=f"limit_rate {size // 3};") as server:
        target = tmp_path / "target"
        target.mkdir()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            restore = subprocess.Popen([sys.executable, "-m", "diffimg", "restore",
                                        f"{server.url}/base.img", target, "-q"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(1.5)
            restore.send_signal(sig)
            restore.wait(30)
            if sig == signal.SIGTERM:
                assert restore.returncode == 130
                assert not [n for n in os.listdir(target) if n.startswith(".diffimg-fetch")]
        run_cli("restore", f"{server.url}/base.img", target, "-q", check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))
    assert not [n for n in os.listdir(target) if n.startswith(".diffimg-")]
    shutil.rmtree(target)


@pytest.mark.root
def test_fetch_copies_proven_images_and_mends_a_corrupt_cached_one(tmp_path, www):
    tree, image = _imaged(tmp_path, 60)
    cache = tmp_path / "cache"
    cache.mkdir()
    url = f"{www.url}/base.img"
    proc = run_cli("fetch", url, "--cache", cache, check_rc=0)
    assert proc.stdout == bytes(cache / "base.img") + b"\n"
    assert (cache / "base.img").read_bytes() == image.read_bytes()
    # a byte of a stored file flipped in the cache: found, fetched again, identical
    _, _, located = read_ranges(Image(image))
    _flip(cache / "base.img", max(located.values(), key=lambda b: b.span()).start + 100)
    proc = run_cli("fetch", url, "--cache", cache, check_rc=0)
    assert b"damaged; fetching it again" in proc.stderr
    assert (cache / "base.img").read_bytes() == image.read_bytes()
    # a partial copy is resumed where it stopped
    (cache / "base.img").unlink()
    (cache / ".base.img.part").write_bytes(image.read_bytes()[:len(image.read_bytes()) // 2])
    before = len(www.log())
    run_cli("fetch", url, "--cache", cache, "-q", check_rc=0)
    assert (cache / "base.img").read_bytes() == image.read_bytes()
    resumed = [r for r in www.log()[before:] if not r[4].startswith("bytes=-")]
    assert resumed and all(int(r[4][6:].split("-")[0]) >= image.stat().st_size // 2
                           for r in resumed), resumed
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", cache / "base.img", target, "-q", check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))


class _Useless(http.server.BaseHTTPRequestHandler):
    """Answers every request 206 with the first byte of the file, whatever was asked."""

    def do_GET(self):
        self.send_response(206)
        self.send_header("Content-Range", f"bytes 0-0/{self.server.size}")
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args):
        pass


def test_a_server_that_never_sends_what_is_asked_for_is_given_up(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Useless)
    server.size = 10 << 20
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        proc = run_cli("info", f"http://127.0.0.1:{server.server_port}/base.img",
                       env={**os.environ, "DIFFIMG_HTTP_RETRIES": "2"}, timeout=60)
        assert_one_line_error(proc, 18)
        assert time.monotonic() - start < 30
    finally:
        server.shutdown()


def test_fetch_never_writes_through_what_is_planted_in_the_cache(tmp_path, www):
    _imaged(tmp_path, 10)
    run_cli("seed", tmp_path / "www/base.img", "--via", "torrent", "--web-seed", www.url, "--for",
            "0", "--port", "0", check_rc=0)          # (writes base.img.torrent)
    url = f"{www.url}/base.img"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    for planted in (".base.img.part", ".base.img.torrent-part"):
        (cache / planted).symlink_to(victim)
    (cache / "base.img").mkdir()
    for via in ("http", "torrent"):
        proc = run_cli("fetch", url, "--cache", cache, "--via", via, "--port", "0")
        assert_one_line_error(proc, 7)
    assert victim.read_bytes() == b"keep me"
    os.mkfifo(cache / ".d.img.part")       # never blocks on a FIFO either
    # a cache folder others can write is refused before anything is fetched
    os.chmod(cache, 0o777)
    proc = run_cli("fetch", url, "--cache", cache)
    assert "writable by no one else" in assert_one_line_error(proc, 7)


@pytest.mark.root
def test_a_full_target_is_said_as_one(tmp_path, www):
    _imaged(tmp_path, 30)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small], check=True)
    try:
        proc = run_cli("restore", f"{www.url}/base.img", small)
        assert "full" in assert_one_line_error(proc, 7)
        cache = small / "cache"
        cache.mkdir(mode=0o700)
        for name in os.listdir(small):
            if name != "cache":
                shutil.rmtree(small / name, ignore_errors=True)
        proc = run_cli("fetch", f"{www.url}/base.img", "--cache", cache)
        assert_one_line_error(proc, 7)
    finally:
        subprocess.run(["umount", small], check=True)
