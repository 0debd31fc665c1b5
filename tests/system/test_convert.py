"""diffimg convert: real ext4 and NTFS volumes in files, cloned by partclone, compressed every
way Clonezilla does (and split), converted, restored and compared with the volume's own tree;
a damaged partclone image is refused with nothing left mounted, attached or half-written."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_one_line_error, run_cli
from leftovers import assert_nothing_left, killed, nothing_left_on
from ntfsbuild import imaged, new_ntfs, ntfs_view, windows_tree
from snapshot import assert_same_tree, snapshot
from treebuild import build, every_kind_spec

from diffimg.image.format import Image

pytestmark = pytest.mark.root      # loop mounts of ext4, ntfs-3g mounts, partclone onto loop devices
COMPRESSORS = {"gzip": ["gzip", "-c"], "zstd": ["zstd", "-qc"], "xz": ["xz", "-c", "-T1"],
               "lz4": ["lz4", "-qc"], "lzo": ["lzop", "-c"], "bzip2": ["bzip2", "-c"]}


@pytest.fixture(scope="module")
def ext4_clone(tmp_path_factory):
    """(volume file, its tree's snapshot, partclone image) of an ext4 volume holding the
    every-kind tree (every entry kind ext4 holds, xattrs, ACLs, capabilities, holes)."""
    where = tmp_path_factory.mktemp("ext4")
    volume = where / "volume.ext4"
    with open(volume, "wb") as f:
        f.truncate(96 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-I", "256", str(volume)], check=True)
    mount = where / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(volume), str(mount)], check=True)
    try:
        build(mount, every_kind_spec()[1:])          # the root: the volume's own
        (mount / "bulk").write_bytes(os.urandom(3 << 20))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    subprocess.run(["mount", "-o", "loop,ro", str(volume), str(mount)], check=True)
    try:
        tree = snapshot(mount)
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    clone = where / "volume.ptcl-img"
    subprocess.run(["partclone.ext4", "-q", "-c", "-s", str(volume), "-o", str(clone)],
                   check=True, capture_output=True)
    return volume, tree, clone


def _compressed(clone, how: str, where):
    out = where / f"{clone.name}.{how}"
    with open(clone, "rb") as src, open(out, "wb") as dst:
        subprocess.run(COMPRESSORS[how], stdin=src, stdout=dst, check=True)
    return out


@pytest.mark.parametrize("how", ["none", *COMPRESSORS, "split"])
def test_a_partclone_image_of_ext4_converts_to_the_volumes_own_tree(ext4_clone, tmp_path, how):
    volume, tree, clone = ext4_clone
    if how == "none":
        source = clone
    elif how == "split":             # as Clonezilla splits: NAME.aa, NAME.ab, ...
        gz = _compressed(clone, "gzip", tmp_path)
        subprocess.run(["split", "-b", "1M", str(gz), str(tmp_path / "split.gz.")], check=True)
        source = tmp_path / "split.gz.aa"
        assert (tmp_path / "split.gz.ac").exists()
    else:
        source = _compressed(clone, how, tmp_path)
    run_cli("convert", source, tmp_path / "c.img", "-q", check_rc=0)
    info = Image(tmp_path / "c.img").info
    assert info["converted_from"]["filesystem"] == "EXTFS"
    assert info["converted_from"]["compression"] == {"none": "none", "split": "gzip"}.get(how, how)
    assert info["source"] == {"path": os.path.abspath(source), "fstype": "ext4"}
    out = tmp_path / "out"
    out.mkdir()
    run_cli("restore", "-q", tmp_path / "c.img", out, check_rc=0)
    assert_same_tree(snapshot(out), tree)
    nothing_left_on(tmp_path / "c.img", volume)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".diffimg")]


def test_a_partclone_image_of_ntfs_keeps_every_ntfs_attribute(tmp_path):
    volume = new_ntfs(tmp_path / "source.ntfs")
    mount = tmp_path / "m"
    mount.mkdir()
    subprocess.run(["ntfs-3g", str(volume), str(mount)], check=True)
    try:
        windows_tree(mount)
        want = imaged(ntfs_view(mount))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    clone = tmp_path / "source.ptcl-img"
    subprocess.run(["partclone.ntfs", "-q", "-c", "-s", str(volume), "-o", str(clone)],
                   check=True, capture_output=True)
    source = _compressed(clone, "zstd", tmp_path)
    run_cli("convert", source, tmp_path / "c.img", "-q", check_rc=0)
    info = Image(tmp_path / "c.img").info
    assert info["converted_from"]["filesystem"] == "NTFS" and info["source"]["fstype"] == "ntfs"
    run_cli("compare", tmp_path / "c.img", volume, check_rc=0)     # the volume's own tree
    assert info["left_out"] == ["pagefile.sys"]
    target = new_ntfs(tmp_path / "target.ntfs")
    run_cli("restore", "-q", tmp_path / "c.img", target, check_rc=0)
    subprocess.run(["ntfs-3g", str(target), str(mount)], check=True)
    try:
        assert ntfs_view(mount) == want
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _refused(proc, tmp_path, rc=8):
    line = assert_one_line_error(proc, rc)
    assert not (tmp_path / "c.img").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".diffimg") or n.startswith(".c.img")]
    nothing_left_on(tmp_path / "c.img")
    return line


def test_a_damaged_partclone_image_is_refused_leaving_nothing(ext4_clone, tmp_path):
    _, _, clone = ext4_clone
    data = clone.read_bytes()
    cases = {
        "truncated.gz": _compressed(clone, "gzip", tmp_path).read_bytes()[:1 << 20],
        "cut-short": data[:len(data) // 2],
        "header": data[:60] + bytes(8) + data[68:],          # used blocks zeroed: its CRC fails
        "block": data[:-100_000] + bytes([data[-100_000] ^ 1]) + data[-99_999:],
        "not-partclone": b"\x1f\x8b" + os.urandom(5000),
        "text": b"just some text\n" * 100,
    }
    import struct
    import zlib
    other = bytearray(data[:110])             # an EXT4 volume its header calls NTFS
    other[36:52] = b"NTFS".ljust(16, b"\0")
    struct.pack_into("<I", other, 106, zlib.crc32(bytes(other[:106])) ^ 0xFFFFFFFF)
    cases["says-ntfs"] = bytes(other) + data[110:]
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        line = _refused(run_cli("convert", tmp_path / name, tmp_path / "c.img"), tmp_path)
        assert name in line, line
    # a split image whose part leads elsewhere (a symlink planted beside it) is refused
    (tmp_path / "split.aa").write_bytes(data[:1000])
    (tmp_path / "split.ab").symlink_to("/etc/passwd")
    (tmp_path / "split.ac").write_bytes(data[1000:])
    line = _refused(run_cli("convert", tmp_path / "split.aa", tmp_path / "c.img"), tmp_path)
    assert "split.ab" in line and "not a file" in line
    assert_one_line_error(run_cli("convert", tmp_path / "nothing.aa", tmp_path / "c.img"), 3)


def test_a_temporary_folder_too_small_is_refused_first_saying_how_much(ext4_clone, tmp_path):
    _, _, clone = ext4_clone
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        line = _refused(run_cli("convert", clone, tmp_path / "c.img", "--tmp", small), tmp_path, 7)
        assert "needs" in line and "GiB" in line and "--tmp" in line
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_an_interrupted_conversion_leaves_nothing(ext4_clone, tmp_path):
    _, _, clone = ext4_clone
    proc = subprocess.Popen([sys.executable, "-m", "diffimg", "convert", str(clone),
                             str(tmp_path / "c.img")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not [n for n in os.listdir(tmp_path) if n.startswith(".diffimg-convert")]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (tmp_path / "c.img").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    nothing_left_on(tmp_path / "c.img")
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_a_convert_killed_at_any_moment_leaves_nothing_that_lasts(ext4_clone, tmp_path, delay):
    """kill -9 while it restores, mounts or packs: the next run of diffimg unmounts, detaches
    and removes what it left (its temporary folder beside the output included)."""
    import uuid
    _, _, clone = ext4_clone
    mark = uuid.uuid4().hex.encode()
    out = tmp_path / "out"
    out.mkdir()
    pid = killed(["convert", str(clone), str(out / "c.img"), "-q"], delay, mark)
    if (out / "c.img").exists():
        (out / "c.img").unlink()            # it had finished
    run_cli("info", clone, check_rc=8)      # any run cleans a dead run's leftovers
    assert_nothing_left(pid, mark, [out], set())


