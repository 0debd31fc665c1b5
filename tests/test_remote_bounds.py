"""Issue 24: images on a web server, within bounds. verify URL checks what a local verify
checks, whatever the tree's size; a restore from a URL keeps few files open however many it
fetches; a server that trickles its answer is given up within the promised time; a ranges blob
cannot make the work outgrow what the container holds. Real images, a real nginx or an
in-process server on 127.0.0.1, the real CLI."""

import os
import random
import socket
import threading
import time

import pytest
from conftest import assert_one_line_error, needs_root, run_cli
from test_http import _with_ranges
from webserver import Nginx

from diffimg.image import Image
from diffimg.remote import TAIL

pytestmark = needs_root


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = Nginx(root, tmp_path / "nginx").start()
    yield server
    server.stop()


def _tree(root, count, sizes, seed=24):
    """count files of random content (sizes: the choices), in 50 folders, with long random
    names (a ranges blob of some length)."""
    rng = random.Random(seed)
    for n in range(count):
        folder = os.path.join(root, f"d{n % 50}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, rng.randbytes(12).hex()), "wb") as f:
            f.write(rng.randbytes(rng.choice(sizes)))
    return root


# item 7: verify URL

def test_verify_of_a_url_whose_ranges_blob_lies_before_the_first_request(tmp_path, www):
    """A ranges blob longer than what the first request of the image's end brings was taken
    for corrupt by verify URL (its digest checked before it was fetched)."""
    tree = _tree(tmp_path / "tree", 4000, range(1, 300))
    image = tmp_path / "www/base.img"
    run_cli("create", tree, image, "-q", check_rc=0)
    start = Image(image).blobs["ranges"][0]
    assert start < image.stat().st_size - TAIL          # (what made it fail)
    run_cli("verify", image, check_rc=0)
    proc = run_cli("verify", f"{www.url}/base.img")
    assert proc.returncode == 0, proc
    assert b"all good" in proc.stderr


def test_verify_of_a_url_checks_the_ranges_blob_against_the_container(tmp_path, www):
    """A blob that also locates a file the container does not hold: every stored file still
    checks out, but the blob is not the container's (spec/image.md): verify URL says so, as a
    local verify does."""
    tree = _tree(tmp_path / "tree", 30, (100, 5000, 200_000))
    image = tmp_path / "base.img"
    run_cli("create", tree, image, "-q", check_rc=0)

    def extra(items):
        items.append([b"not-in-the-container", *items[-1][1:]])
        return items
    _with_ranges(image, tmp_path / "www/extra.img", extra)
    proc = run_cli("verify", tmp_path / "www/extra.img")
    assert proc.returncode == 1 and b"does not match its container" in proc.stdout, proc
    proc = run_cli("verify", f"{www.url}/extra.img")
    assert proc.returncode == 1 and b"does not match its container" in proc.stdout, proc
    os.link(image, tmp_path / "www/base.img")
    run_cli("verify", f"{www.url}/base.img", check_rc=0)


# item 10: a server that trickles

class _Trickler:
    """A server on 127.0.0.1 that answers every request for the last bytes of a 10 MiB file
    a byte at a time, every `every` seconds: its status line and headers too (headers=False),
    or only its body (headers=True). Counts the connections it took."""

    SIZE = 10 << 20

    def __init__(self, headers: bool, every: float):
        self.headers, self.every = headers, every
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            try:
                conn.recv(65536)
                start = self.SIZE - TAIL
                head = (f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-"
                        f"{self.SIZE - 1}/{self.SIZE}\r\nContent-Length: {TAIL}\r\n\r\n").encode()
                if self.headers:
                    conn.sendall(head)
                    head = b""
                for byte in head + bytes(TAIL):
                    conn.sendall(bytes([byte]))
                    time.sleep(self.every)
            except OSError:
                return

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("headers", [False, True], ids=["status-line", "body"])
def test_a_trickling_server_is_given_up_within_the_bound(headers):
    """A byte every 0.25 s, each well within the 30 s timeout: given up (exit 18) once the
    headers are past their deadline or the answer has averaged under 4 KiB/s for the bound
    (lowered to 2 s here), not retried (a single connection), not waited on for ever."""
    server = _Trickler(headers, 0.25)
    try:
        started = time.monotonic()
        proc = run_cli("info", f"http://127.0.0.1:{server.port}/base.img", timeout=40,
                       env={**os.environ, "DIFFIMG_HTTP_SLOW_AFTER": "2"})
        took = time.monotonic() - started
        line = assert_one_line_error(proc, 18)
        assert "gave up" in line
        assert ("KiB/s" in line) == headers, line
        assert took < 8, took
        assert server.connections == 1
    finally:
        server.close()
