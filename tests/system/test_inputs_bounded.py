"""Inputs that must not make diffimg fail badly (issue 24): xattrs an ext4 container must hold
or refuse up front; a partclone image lying about its size; a tree whose files diffimg reads
for information (etc/os-release) made a FIFO or a symlink to /dev/zero; output that cannot be
written; damaged squashfs superblock fields; a device number Linux cannot make."""

import contextlib
import os
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, run_cli
from snapshot import snapshot


@contextlib.contextmanager
def _tmpfs(where, size="64m"):
    """A tmpfs at where: it takes xattrs the disk's own filesystem (ext4) may refuse."""
    os.makedirs(where, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _container_xattrs(image, path: str) -> dict:
    """The xattrs of path as the image's container itself holds them (mounted read-only)."""
    from diffimg.image.format import Image
    with Image(image).content() as tree:
        where = os.path.join(os.fsdecode(tree), path)
        return {os.fsencode(n): os.getxattr(where, n) for n in os.listxattr(where)}


# ---- 8. xattrs in an ext4 container ----------------------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("xattrs", [
    {"user.big": os.urandom(1500)},                                # over a 1 KiB block
    {"user.huge": os.urandom(65536)},                             # Linux's largest value
    {f"user.a{i}": os.urandom(900) for i in range(5)},            # many medium ones
    {f"user.{i:03d}" + "n" * 237: b"v" for i in range(12)},      # long names: 4 KiB blocks
], ids=["1.5k", "64k", "5x900", "12-long-names"])
def test_any_xattr_linux_accepts_fits_an_ext4_image(tmp_path, xattrs):
    with _tmpfs(tmp_path / "t"):
        tree = tmp_path / "t"
        (tree / "f").write_bytes(b"hello\n")
        (tree / "g").write_bytes(b"plain\n")
        for name, value in xattrs.items():
            os.setxattr(tree / "f", name, value)
        want = snapshot(tree)
        run_cli("create", tree, tmp_path / "a.img", "--format", "ext4", "-q", check_rc=0)
    run_cli("verify", tmp_path / "a.img", check_rc=0)
    assert _container_xattrs(tmp_path / "a.img", "f") == want[b"f"]["xattrs"]


@pytest.mark.root
def test_xattrs_no_ext4_holds_are_refused_up_front_naming_the_file(tmp_path):
    with _tmpfs(tmp_path / "t"):
        tree = tmp_path / "t"
        (tree / "sub").mkdir()
        (tree / "sub" / "many").write_bytes(b"x")
        for i in range(40):          # 40 names of 240 bytes: no ext4 block holds their entries
            os.setxattr(tree / "sub" / "many", f"user.{i:03d}" + "n" * 237, b"v")
        proc = run_cli("create", tree, tmp_path / "a.img", "--format", "ext4", "-q")
    line = assert_one_line_error(proc, 7)
    assert "sub/many" in line and "squashfs" in line, line
    assert not (tmp_path / "a.img").exists()


# ---- 15 (a). output that cannot be written ---------------------------------------------------

@pytest.fixture
def small_image(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_bytes(b"pc1\n")
    for i in range(200):
        (tree / f"file{i:03d}").write_bytes(b"x" * i)
    run_cli("create", tree, tmp_path / "a.img", "--format", "dir", "-q", check_rc=0)
    return tmp_path / "a.img"


@pytest.mark.parametrize("command", [["ls"], ["info"], ["cat", "etc/hostname"]])
def test_output_to_a_full_disk_is_one_line_exit_7(small_image, command):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "diffimg", command[0], small_image,
                               *command[1:]], stdout=full, stderr=subprocess.PIPE)
    line = assert_one_line_error(proc, 7)
    assert "No space left" in line, line


@pytest.mark.parametrize("command", [["ls"], ["info"], ["cat", "etc/hostname"]])
def test_output_to_a_closed_stdout_is_one_line_exit_7(small_image, command):
    proc = subprocess.run([sys.executable, "-m", "diffimg", command[0], small_image, *command[1:]],
                          stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    line = assert_one_line_error(proc, 7)
    assert "stdout is closed" in line, line


def test_a_closed_stderr_and_full_stdout_still_exit_7(small_image):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "diffimg", "ls", small_image], stdout=full,
                              preexec_fn=lambda: os.close(2))
    assert proc.returncode == 7


# ---- 13. files of a tree read for information ------------------------------------------------

def _tree_with_os_release(tmp_path, kind):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "data").write_bytes(b"some data\n")
    release = tree / "etc" / "os-release"
    if kind == "fifo":
        os.mkfifo(release)
    elif kind == "zero":
        release.symlink_to("/dev/zero")
    elif kind == "outside":
        outside = tmp_path / "outside-os-release"
        outside.write_bytes(b'ID=planted\nVERSION_ID="1"\n')
        release.symlink_to(outside)
    elif kind == "etc-link":
        (tree / "etc").rmdir()
        real = tmp_path / "real-etc"
        real.mkdir()
        (real / "os-release").write_bytes(b'ID=planted\n')
        (tree / "etc").symlink_to(real)
    elif kind == "huge":
        release.write_bytes(b'ID=debian\nVERSION_ID="12"\n' + b"#" * (4 << 20) + b"\nID=late\n")
    return tree


@pytest.mark.parametrize("kind", ["fifo", "zero", "outside", "etc-link", "huge"])
def test_os_release_is_read_only_as_a_bounded_regular_file_beneath_the_tree(tmp_path, kind):
    from diffimg.image.format import Image
    tree = _tree_with_os_release(tmp_path, kind)
    run_cli("create", tree, tmp_path / "a.img", "--format", "dir", "-q", check_rc=0, timeout=60)
    os_info = Image(tmp_path / "a.img").info["os"]
    if kind == "huge":
        assert os_info["family"] == "linux" and os_info["id"] == "debian"
    else:
        assert os_info == {"family": "unknown"}, os_info
    (tree / "data").write_bytes(b"changed data\n")
    proc = run_cli("diff", tree, tmp_path / "a.img", "-o", tmp_path / "b.diff", "--format", "dir",
                   "-q", timeout=60)
    assert proc.returncode == 0, proc.stderr


# ---- 15 (c). a device number Linux cannot make -----------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("rdev", [(1 << 64) - 1, 1 << 32])
def test_a_device_number_linux_cannot_make_is_a_corrupt_manifest_naming_the_entry(tmp_path, rdev):
    from crafted import blobs_of, manifest_blob, records_of, write_meta
    from treebuild import build

    from diffimg import codec
    from diffimg.image.format import Image
    tree = build(tmp_path / "tree", [
        {"path": b"", "kind": "dir"},
        {"path": b"dev", "kind": "dir"},
        {"path": b"dev/null", "kind": "char", "rdev": os.makedev(1, 3)},
        {"path": b"f", "kind": "file", "data": b"content"},
    ])
    run_cli("create", tree, tmp_path / "a.img", "--format", "dir", "-q", check_rc=0)
    image = Image(tmp_path / "a.img")
    blobs = blobs_of(image)
    info = codec.unpack(blobs["info"])
    header, records = records_of(blobs["manifest"])
    device = next(r for r in records if r[0] == b"dev/null")
    device[9] = rdev
    blobs["manifest"], info["tree_id"] = manifest_blob(header, records)
    blobs["info"] = codec.pack(info)
    write_meta(image.meta_path, blobs, image.container)
    proc = run_cli("verify", tmp_path / "a.img")        # verify: a problem found, exit 1
    assert proc.returncode == 1 and b"dev/null" in proc.stdout and b"rdev" in proc.stdout, proc
    (tmp_path / "target").mkdir()
    line = assert_one_line_error(run_cli("restore", tmp_path / "a.img", tmp_path / "target"), 8)
    assert "dev/null" in line and "rdev" in line, line
    assert os.listdir(tmp_path / "target") == []


# ---- 15 (b). damaged squashfs superblock fields ----------------------------------------------

_SUPERBLOCK_FIELDS = {       # name: (offset, struct format)
    "compressor": (20, "<H"), "ids": (26, "<H"), "minor": (30, "<H"), "root_ref": (32, "<Q"),
    "bytes_used": (40, "<Q"), "id_table": (48, "<Q"), "xattr_table": (56, "<Q"),
    "inode_table": (64, "<Q"), "dir_table": (72, "<Q"), "export_table": (88, "<Q"),
    "inodes": (4, "<I"),
}


@pytest.fixture(scope="module")
def squashfs_image(tmp_path_factory):
    top = tmp_path_factory.mktemp("sqfs")
    tree = top / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "a").write_bytes(b"hello\n")
    (tree / "b").write_bytes(os.urandom(300_000))
    (tree / "d" / "c").write_bytes(b"x\n")
    run_cli("create", tree, top / "s.img", "-q", check_rc=0)
    return top / "s.img"


@pytest.mark.parametrize("field,change", [
    ("compressor", lambda v: 1), ("compressor", lambda v: 0xFFFF), ("minor", lambda v: 1),
    ("ids", lambda v: 0), ("ids", lambda v: 0x7FFF), ("root_ref", lambda v: v + 1),
    ("root_ref", lambda v: 0), ("root_ref", lambda v: (1 << 64) - 1), ("bytes_used", lambda v: v + 1),
    ("bytes_used", lambda v: v - 1), ("id_table", lambda v: v + 8), ("id_table", lambda v: 0),
    ("xattr_table", lambda v: 0), ("xattr_table", lambda v: (1 << 64) - 9),
    ("inode_table", lambda v: v + 1), ("inode_table", lambda v: 0), ("dir_table", lambda v: 0),
    ("dir_table", lambda v: (1 << 63)), ("export_table", lambda v: 0), ("inodes", lambda v: 0),
])
def test_a_damaged_squashfs_superblock_field_is_a_bad_image(squashfs_image, tmp_path, field, change):
    import struct
    offset, fmt = _SUPERBLOCK_FIELDS[field]
    data = bytearray(squashfs_image.read_bytes())
    value, = struct.unpack_from(fmt, data, offset)
    struct.pack_into(fmt, data, offset, change(value) & ((1 << (8 * struct.calcsize(fmt))) - 1))
    damaged = tmp_path / "damaged.img"
    damaged.write_bytes(bytes(data))
    line = assert_one_line_error(run_cli("cat", damaged, "a"), 8)
    assert "squashfs superblock" in line, line
    proc = run_cli("verify", damaged)           # verify names the problem, exit 1, no tool error
    assert proc.returncode == 1 and b"squashfs superblock" in proc.stdout, proc


# ---- 12. a partclone image lying about its size ----------------------------------------------

@pytest.fixture(scope="module")
def small_clone(tmp_path_factory):
    """A partclone image (format 0002) of an ext4 volume holding 20 MiB of random data."""
    where = tmp_path_factory.mktemp("ptcl")
    volume = where / "volume.ext4"
    with open(volume, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(volume)], check=True)
    mount = where / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(volume), str(mount)], check=True)
    try:
        (mount / "bulk").write_bytes(os.urandom(20 << 20))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    clone = where / "volume.ptcl-img"
    subprocess.run(["partclone.ext4", "-q", "-c", "-s", str(volume), "-o", str(clone)],
                   check=True, capture_output=True)
    return clone


def _lying(clone, where, used: int):
    """clone with its header's used blocks set to used, its CRC32 recomputed."""
    import struct
    import zlib
    data = bytearray(clone.read_bytes())
    struct.pack_into("<QQ", data, 68, used, used)
    struct.pack_into("<I", data, 106, zlib.crc32(bytes(data[:106])) ^ 0xFFFFFFFF)
    out = where / "lying.ptcl-img"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.root
def test_a_partclone_header_lying_about_its_used_blocks_is_refused_before_writing(
        small_clone, tmp_path):
    lying = _lying(small_clone, tmp_path, 10)
    with _tmpfs(tmp_path / "tmp", "80m") as tmp:
        proc = run_cli("convert", lying, tmp_path / "c.img", "--tmp", tmp, "-q", timeout=300)
        assert os.listdir(tmp) == []
    line = assert_one_line_error(proc, 8)
    assert "lying.ptcl-img" in line and "bitmap" in line, line
    assert not (tmp_path / "c.img").exists()
    run_cli("convert", small_clone, tmp_path / "ok.img", "-q", check_rc=0, timeout=300)


