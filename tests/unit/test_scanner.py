"""The scanner: exclusions, quick check, and files that move under it. (One filesystem, and a
file root cannot read without its capabilities: system/test_scanner_as_root.py.)"""

import os
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from diffimg.entry import Hint
from diffimg.scan.hashing import hash_file
from diffimg.scan.scanner import hints_of, scan
from diffimg.tree.manifest import read_entries, write_manifest


def _paths(tree, **kw):
    return [e.path for e in scan(tree, **kw)]


def test_excludes_match_names_anywhere_and_paths_from_the_root(tmp_path):
    for rel in ["a/pagefile.sys", "a/b/keep", "Users/x/AppData/Temp/t", "Users/x/Docs/d",
                "c/pagefile.sys/inner"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    paths = _paths(tmp_path, excludes=["pagefile.sys", "/Users/*/AppData"])
    assert b"a/b/keep" in paths and b"Users/x/Docs/d" in paths
    assert not [p for p in paths if b"pagefile" in p or b"AppData" in p]


def test_quick_check_reuses_digests_and_checksum_does_not(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    f = tree / "f"
    f.write_bytes(b"a" * 1000)
    first = list(scan(tree))
    st = os.stat(f)
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    quick = list(scan(tree, previous=hints_of(first), trust_mtime=True))
    full = list(scan(tree, previous=hints_of(first), checksum=True))
    assert quick[1].digest == first[1].digest          # trusted size + mtime
    assert full[1].digest != first[1].digest           # hashed
    # by default, a hint without a stat proof answers for nothing
    assert list(scan(tree, previous=hints_of(first)))[1].digest == full[1].digest
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert list(scan(tree, previous=hints_of(first), trust_mtime=True))[1].digest == full[1].digest


def test_a_stat_proof_is_trusted_only_while_inode_and_ctime_hold(tmp_path):
    """A hint with a stat proof: trusted while inode and ctime are those recorded; a write that
    keeps size and mtime moves the ctime, and the file is hashed."""
    tree = tmp_path / "t"
    tree.mkdir()
    f = tree / "f"
    f.write_bytes(b"a" * 1000)
    first = list(scan(tree))
    st = os.stat(f)
    wrong = b"\1" * 16                     # a recorded digest the file does not hold
    proof = Hint(b"f", st.st_size, st.st_mtime_ns, wrong, False, st.st_ino, st.st_ctime_ns)
    assert list(scan(tree, previous=[proof]))[1].digest == wrong        # trusted: not read
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    rescanned = list(scan(tree, previous=[proof]))[1]
    assert rescanned.digest not in (wrong, first[1].digest)            # hashed
    assert rescanned.ctime_ns == os.stat(f).st_ctime_ns


def test_scan_previous_option_writes_the_same_manifest(tmp_path):
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    for i in range(50):
        (tree / "d" / f"f{i}").write_bytes(os.urandom(i * 100))
    run_cli("scan", tree, "-o", tmp_path / "1", check_rc=0)
    (tree / "d" / "f7").write_bytes(b"changed")
    run_cli("scan", tree, "-o", tmp_path / "2", "--previous", tmp_path / "1", check_rc=0)
    run_cli("scan", tree, "-o", tmp_path / "3", "--checksum", check_rc=0)
    assert list(read_entries(tmp_path / "2")) == list(read_entries(tmp_path / "3"))


def test_big_files_hash_in_chunks_like_small_ones(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    data = os.urandom(3 << 20) + b"end"
    (tree / "big").write_bytes(data)
    (tree / "copy-small").write_bytes(b"x")
    import xxhash
    entries = {e.path: e for e in scan(tree)}
    assert entries[b"big"].digest == xxhash.xxh3_128_digest(data)
    assert entries[b"big"].size == len(data)


def test_a_vanished_file_is_a_warning(tmp_path):
    """f250 is deleted after the walk saw it and before it is hashed: the scanner asks the
    previous manifest about f250 exactly in that gap, so the deletion happens there."""
    tree = tmp_path / "t"
    tree.mkdir()
    for i in range(300):
        (tree / f"f{i:03}").write_bytes(b"x" * 10)

    def previous():
        yield b"f249", 1, 0, b"\0" * 16, False, None, None
        os.unlink(tree / "f250")
        yield b"f250", 1, 0, b"\0" * 16, False, None, None

    warnings = []
    seen = [e.path for e in scan(tree, previous=previous(), on_warning=warnings.append)]
    assert b"f250" not in seen and b"f249" in seen and b"f251" in seen
    assert any("f250" in w and "vanished" in w for w in warnings)


def test_a_file_that_keeps_changing_is_reported(tmp_path):
    path = tmp_path / "growing"
    path.write_bytes(os.urandom(1 << 20) * 128)   # ~30 ms a read: the writer gets many turns
    size = path.stat().st_size
    writer = subprocess.Popen([sys.executable, "-c", f"""
import os
fd = os.open({str(path)!r}, os.O_WRONLY | os.O_APPEND)
while True:
    os.write(fd, b"more")
"""])
    try:
        while path.stat().st_size == size:   # the writer is running
            time.sleep(0.01)
        # a read whose every attempt the writer left alone (a busy machine may not run it
        # then) rightly sees a stable file: ask again, a few times
        problems = []
        for _ in range(10):
            problems.append(hash_file(os.fsencode(path))[0])
            if problems[-1] == "changed":
                break
    finally:
        writer.kill()
        writer.wait()
    assert problems[-1] == "changed", problems


def test_sparse_file_is_recorded_sparse(tmp_path):
    with open(tmp_path / "s", "wb") as f:
        f.truncate(16 << 20)
        f.write(b"head")
    (tmp_path / "dense").write_bytes(b"\0" * (1 << 20))
    entries = {e.path: e for e in scan(tmp_path)}
    assert entries[b"s"].sparse is True
    assert entries[b"dense"].sparse is False


def test_write_manifest_leaves_no_temp_file_on_failure(tmp_path):
    def failing():
        yield from scan(tmp_path / "t")
        raise RuntimeError("boom")
    (tmp_path / "t").mkdir()
    with pytest.raises(RuntimeError):
        write_manifest(tmp_path / "m", failing())
    assert sorted(os.listdir(tmp_path)) == ["t"]
