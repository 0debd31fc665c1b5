"""Issue 24: images on a web server, within bounds. verify URL checks what a local verify
checks, whatever the tree's size; a restore from a URL keeps few files open however many it
fetches; a server that trickles its answer is given up within the promised time; a ranges blob
cannot make the work outgrow what the container holds. Real images, a real nginx or an
in-process server on 127.0.0.1, the real CLI."""

import os
import random
import socket
import struct
import threading
import time

import pytest
from conftest import assert_one_line_error, run_cli
from crafted import with_ranges
from snapshot import assert_same_tree, snapshot

from diffimg import codec
from diffimg.image.format import Image, append_metadata
from diffimg.image.remote import TAIL
from diffimg.tree.manifest import write_manifest


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

@pytest.mark.root
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


@pytest.mark.root
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
    with_ranges(image, tmp_path / "www/extra.img", extra)
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


# item 6: open files

def test_a_restore_from_a_url_keeps_few_files_open_however_many_it_fetches(tmp_path, www):
    """1,100 files to fetch (some of several blocks) under a limit of 256 open files: every
    file used to be opened at once (exit 7, the fetch folder left behind)."""
    tree = _tree(tmp_path / "tree", 900, (10, 3000, 20_000))
    _tree(tmp_path / "tree/big", 200, (140_000, 300_000), seed=6)
    run_cli("create", tree, tmp_path / "www/base.img", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    limited = ("prlimit", "--nofile=256:256")
    run_cli("restore", f"{www.url}/base.img", target, "-q", prefix=limited, check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))
    assert not [n for n in os.listdir(target) if n.startswith(".diffimg-fetch")]
    # verify URL hashes them all the same way
    run_cli("verify", f"{www.url}/base.img", prefix=limited, check_rc=0)


# item 11: work bounded by the container

def _crafted_blocks(tmp_path, blocks: int) -> str:
    """An image (digests and tree ID recomputed) whose one file the ranges blob gives blocks
    1-byte blocks of 4 KiB each (its manifest size to match): a blob of a few hundred bytes."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(random.Random(11).randbytes(blocks + (1 << 20)))
    made = tmp_path / "made.img"
    run_cli("create", tree, made, "-q", check_rc=0)
    image = Image(made)
    entries = list(image.entries())
    (entry,) = [e for e in entries if e.path == b"f"]
    entry.size = blocks * 4096
    manifest = tmp_path / "crafted-manifest"
    trailer = write_manifest(manifest, entries)
    blob = codec.pack_compressed([{"block_size": 4096, "compressor": "zstd", "fragments": 0},
                                  [b"f", 0, struct.pack("<I", 1) * blocks, None, 0, blocks * 4096]])
    assert len(blob) < 4000
    out = tmp_path / "www/crafted.img"
    with open(made, "rb") as src, open(out, "wb") as dst:
        dst.write(src.read(image.container["length"]))
        append_metadata(dst, image.container, manifest, None,
                        dict(image.info, tree_id=trailer["tree_id"]), blob)
    return out


def test_a_ranges_blob_of_millions_of_tiny_blocks_costs_what_the_container_holds(tmp_path, www):
    """A file given 4 million 1-byte blocks: planned block by block it cost 2 GiB (out of
    memory, a traceback); now a one-line error (exit 8) in little memory and time."""
    _crafted_blocks(tmp_path, 4 << 20)
    target = tmp_path / "target"
    target.mkdir()
    started = time.monotonic()
    proc = run_cli("restore", f"{www.url}/crafted.img", target,
                   prefix=("prlimit", f"--as={1200 << 20}"), timeout=120)
    assert "does not decode" in assert_one_line_error(proc, 8)
    assert time.monotonic() - started < 60
    assert not [p for p in target.rglob("*") if p.is_file() and ".diffimg" not in p.parts]


def test_blocks_that_overlap_are_a_malformed_ranges_blob(tmp_path, www):
    """Two files whose blocks overlap (not the very same blocks of files of equal content):
    what is read would no longer be bounded by the container (exit 8)."""
    tree = _tree(tmp_path / "tree", 4, (200_000,))
    run_cli("create", tree, tmp_path / "base.img", "-q", check_rc=0)

    def overlap(items):
        files = items[1 + items[0]["fragments"]:]
        files[1][1] = files[0][1] + 1
        return items
    with_ranges(tmp_path / "base.img", tmp_path / "www/overlap.img", overlap)
    target = tmp_path / "target"
    target.mkdir()
    proc = run_cli("restore", f"{www.url}/overlap.img", target)
    assert "ranges blob is malformed (blocks that overlap)" in assert_one_line_error(proc, 8)
