"""diffimg mount reads a large tree with little TMPDIR room (issue 24, item 14), and a whole-disk
file or device given where a partition is taken says how to pick a partition (item 17b)."""

import contextlib
import errno
import json
import os
import re
import shlex
import subprocess

import pytest
from conftest import assert_one_line_error, run_cli
from leftovers import diffimg_mounts


@contextlib.contextmanager
def _small_tmpdir(path, size: str):
    """A tmpfs of size at path, unmounted at the end."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@contextlib.contextmanager
def _mounted_chain(image, point, tmpdir):
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    run_cli("mount", image, point, check_rc=0, timeout=120, env=env)
    try:
        yield point
    finally:
        run_cli("umount", point, check_rc=0, timeout=120)


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.root
def test_mount_reads_a_tree_larger_than_tmpdir_once_and_says_when_there_is_no_room(tmp_path):
    """Each file's private copy lives while it is open (and in a bounded cache after): reading
    a 24 MiB tree once through a mount whose TMPDIR is a 4 MiB tmpfs gives every file right;
    a file that cannot fit at all is ENOSPC (no room), never EIO (damaged), and the others
    still read."""
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    files = {}
    for n in range(48):
        rel = f"d/f{n:02d}" if n % 2 else f"f{n:02d}"
        files[rel] = os.urandom(512 * 1024)
        (tree / rel).write_bytes(files[rel])
    files["big"] = os.urandom(6 << 20)                   # more than the whole TMPDIR
    (tree / "big").write_bytes(files["big"])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0, timeout=300)
    point = tmp_path / "point"
    point.mkdir()
    before = diffimg_mounts()
    with _small_tmpdir(tmp_path / "small", "4m") as small, \
            _mounted_chain(tmp_path / "img", point, small):
        for rel, data in sorted(files.items()):
            if rel == "big":
                continue
            assert _read(point / rel) == data, rel
        # find | xargs cat, as a reader of the whole tree does (several files per cat)
        done = subprocess.run(f"cd {shlex.quote(str(point))} && find . -type f ! -name big "
                              "-print0 | sort -z | xargs -0 cat", shell=True,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"".join(files[r] for r in sorted(
            os.path.relpath(os.path.join(d, n), point)
            for d, _, names in os.walk(point) for n in names if n != "big"))
        with pytest.raises(OSError) as raised:
            _read(point / "big")
        assert raised.value.errno == errno.ENOSPC
        # several files held open at once still fit (about the files open at once)
        held = [open(point / f"f{n:02d}", "rb") for n in range(0, 8, 2)]  # noqa: SIM115
        try:
            for f, n in zip(held, range(0, 8, 2)):
                assert f.read() == files[f"f{n:02d}"]
        finally:
            for f in held:
                f.close()
        assert _read(point / "d" / "f47") == files["d/f47"]
    assert diffimg_mounts() == before


# -- item 17b: a whole disk where a partition is taken ------------------------------------------

def _whole_disk(tmp_path):
    """A 64 MiB disk file with a GPT: partition 1 (1 MiB on, 20 MiB) holds an ext4 filesystem
    with one file, partition 2 the rest, no filesystem."""
    content = tmp_path / "content"
    content.mkdir()
    (content / "hello").write_bytes(b"from the first partition\n")
    disk = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "64M", str(disk)], check=True)
    subprocess.run(["sfdisk", "-q", str(disk)], check=True,
                   input=b"label: gpt\nstart=2048, size=40960, type=linux\nstart=43008, type=uefi\n")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(content), "-E", f"offset={2048 * 512}",
                    str(disk), "20M"], check=True)
    return disk


@pytest.mark.root
def test_a_whole_disk_given_for_a_partition_says_how_to_pick_one(tmp_path):
    disk = _whole_disk(tmp_path)
    assert b"PTTYPE" in subprocess.run(["blkid", "-p", str(disk)], capture_output=True).stdout
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello").write_bytes(b"x")
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    lines = []
    for argv in (("scan", disk, "-o", tmp_path / "m.dimf"), ("compare", tree, disk),
                 ("create", disk, tmp_path / "img2"), ("status", disk),
                 ("restore", "--dry-run", tmp_path / "img", disk)):
        line = assert_one_line_error(run_cli(*argv, timeout=120), 3)
        assert "partition table (gpt)" in line, line
        lines.append(line)
    line = lines[0]
    assert "not a folder" not in line
    assert f"1: start {2048 * 512}, size {40960 * 512}" in line and "ext4" in line, line
    assert f"2: start {43008 * 512}" in line and "EFI System" in line, line
    assert not os.path.exists(tmp_path / "m.dimf") and not os.path.exists(tmp_path / "img2")
    # the advice works as it is said
    advice = re.search(r"`(losetup -f --show -o \d+ --sizelimit \d+) (.+?)`", line)
    assert advice and advice.group(2) == str(disk), line
    device = subprocess.run([*advice.group(1).split(), str(disk)], capture_output=True,
                            text=True, check=True).stdout.strip()
    try:
        run_cli("scan", device, "-o", tmp_path / "m.dimf", check_rc=0, timeout=120)
        manifest = run_cli("ls", tmp_path / "m.dimf", check_rc=0).stdout
        assert b"hello" in manifest
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
    # a whole disk as a block device (a loop device over it: no partition nodes) says the same,
    # with losetup over that device
    whole = subprocess.run(["losetup", "-f", "--show", str(disk)], capture_output=True,
                           text=True, check=True).stdout.strip()
    try:
        line = assert_one_line_error(run_cli("scan", whole, "-o", tmp_path / "n.dimf"), 3)
        assert "partition table (gpt)" in line, line
        assert f"losetup -f --show -o {2048 * 512} --sizelimit {40960 * 512} {whole}" in line
    finally:
        subprocess.run(["losetup", "-d", whole], check=False)


def test_a_dos_disk_lists_its_partitions_by_type_and_filesystem(tmp_path):
    disk = tmp_path / "dos.img"
    subprocess.run(["truncate", "-s", "32M", str(disk)], check=True)
    subprocess.run(["sfdisk", "-q", str(disk)], check=True,
                   input=b"label: dos\nstart=2048, size=8192, type=83\nstart=10240, type=7\n")
    table = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True,
                                      check=True).stdout)
    assert len(table["partitiontable"]["partitions"]) == 2
    line = assert_one_line_error(run_cli("scan", disk, "-o", tmp_path / "m.dimf"), 3)
    assert "partition table (dos)" in line and "1: start 1048576, size 4194304" in line, line
    assert "2: start 5242880" in line, line
