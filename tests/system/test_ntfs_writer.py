"""restore onto an NTFS partition that holds nothing yet is written through libntfs-3g,
unmounted (restore/ntfsexec.py, windows/_ntfswrite.c), in a child process (restore/apart.py):
real mkntfs volumes in files, compared with the image, read back by the library and checked by
ntfsfix."""

import json
import os
import random
import shutil
import struct
import subprocess

import pytest
import xxhash
from conftest import assert_one_line_error, run_cli
from leftovers import killed, mounts
from ntfsbuild import filled_volume, mounted, new_ntfs

from diffimg.image.format import Image
from diffimg.system import partition
from diffimg.tree.manifest import read_entries
from diffimg.windows import _ntfsvol, ntfs


def _clean(volume):
    done = subprocess.run(["ntfsfix", "-n", str(volume)], capture_output=True, text=True)
    assert done.returncode == 0 and "processed successfully" in done.stdout, done.stdout


def _restored(image, target, *args, env=None):
    """restore --json onto target; its document."""
    done = run_cli("restore", "--json", *args, image, target, check_rc=0, env=env)
    return json.loads(done.stdout)


def _source(tmp_path):
    """A volume of every kind and value diffimg records (ntfsbuild.filled_volume), a sparse
    file and attributes without ARCHIVE among them."""
    volume = filled_volume(tmp_path)
    mount = tmp_path / "m"
    with mounted(volume, mount):
        with open(mount / "sparse", "wb") as f:
            f.truncate(8 << 20)
            f.seek(3 << 20)
            f.write(os.urandom(20_000))
        (mount / "plain").write_bytes(b"no archive bit")
        os.setxattr(mount / "plain", ntfs.ATTRIB, struct.pack(">I", 0x80))       # NORMAL
        os.setxattr(mount / "plain", ntfs.OBJECT_ID, bytes(range(16)))
    return volume


@pytest.mark.root
def test_a_new_partition_is_written_through_the_library_exactly_as_the_image_holds_it(tmp_path):
    volume = _source(tmp_path)
    image = tmp_path / "base.img"
    run_cli("create", volume, image, "-q", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs", 64)
    assert _restored(image, target)["through"] == "libntfs-3g"
    _clean(target)
    # every record as the image holds it, read back raw by the library
    run_cli("scan", target, "-q", "-o", tmp_path / "t.dimf", check_rc=0)
    assert list(read_entries(tmp_path / "t.dimf")) == list(Image(image).entries())
    run_cli("compare", image, target, check_rc=0)
    volume_of = _ntfsvol.Volume(str(target))
    try:
        sparse = volume_of.lookup(b"sparse")
        assert volume_of.hash(sparse, None)[2], "the holes were written"
    finally:
        volume_of.close()
    # the state was recorded: status proves the tree, a second restore (through the mount, the
    # volume holding entries now) has nothing to do
    assert b"unchanged since" in run_cli("status", target, check_rc=0).stdout
    again = _restored(image, target)
    assert again["through"] == "filesystem" and again["counts"]["unchanged"] > 200
    assert sum(again["counts"][k] for k in ("deleted", "folders_made", "files_written",
                                            "specials_made", "hardlinks", "metadata_only")) == 0
    # and ntfs-3g's mount gives the same tree as the library wrote as its own restore
    fused = new_ntfs(tmp_path / "f.ntfs", 64)
    through_mount = _restored(image, fused, env={**os.environ, "DIFFIMG_NTFS_FUSE": "1"})
    assert through_mount["through"] == "filesystem"
    run_cli("compare", target, fused, check_rc=0)


@pytest.mark.root
def test_a_damaged_image_stops_it_naming_the_file_which_is_not_left_behind(tmp_path):
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    for name in ("first", "second", "third"):
        (source / "a" / name).write_bytes(name.encode() * 1000)
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    with mounted(volume, tmp_path / "m"):
        shutil.copytree(source / "a", tmp_path / "m" / "a")
    image = tmp_path / "base"
    run_cli("create", volume, image, "--format", "dir", "-q", check_rc=0)
    stored = image / "tree" / "a" / "second"
    kept = stored.read_bytes()
    for damage, said in ((lambda: stored.write_bytes(kept.replace(b"s", b"S", 1)), "does not match"),
                         (lambda: (stored.unlink(), stored.symlink_to("/etc/passwd")),
                          "cannot open its content")):
        damage()                        # the same size and another digest; a symlink
        target = new_ntfs(tmp_path / "t.ntfs", 32)
        line = assert_one_line_error(run_cli("restore", image, target), 8)
        assert "a/second" in line and said in line, line
        _clean(target)
        volume_of = _ntfsvol.Volume(str(target))
        try:
            volume_of.lookup(b"a/first")
            with pytest.raises(OSError):
                volume_of.lookup(b"a/second")
        finally:
            volume_of.close()


@pytest.mark.root
@pytest.mark.parametrize("seed", [1, 2])
def test_killed_while_it_writes_the_volume_stays_clean_and_the_next_restore_converges(tmp_path,
                                                                                       seed):
    rng = random.Random(seed)
    volume = new_ntfs(tmp_path / "v.ntfs", 256)
    with mounted(volume, tmp_path / "m"):
        for n in range(3000):
            folder = tmp_path / "m" / f"d{n % 30}"
            folder.mkdir(exist_ok=True)
            (folder / f"f{n}").write_bytes(rng.randbytes(rng.randint(0, 40_000)))
    image = tmp_path / "base.img"
    run_cli("create", volume, image, "-q", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs", 256)
    killed(["restore", str(image), str(target), "-q"], rng.uniform(0.4, 1.2), b"ntfs-writer")
    # the writing child notices, finishes its entry and closes the volume
    for _ in range(100):
        if b"ntfs-writer" not in subprocess.run(["ps", "eww", "-A"], capture_output=True).stdout:
            break
        subprocess.run(["sleep", "0.1"])
    if str(target) not in mounts():        # (killed while the state was written: still mounted)
        _clean(target)
    run_cli("restore", image, target, "-q", check_rc=0)
    _clean(target)
    run_cli("compare", image, target, check_rc=0)


@pytest.mark.root
def test_a_partition_diffimg_never_wrote_is_taken_on_size_and_mtime_as_through_the_mount(tmp_path):
    """Read through the library beside the mount, a target without state is checked as the
    spec says: files whose size and mtime match the image are taken unread (an edit that kept
    both is seen with --checksum), and the state's rows vouch for none of them."""
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    with mounted(volume, tmp_path / "m"):
        for name in ("a", "b", "c"):
            (tmp_path / "m" / name).write_bytes(name.encode() * 5000)
    image = tmp_path / "base.img"
    run_cli("create", volume, image, "-q", check_rc=0)
    target = tmp_path / "copy.ntfs"
    shutil.copy(volume, target)
    with mounted(target, tmp_path / "m"):
        st = os.stat(tmp_path / "m" / "b")
        (tmp_path / "m" / "b").write_bytes(b"B" * 5000)          # same size, same mtime
        os.utime(tmp_path / "m" / "b", ns=(st.st_atime_ns, st.st_mtime_ns))
    first = _restored(image, target, "--yes")
    assert first["through"] == "filesystem" and first["counts"]["files_written"] == 0
    assert run_cli("compare", image, target).returncode == 1
    # nothing proved b: status cannot say the tree is unchanged; --checksum mends it
    checked = _restored(image, target, "--checksum")
    assert checked["counts"]["files_written"] == 1
    run_cli("compare", image, target, check_rc=0)
    assert b"unchanged since" in run_cli("status", target, check_rc=0).stdout


def _one_file_image(tmp_path):
    """An image of a volume holding one file."""
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    with mounted(volume, tmp_path / "m"):
        (tmp_path / "m" / "a").write_bytes(b"a")
    image = tmp_path / "base.img"
    run_cli("create", volume, image, "-q", check_rc=0)
    return image


@pytest.mark.root
def test_the_same_partition_under_another_name_is_never_written_twice_at_once(tmp_path):
    """A volume file, a hardlink of it and a loop device over it are one partition: mounted
    under one name it is refused under another (exit 17); held by one diffimg, another
    restoring it under another name exits 13."""
    image = _one_file_image(tmp_path)
    target = new_ntfs(tmp_path / "t.ntfs", 32)
    alias = tmp_path / "alias.ntfs"
    os.link(target, alias)
    with mounted(alias, tmp_path / "m"):
        line = assert_one_line_error(run_cli("restore", image, target), 17)
        assert "mounted at" in line, line
    loop = subprocess.run(["losetup", "-f", "--show", str(target)], capture_output=True,
                          text=True, check=True).stdout.strip()
    try:
        with partition.held(os.fsencode(target)):
            line = assert_one_line_error(run_cli("restore", image, loop), 13)
            assert "another diffimg" in line, line
        with partition.held(os.fsencode(loop)):
            assert_one_line_error(run_cli("restore", image, alias), 13)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    _clean(target)
    assert _restored(image, target)["through"] == "libntfs-3g"


def _reparse_point(writer, folder, name, streams, data, reparse, sparse):
    """A file made a reparse point through the library, as Windows makes one: its named
    streams, its unnamed data (holes when sparse), then its reparse data."""
    made = writer.make(folder, name, "f")
    for stream, content in streams.items():
        writer.write(made, stream, content, len(content), False)
    writer.write(made, None, data, len(data), sparse)
    writer.set_values(made, reparse=reparse)
    return made


WOF_XPRESS4K = struct.pack("<IHHIIII", 0x80000017, 16, 0, 1, 2, 1, 0)


@pytest.mark.root
def test_files_windows_compressed_are_imaged_and_restored_whole(tmp_path):
    """A WOF (Compact OS) file keeps its content in the stream WofCompressedData of a reparse
    point whose unnamed data is all holes: imaged with both, restored through libntfs-3g with
    both, the holes holes. A reparse point holding other data is said to be imaged without it."""
    volume = new_ntfs(tmp_path / "v.ntfs", 64)
    with mounted(volume, tmp_path / "m"):
        (tmp_path / "m" / "Windows").mkdir()
    small, large = os.urandom(3000), os.urandom(300_000)
    writer = _ntfsvol.Volume(str(volume), writable=True)
    try:
        folder = writer.lookup(b"Windows")
        _reparse_point(writer, folder, b"notepad.exe", {b"WofCompressedData": small},
                       bytes(65536), WOF_XPRESS4K, True)
        _reparse_point(writer, folder, b"explorer.exe", {b"WofCompressedData": large},
                       bytes(1 << 20), WOF_XPRESS4K, True)
        # a tag of someone else's (its GUID after the header) holding real data
        _reparse_point(writer, folder, b"cloud.txt", {}, b"data" * 100,
                       struct.pack("<IHH", 0x00001234, 4, 0) + bytes(range(16)) + b"data", False)
    finally:
        writer.close()
    image = tmp_path / "base.img"
    said = run_cli("create", volume, image, check_rc=0).stderr.decode()
    assert "1 reparse points" in said and "Windows/cloud.txt" in said and "WOF" not in said, said
    records = {e.path: e for e in Image(image).entries()}
    notepad = records[b"Windows/notepad.exe"].xattrs
    assert notepad[b"user.WofCompressedData"] == small
    assert notepad[ntfs.HOLES] == struct.pack(">Q", 65536)
    assert b"diffimg.stream.WofCompressedData" in records[b"Windows/explorer.exe"].xattrs
    # a container staged from the volume (not streamed) reads them through the library too
    run_cli("create", volume, tmp_path / "dir.img", "--format", "dir", "-q", check_rc=0)
    run_cli("compare", image, tmp_path / "dir.img", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs", 64)
    assert _restored(image, target)["through"] == "libntfs-3g"
    _clean(target)
    run_cli("scan", target, "-q", "-o", tmp_path / "t.dimf", check_rc=0)
    assert list(read_entries(tmp_path / "t.dimf")) == list(Image(image).entries())
    restored = _ntfsvol.Volume(str(target))
    try:
        explorer = restored.lookup(b"Windows/explorer.exe")
        assert restored.holes(explorer, None)[1]
        assert restored.hash(explorer, b"WofCompressedData")[0] == len(large)
    finally:
        restored.close()
    info = subprocess.run(["ntfsinfo", "-F", "/Windows/explorer.exe", str(target)],
                          capture_output=True, text=True).stdout
    assert "Wof compressed" in info and "SPARSE_FILE" in info, info
    run_cli("compare", image, target, check_rc=0)
    # a restore through the mount (the volume holds entries now) leaves them as they are
    assert b"unchanged since" in run_cli("status", target, check_rc=0).stdout
    again = _restored(image, target)
    assert again["through"] == "filesystem" and again["counts"]["specials_made"] == 0
    assert again["counts"]["metadata_only"] == 0
    run_cli("scan", target, "-q", "-o", tmp_path / "again.dimf", check_rc=0)
    assert list(read_entries(tmp_path / "again.dimf")) == list(Image(image).entries())
    # a diff changing a WOF file's stream, applied or restored through the mount: said, and
    # the target's file left whole (never made anew without its stream and holes)
    writer = _ntfsvol.Volume(str(volume), writable=True)
    try:
        writer.write(writer.lookup(b"Windows/notepad.exe"), b"WofCompressedData", b"new" * 999,
                     2997, False)
    finally:
        writer.close()
    run_cli("diff", volume, image, "-o", tmp_path / "d1.img", "-q", check_rc=0)
    for command in (("apply", tmp_path / "d1.img"), ("restore", image, tmp_path / "d1.img")):
        said = run_cli(*command, target, check_rc=0).stderr.decode()
        assert "1 reparse points" in said and "left as they are" in said, said
        whole = _ntfsvol.Volume(str(target))
        try:
            notepad = whole.lookup(b"Windows/notepad.exe")
            assert whole.holes(notepad, None)[1]
            assert whole.hash(notepad, b"WofCompressedData")[:2] == \
                (len(small), xxhash.xxh3_128(small).digest())
        finally:
            whole.close()
    # through ntfs-3g's mount they cannot be written: said, and left out
    fused = new_ntfs(tmp_path / "f.ntfs", 64)
    done = run_cli("restore", image, fused, check_rc=0, env={**os.environ, "DIFFIMG_NTFS_FUSE": "1"})
    assert "only libntfs-3g writes" in done.stderr.decode()


@pytest.mark.root
def test_stacked_loop_devices_are_one_partition_and_a_disk_files_partitions_are_not(tmp_path):
    """A loop device over a loop device over the volume file, mounted, is the volume mounted;
    the second partition of a disk file is not mounted because the first is."""
    image = _one_file_image(tmp_path)
    target = new_ntfs(tmp_path / "t.ntfs", 32)
    loops = []

    def loop(*args):
        loops.append(subprocess.run(["losetup", "-f", "--show", *map(str, args)],
                                    capture_output=True, text=True, check=True).stdout.strip())
        return loops[-1]
    try:
        with mounted(loop(loop(target)), tmp_path / "m"):
            assert "mounted at" in assert_one_line_error(run_cli("restore", image, target), 17)
        disk = tmp_path / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(80 << 20)
        subprocess.run(["sfdisk", "-q", str(disk)], input=b"start=2048, size=61440, type=7\n"
                       b"start=65536, size=61440, type=7\n", check=True)
        first = loop("-o", 2048 * 512, "--sizelimit", 61440 * 512, disk)
        second = loop("-o", 65536 * 512, "--sizelimit", 61440 * 512, disk)
        for device in (first, second):
            subprocess.run(["mkntfs", "-q", "-F", "-f", device], check=True, capture_output=True)
        with mounted(first, tmp_path / "m"):
            assert _restored(image, second)["through"] == "libntfs-3g"
        run_cli("compare", image, second, check_rc=0)
    finally:
        for device in reversed(loops):
            subprocess.run(["losetup", "-d", device], check=False)
