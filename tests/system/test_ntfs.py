"""Windows partitions through ntfs-3g: real NTFS volumes (mkntfs) in files, mounted with
ntfs-3g, given Windows metadata written raw (security descriptors, DOS attributes, creation
times, short names, streams, a junction); create, diff and restore keep every value."""

import contextlib
import os
import stat
import struct
import subprocess

import pytest
from conftest import assert_one_line_error, run_cli
from ntfsbuild import (
    ADMINS,
    EVERYONE,
    STREAM,
    SYSTEM,
    ace,
    descriptor,
    imaged,
    junction_data,
    mounted,
    new_ntfs,
    ntfs_view,
    set_xattr,
    stream_path,
    windows_mounted,
    windows_tree,
)

from diffimg.image.format import Image
from diffimg.windows import ntfs


@pytest.fixture
def volumes(tmp_path):
    """volumes(name): a fresh NTFS volume in a file, mounted with ntfs-3g; all unmounted at
    the end."""
    mounted = []

    def make(name: str, size_mib: int = 64):
        image = new_ntfs(tmp_path / f"{name}.ntfs", size_mib)
        mount = tmp_path / name
        mount.mkdir()
        subprocess.run(["ntfs-3g", str(image), str(mount)], check=True)
        mounted.append(mount)
        return mount

    yield make
    for mount in mounted:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.root
def test_a_windows_volume_is_restored_with_every_ntfs_attribute(volumes, tmp_path):
    source = windows_tree(volumes("source"))
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    run_cli("compare", tmp_path / "base.img", source, check_rc=0)
    info = Image(tmp_path / "base.img").info
    assert info["source"]["fstype"] == "ntfs" and info["os"]["family"] == "windows"
    assert info["left_out"] == ["pagefile.sys"]
    target = volumes("target")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    want, got = imaged(ntfs_view(source)), ntfs_view(target)
    assert sorted(got) == sorted(want)
    for path in want:
        assert got[path] == want[path], path
    assert want["Documents and Settings"][0] == stat.S_IFLNK      # a junction, kept raw
    assert want["Documents and Settings"][4][ntfs.REPARSE] == junction_data("C:\\Users")
    # restored again: nothing to do (what ntfs-3g shows is read back exactly as recorded)
    proc = run_cli("restore", tmp_path / "base.img", target, check_rc=0)
    assert b"nothing to do: the target already holds the tree" in proc.stderr


@pytest.mark.root
def test_an_attribute_acl_or_stream_change_is_a_change_and_is_restored(volumes, tmp_path):
    source = windows_tree(volumes("source"))
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    target = volumes("target")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    doc = source / "Users" / "Ünïcødé user" / "Long document name.txt"
    set_xattr(source / "Windows" / "System32" / "drivers.ini", ntfs.ATTRIB, struct.pack(">I", 0x27))
    set_xattr(source / "Windows", ntfs.ACL, descriptor(ADMINS, SYSTEM, ace(EVERYONE, 0x1F01FF)))
    set_xattr(doc, STREAM, b"[ZoneTransfer]\r\nZoneId=4\r\n")
    set_xattr(doc, ntfs.CRTIME, bytes.fromhex("01d9999999999999"))
    proc = run_cli("compare", tmp_path / "base.img", source, check_rc=1)
    assert b"drivers.ini" in proc.stdout and b"Windows" in proc.stdout
    run_cli("diff", source, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    assert Image(tmp_path / "d1.img").info["stored_files"] == 0          # metadata only
    run_cli("apply", "-q", tmp_path / "d1.img", target, check_rc=0)
    assert ntfs_view(target) == imaged(ntfs_view(source))
    fresh = volumes("fresh")
    run_cli("restore", "-q", tmp_path / "base.img", tmp_path / "d1.img", fresh, check_rc=0)
    assert ntfs_view(fresh) == imaged(ntfs_view(source))


@pytest.mark.root
def test_an_ntfs_image_restored_into_a_plain_folder_says_what_it_leaves_out(volumes, tmp_path):
    source = windows_tree(volumes("source"))
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = run_cli("restore", tmp_path / "base.img", plain, check_rc=0)
    assert b"NTFS attributes" in proc.stderr
    assert (plain / "Windows" / "System32" / "kernel32.dll").read_bytes() == \
        (source / "Windows" / "System32" / "kernel32.dll").read_bytes()
    # the junction: a symlink to its Windows path as ntfs-3g names one it cannot resolve,
    # whatever the mount ntfs-3g's own link points into
    assert os.readlink(plain / "Documents and Settings") == "/.NTFS-3G/C:/Users"
    assert os.getxattr(plain / "Users" / "Ünïcødé user" / "Long document name.txt", STREAM) == \
        b"[ZoneTransfer]\r\nZoneId=3\r\n"
    run_cli("status", plain, check_rc=0)       # unchanged since: what it could hold is there
    # a diff of the volume applies there too, checked against the state restore left (its
    # records as made, NTFS values included; fitted to the folder only afterwards)
    os.rename(source / "Windows" / "System32" / "kernel32.dll", source / "Windows" / "moved.dll")
    (source / "new.txt").write_bytes(b"new\r\n")
    run_cli("diff", source, tmp_path / "base.img", "-o", tmp_path / "d.img", "-q", check_rc=0)
    run_cli("apply", tmp_path / "d.img", plain, "-q", check_rc=0)
    run_cli("status", plain, check_rc=0)
    assert (plain / "new.txt").read_bytes() == b"new\r\n"
    assert not (plain / "Windows" / "System32" / "kernel32.dll").exists()


BIG, OTHER = os.urandom(200_000), os.urandom(70_000)


@pytest.mark.root
def test_streams_of_any_size_are_kept_on_a_partition_given_as_itself(tmp_path):
    """A partition (a volume file) given as itself is read with its streams as files: streams
    over 64 KiB (the kernel's xattr limit) on files, folders and the root are recorded, stored
    once per content, restored onto another partition given as itself, and a change to them
    is a diff that apply and restore carry out."""
    source = new_ntfs(tmp_path / "source.ntfs")
    with windows_mounted(source, tmp_path / "m") as m:
        os.makedirs(m / "Users" / "Public")
        (m / "Users" / "doc.txt").write_bytes(b"hello")
        (m / "copy.bin").write_bytes(b"two")
        for rel, name, value in (("Users/doc.txt", "big", BIG), ("Users/doc.txt", "Zone.Identifier",
                                 b"[ZoneTransfer]\r\nZoneId=3\r\n"), ("Users", "folder", OTHER),
                                 ("copy.bin", "same", BIG), (".", "root", b"r" * 100)):
            with open(stream_path(m, rel, name), "wb") as f:
                f.write(value)
        want = ntfs_view(m)
    assert want["Users/doc.txt"][4][b"user.big"] == BIG and want["."][4][b"user.root"]
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    info = Image(tmp_path / "base.img").info
    assert info["stored_files"] == 2 + 1 + 1          # two files, BIG once, OTHER
    run_cli("verify", tmp_path / "base.img", check_rc=0)
    target = new_ntfs(tmp_path / "target.ntfs")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    with windows_mounted(target, tmp_path / "t") as t:
        assert ntfs_view(t) == want
    # a change to the streams only: a new content, one removed, one added on a folder
    with windows_mounted(source, tmp_path / "m") as m:
        changed = bytearray(BIG)
        changed[100_000] ^= 1
        with open(stream_path(m, "Users/doc.txt", "big"), "wb") as f:
            f.write(changed)
        os.unlink(stream_path(m, "copy.bin", "same"))
        with open(stream_path(m, "Users/Public", "added"), "wb") as f:
            f.write(OTHER + b"more")
        want = ntfs_view(m)
    proc = run_cli("compare", tmp_path / "base.img", source, check_rc=1)
    assert b"Users/doc.txt" in proc.stdout and b"copy.bin" in proc.stdout
    run_cli("diff", source, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    d1 = Image(tmp_path / "d1.img").info
    assert d1["stored_files"] == 2 and set(d1["changes"]) == {"meta"}     # the two new streams
    run_cli("verify", tmp_path / "base.img", tmp_path / "d1.img", check_rc=0)
    run_cli("apply", "-q", tmp_path / "d1.img", target, check_rc=0)
    with windows_mounted(target, tmp_path / "t") as t:
        assert ntfs_view(t) == want
    fresh = new_ntfs(tmp_path / "fresh.ntfs")
    run_cli("restore", "-q", tmp_path / "base.img", tmp_path / "d1.img", fresh, check_rc=0)
    with windows_mounted(fresh, tmp_path / "f") as f:
        assert ntfs_view(f) == want
    proc = run_cli("restore", tmp_path / "base.img", tmp_path / "d1.img", fresh, check_rc=0)
    assert b"nothing to do" in proc.stderr


@pytest.mark.root
def test_rebase_carries_large_streams_from_the_host_diff_and_from_the_chain(tmp_path):
    """A host adds a file with a large stream; the model changes a folder's large stream (the
    folder the host added to). The rebased layer stores the host's stream from the host diff
    and the folder's new one from the model's diff; restored, it is the host's volume with the
    model's change."""
    model = new_ntfs(tmp_path / "model.ntfs")
    with windows_mounted(model, tmp_path / "m") as m:
        os.makedirs(m / "Users")
        (m / "Users" / "doc.txt").write_bytes(b"hello")
        with open(stream_path(m, "Users", "folder"), "wb") as f:
            f.write(OTHER)
    run_cli("create", model, tmp_path / "base.img", "-q", check_rc=0)
    host = new_ntfs(tmp_path / "host.ntfs")
    run_cli("restore", "-q", tmp_path / "base.img", host, check_rc=0)
    with windows_mounted(host, tmp_path / "h") as h:
        (h / "Users" / "host.txt").write_bytes(b"mine")
        with open(stream_path(h, "Users/host.txt", "big"), "wb") as f:
            f.write(BIG)
    run_cli("diff", host, tmp_path / "base.img", "-o", tmp_path / "host.diff", "-q", check_rc=0)
    with windows_mounted(model, tmp_path / "m") as m, open(stream_path(m, "Users", "folder"), "wb") as f:
        f.write(OTHER + b"d1")
    run_cli("diff", model, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    run_cli("rebase", tmp_path / "host.diff", "--onto", tmp_path / "base.img", tmp_path / "d1.img",
            "-o", tmp_path / "new.diff", "-q", check_rc=0)
    fresh = new_ntfs(tmp_path / "fresh.ntfs")
    run_cli("restore", "-q", tmp_path / "base.img", tmp_path / "d1.img", tmp_path / "new.diff",
            fresh, check_rc=0)
    with windows_mounted(fresh, tmp_path / "f") as f:
        got = ntfs_view(f)
    with windows_mounted(host, tmp_path / "h") as h:
        kept = os.lstat(h / "Users").st_mtime_ns            # the host's: writing moves it
        with open(stream_path(h, "Users", "folder"), "wb") as f:
            f.write(OTHER + b"d1")
        os.utime(h / "Users", ns=(kept, kept))
        want = ntfs_view(h)
    assert got == want and got["Users/host.txt"][4][b"user.big"] == BIG


@pytest.mark.root
def test_a_large_stream_read_or_written_where_it_cannot_be_says_so(tmp_path):
    """Through ntfs-3g's default interface a stream over 64 KiB cannot be read (the scan stops,
    naming the file and what to do; no image is made) nor written (a restore leaves it out
    with a warning, the rest kept)."""
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    with windows_mounted(volume, tmp_path / "m") as m:
        (m / "file").write_bytes(b"main")
        with open(stream_path(m, "file", "big"), "wb") as f:
            f.write(BIG)
        with open(stream_path(m, "file", "small"), "wb") as f:
            f.write(b"kept")
    mount = tmp_path / "plain-mount"
    mount.mkdir()
    subprocess.run(["ntfs-3g", str(volume), str(mount)], check=True)
    try:
        assert "user.big" in os.listxattr(mount / "file")
        proc = run_cli("create", mount, tmp_path / "a.img")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    line = assert_one_line_error(proc, 6)
    assert "file" in line and "over 64 KiB" in line and "streams_interface=windows" in line
    assert not (tmp_path / "a.img").exists()
    run_cli("create", volume, tmp_path / "a.img", "-q", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs", 32)
    # (umask: diffimg trusts its state on a target only root may write)
    subprocess.run(["ntfs-3g", "-o", "umask=022", str(target), str(mount)], check=True)
    try:
        proc = run_cli("restore", tmp_path / "a.img", mount, check_rc=0)
        assert b"streams over 64 KiB" in proc.stderr
        assert os.getxattr(mount / "file", "user.small") == b"kept"
        assert "user.big" not in os.listxattr(mount / "file")
        run_cli("status", mount, check_rc=0)            # what it could hold is there
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.root
def test_what_windows_makes_again_is_left_out_and_left_alone(volumes, tmp_path):
    """A Windows tree's image leaves out pagefile.sys, hiberfil.sys, System Volume Information
    and the like (any case), info says so, and a restore leaves the target's own as they are;
    --windows-files keeps them."""
    source = windows_tree(volumes("source"))
    os.makedirs(source / "System Volume Information" / "inner")
    (source / "HIBERFIL.SYS").write_bytes(b"\0" * 100)
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    assert Image(tmp_path / "base.img").info["left_out"] == [
        "HIBERFIL.SYS", "System Volume Information", "pagefile.sys"]
    proc = run_cli("info", tmp_path / "base.img", check_rc=0)
    assert b"left out:" in proc.stdout and b"pagefile.sys" in proc.stdout
    target = volumes("target")
    (target / "pagefile.sys").write_bytes(b"the target's own")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    assert (target / "pagefile.sys").read_bytes() == b"the target's own"
    assert not (target / "HIBERFIL.SYS").exists()
    run_cli("create", source, tmp_path / "all.img", "-q", "--windows-files", check_rc=0)
    assert "left_out" not in Image(tmp_path / "all.img").info
    proc = run_cli("compare", tmp_path / "all.img", source, "--windows-files", check_rc=0)


def _again_does_nothing(image_args, target):
    proc = run_cli("restore", *image_args, target, check_rc=0)
    assert b"nothing to do: the target already holds the tree" in proc.stderr, proc.stderr


@pytest.mark.root
def test_a_linux_tree_restored_onto_ntfs_converges_and_takes_a_diff(volumes, tmp_path):
    """An image read from a non-NTFS tree: an NTFS target is compared without NTFS values
    (review: restores never converged, apply always refused)."""
    tree = tmp_path / "linux"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_text("hi\n")
    os.symlink("d/f", tree / "lnk")
    for path in (tree / "d" / "f", tree / "d", tree):
        os.chmod(path, 0o777)                 # what ntfs-3g shows without its permissions option
        os.utime(path, (1704067200, 1704067200))
    os.utime(tree / "lnk", (1704067200, 1704067200), follow_symlinks=False)
    run_cli("create", tree, tmp_path / "plain.img", "--format", "dir", "-q", check_rc=0)
    target = volumes("target")
    run_cli("restore", "-q", tmp_path / "plain.img", target, check_rc=0)
    _again_does_nothing([tmp_path / "plain.img"], target)
    run_cli("compare", tmp_path / "plain.img", target, check_rc=0)
    (tree / "d" / "f").write_text("changed\n")
    os.chmod(tree / "d" / "f", 0o777)
    run_cli("diff", tree, tmp_path / "plain.img", "-o", tmp_path / "d1.img", "--format", "dir", "-q",
            check_rc=0)
    run_cli("apply", "-q", tmp_path / "d1.img", target, check_rc=0)
    assert (target / "d" / "f").read_text() == "changed\n"


@pytest.mark.root
def test_short_names_survive_links_moves_and_swaps(volumes, tmp_path):
    """ntfs-3g gives no short name to an inode with two links (EMLINK), keeps one per folder,
    and drops it with a temporary name: a linked file with one, a moved one and two swapped
    ones are restored at the first run (review: exit 6 or 7)."""
    source = volumes("source")
    (source / "Long name one.txt").write_text("one")
    (source / "Long name two.txt").write_text("two")
    (source / "Long name three.txt").write_text("three")
    set_xattr(source / "Long name one.txt", ntfs.DOS_NAME, b"LONGNA~1.TXT")
    set_xattr(source / "Long name two.txt", ntfs.DOS_NAME, b"LONGNA~2.TXT")
    set_xattr(source / "Long name three.txt", ntfs.DOS_NAME, b"LONGNA~3.TXT")
    (source / "Linked file.txt").write_text("linked")
    set_xattr(source / "Linked file.txt", ntfs.DOS_NAME, b"LINKED~1.TXT")
    os.link(source / "Linked file.txt", source / "second link.txt")
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    target = volumes("target")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    # the target drifts: two short names swapped, a file moved
    set_xattr(target / "Long name one.txt", ntfs.DOS_NAME, b"LONGNA~9.TXT")
    set_xattr(target / "Long name two.txt", ntfs.DOS_NAME, b"LONGNA~1.TXT")
    set_xattr(target / "Long name one.txt", ntfs.DOS_NAME, b"LONGNA~2.TXT")
    os.rename(target / "Long name three.txt", target / "moved.txt")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    for name, short in (("one", b"LONGNA~1.TXT"), ("two", b"LONGNA~2.TXT"), ("three", b"LONGNA~3.TXT")):
        assert ntfs.get_xattr(target / f"Long name {name}.txt", ntfs.DOS_NAME) == short
    _again_does_nothing([tmp_path / "base.img"], target)


@pytest.mark.root
def test_compressed_and_sparse_files_converge(volumes, tmp_path):
    """ntfs-3g cannot give a written file the compressed or sparse state: not recorded for
    files, so a restore does not redo them forever (review)."""
    source = volumes("source")
    (source / "packed").mkdir()
    set_xattr(source / "packed", ntfs.ATTRIB, struct.pack(">I", 0x810))
    (source / "packed" / "file").write_bytes(b"z" * 100000)
    with open(source / "holes", "wb") as f:
        f.truncate(10 << 20)
        f.write(b"x")
    assert struct.unpack(">I", ntfs.get_xattr(source / "packed" / "file", ntfs.ATTRIB))[0] & 0x800
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    target = volumes("target")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    _again_does_nothing([tmp_path / "base.img"], target)
    run_cli("compare", tmp_path / "base.img", target, check_rc=0)


@pytest.mark.root
def test_a_junction_is_recorded_alike_however_the_volume_is_mounted(tmp_path):
    """ntfs-3g points a junction's symlink into the mount point as it was given: the record is
    made from the reparse data instead, so the tree ID is the same (review)."""
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    ids = []
    for given in (real, tmp_path / "alias", tmp_path / "real" / ".." / "real"):
        subprocess.run(["ntfs-3g", str(volume), str(given)], check=True)
        try:
            if not (real / "Documents and Settings").exists() and not os.path.islink(
                    real / "Documents and Settings"):
                os.mkdir(real / "Documents and Settings")
                set_xattr(real / "Documents and Settings", ntfs.REPARSE, junction_data("C:\\Users"))
            with contextlib.suppress(OSError):
                os.lstat(real / "Documents and Settings")
            run_cli("scan", real, "-o", tmp_path / "m.dimf", "-q", check_rc=0)
        finally:
            subprocess.run(["umount", str(real)], check=True)
        from diffimg.tree.manifest import ManifestReader
        with ManifestReader(tmp_path / "m.dimf") as m:
            targets = [e.target for e in m.entries() if e.target is not None]
            ids.append((m.trailer["tree_id"], targets))
    assert ids[0] == ids[1] == ids[2] and ids[0][1] == [b"/.NTFS-3G/C:/Users"]


@pytest.mark.root
def test_a_short_name_held_by_a_kept_entry_is_never_taken_from_it(volumes, tmp_path):
    """Only entries the restore makes or changes let go of a short name (second review: a kept
    file, a folder Windows makes again, a folder under a mount lost theirs)."""
    source = volumes("source")
    (source / "Other file.txt").write_text("other")
    set_xattr(source / "Other file.txt", ntfs.DOS_NAME, b"KEEPME~1.TXT")
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    target = volumes("target")
    (target / "Keep me.txt").write_text("mine")
    set_xattr(target / "Keep me.txt", ntfs.DOS_NAME, b"KEEPME~1.TXT")
    proc = run_cli("restore", tmp_path / "base.img", target, "--keep", "/Keep me.txt", check_rc=0)
    assert b"left without its short name" in proc.stderr
    assert ntfs.get_xattr(target / "Keep me.txt", ntfs.DOS_NAME) == b"KEEPME~1.TXT"
    assert (target / "Other file.txt").read_text() == "other"


@pytest.mark.root
def test_windows_defaults_follow_the_image(volumes, tmp_path):
    """An image made with --windows-files is restored whole and converges; a non-Windows image
    restored onto a Windows target takes what it lacks away at once (second review: never
    converged; not idempotent); both spellings of a default are left out."""
    source = windows_tree(volumes("source"))
    (source / "PAGEFILE.SYS").write_bytes(b"upper")          # ntfs-3g's POSIX names: both
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    assert Image(tmp_path / "base.img").info["left_out"] == ["PAGEFILE.SYS", "pagefile.sys"]
    run_cli("create", source, tmp_path / "all.img", "-q", "--windows-files", check_rc=0)
    target = volumes("target")
    run_cli("restore", "-q", tmp_path / "all.img", target, check_rc=0)
    assert (target / "pagefile.sys").exists() and (target / "PAGEFILE.SYS").exists()
    _again_does_nothing([tmp_path / "all.img"], target)
    plain = tmp_path / "plain"
    (plain / "only").mkdir(parents=True)
    run_cli("create", plain, tmp_path / "plain.img", "--format", "dir", "-q", check_rc=0)
    run_cli("restore", "-q", tmp_path / "plain.img", target, check_rc=0)
    assert sorted(os.listdir(target)) == [".diffimg", "only"]


@pytest.mark.root
def test_a_name_over_255_bytes_is_refused_before_anything_is_made(volumes, tmp_path):
    """NTFS allows 255 UTF-16 units, 2-3 bytes each in UTF-8: no Linux filesystem or container
    can hold such a name (third review: a traceback with --format dir)."""
    source = volumes("source")
    folder = source / ("D" + "é" * 200)
    folder.mkdir()
    (folder / "f").write_text("x")
    for fmt in ("squashfs", "dir"):
        line = assert_one_line_error(run_cli("create", source, tmp_path / f"{fmt}.img",
                                             "--format", fmt), 6)
        assert "a name of 401 bytes" in line
        assert not (tmp_path / f"{fmt}.img").exists()


@pytest.mark.root
def test_a_short_name_the_image_lacks_is_taken_away(volumes, tmp_path):
    """An entry the restore changes ends with exactly the image's short name, or none (third
    review: a folder kept one forever)."""
    source = volumes("source")
    (source / "Dir one long").mkdir()
    set_xattr(source / "Dir one long", ntfs.DOS_NAME, b"DIRONE~1")
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    target = volumes("target")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    os.removexattr(source / "Dir one long", ntfs.DOS_NAME)
    run_cli("diff", source, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    run_cli("apply", "-q", tmp_path / "d1.img", target, check_rc=0)
    run_cli("compare", tmp_path / "d1.img", target, check_rc=0)
    _again_does_nothing([tmp_path / "base.img", tmp_path / "d1.img"], target)


def test_info_names_the_windows_edition_and_version_from_the_software_hive(tmp_path):
    """Read from Windows/System32/config/SOFTWARE (any case) with hivexget; a hive it cannot
    read, or one that is a symlink, gives the family alone, never an error."""
    from regf import REG_DWORD, REG_SZ, hive
    tree = tmp_path / "tree"
    config = tree / "WINDOWS" / "system32" / "config"
    config.mkdir(parents=True)
    (tree / "WINDOWS" / "system32" / "NTOSKRNL.EXE").write_bytes(b"MZ")
    (config / "SOFTWARE").write_bytes(hive({"Microsoft": {"Windows NT": {"CurrentVersion": {
        "ProductName": (REG_SZ, "Windows 10 Pro"), "EditionID": (REG_SZ, "Professional"),
        "ReleaseId": (REG_SZ, "2009"), "DisplayVersion": (REG_SZ, "22H2"),
        "CurrentBuild": (REG_SZ, "19045"), "UBR": (REG_DWORD, 3803),
        "Odd": (REG_SZ, 'quote " and \\ slash')}}}}))
    run_cli("create", tree, tmp_path / "a.img", "-q", check_rc=0)
    assert Image(tmp_path / "a.img").info["os"] == {
        "family": "windows", "product": "Windows 10 Pro", "edition": "Professional",
        "version": "22H2", "build": "19045.3803", "evidence": "WINDOWS/system32/NTOSKRNL.EXE"}
    assert b"Windows 10 Pro Professional 22H2 19045.3803" in run_cli(
        "info", tmp_path / "a.img", check_rc=0).stdout
    (config / "SOFTWARE").write_bytes(b"regf" + os.urandom(8000))
    run_cli("create", tree, tmp_path / "b.img", "-q", check_rc=0)
    assert Image(tmp_path / "b.img").info["os"] == {
        "family": "windows", "evidence": "WINDOWS/system32/NTOSKRNL.EXE"}
    (config / "SOFTWARE").unlink()
    (config / "software").symlink_to("/etc/passwd")
    run_cli("create", tree, tmp_path / "c.img", "-q", check_rc=0)
    assert set(Image(tmp_path / "c.img").info["os"]) == {"family", "evidence"}


@pytest.mark.root
def test_stream_names_that_could_leave_the_volume_are_never_used_as_paths(tmp_path):
    """ntfs-3g serving streams as files takes DIR:/../.. for a path out of the volume: a name
    with '/' (an xattr of a Linux tree, a stream planted through ntfs-3g's other interface) is
    never made into one; a scan or restore says so in one line, or leaves the xattr out."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"host file")
    escape = b"/.." * 30 + os.fsencode(victim)
    # a Linux tree whose xattr name would be such a stream, restored onto a partition
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(b"content")
    os.setxattr(tree / "d", b"user." + escape + b"-made", b"x")
    os.setxattr(tree / "d" / "f", b"user.a/b", b"y")
    run_cli("create", tree, tmp_path / "linux.img", "-q", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs")
    proc = run_cli("restore", tmp_path / "linux.img", target, check_rc=0)
    assert b"no NTFS stream names" in proc.stderr
    assert not os.path.exists(os.fsdecode(os.fsencode(victim) + b"-made"))
    with windows_mounted(target, tmp_path / "m") as m:
        assert (m / "d" / "f").read_bytes() == b"content"
        assert os.getxattr(m / "d", "ntfs.streams.list") == b""
    # a volume with such a stream: its scan stops, naming it, and nothing outside is read
    hostile = new_ntfs(tmp_path / "h.ntfs")
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["ntfs-3g", str(hostile), str(plain)], check=True)
    try:
        (plain / "d").mkdir()
        os.setxattr(plain / "d", b"user." + escape, b"x")
    finally:
        subprocess.run(["umount", str(plain)], check=True)
    line = assert_one_line_error(run_cli("create", hostile, tmp_path / "h.img"), 6)
    assert "named stream diffimg refuses" in line
    # a target holding one: a restore refuses to touch it, the host file stays
    run_cli("create", target, tmp_path / "t.img", "-q", check_rc=0)
    line = assert_one_line_error(run_cli("restore", tmp_path / "t.img", hostile), 6)
    assert victim.read_bytes() == b"host file"


@pytest.mark.root
def test_names_with_a_colon_are_never_lost_silently(tmp_path):
    """Linux can put 'f:s' on NTFS; served with streams as files, ntfs-3g hides it: a partition
    holding one is imaged whole through libntfs-3g, refused (exit 17) where it would be read
    through that mount, and a tree holding one is not restored onto a partition given as
    itself (exit 14), nothing changed."""
    volume = new_ntfs(tmp_path / "v.ntfs")
    mount = tmp_path / "m"
    mount.mkdir()
    subprocess.run(["ntfs-3g", str(volume), str(mount)], check=True)
    try:
        (mount / "d").mkdir()
        (mount / "d" / "10:30 meeting.txt").write_bytes(b"notes")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    line = assert_one_line_error(run_cli("create", volume, tmp_path / "a.img",
                                         env={**os.environ, "DIFFIMG_NTFS_FUSE": "1"}), 17)
    assert "10:30 meeting.txt" in line and "default options" in line
    run_cli("create", volume, tmp_path / "b.img", "-q", check_rc=0)
    assert b"d/10:30 meeting.txt" in {e.path for e in Image(tmp_path / "b.img").entries()}
    subprocess.run(["ntfs-3g", str(volume), str(mount)], check=True)
    try:                             # mounted by hand with the default options: imaged whole
        run_cli("create", mount, tmp_path / "a.img", "-q", check_rc=0)
        run_cli("compare", mount, tmp_path / "b.img", check_rc=0)
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    target = new_ntfs(tmp_path / "t.ntfs")
    line = assert_one_line_error(run_cli("restore", tmp_path / "a.img", target), 14)
    assert "10:30 meeting.txt" in line
    with windows_mounted(target, tmp_path / "t") as t:
        assert sorted(os.listdir(t)) == []


@pytest.mark.root
def test_a_metadata_change_of_a_hardlinked_file_with_a_large_stream_applies(tmp_path):
    """apply gives such a file a new inode (its other link goes away): the diff stores its
    large streams, so apply needs nothing from the target."""
    source = new_ntfs(tmp_path / "s.ntfs")
    with windows_mounted(source, tmp_path / "m") as m:
        (m / "d").mkdir()
        (m / "d" / "f").write_bytes(b"main")
        with open(stream_path(m, "d/f", "big"), "wb") as f:
            f.write(BIG)
        os.link(m / "d" / "f", m / "h")
    run_cli("create", source, tmp_path / "b.img", "-q", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs")
    run_cli("restore", "-q", tmp_path / "b.img", target, check_rc=0)
    with windows_mounted(source, tmp_path / "m") as m:
        os.unlink(m / "h")
        os.utime(m / "d" / "f", ns=(10**18, 10**18))
        want = ntfs_view(m)
    run_cli("diff", source, tmp_path / "b.img", "-o", tmp_path / "d.img", "-q", check_rc=0)
    run_cli("apply", "-q", tmp_path / "d.img", target, check_rc=0)
    with windows_mounted(target, tmp_path / "t") as t:
        assert ntfs_view(t) == want


@pytest.mark.root
def test_dos_attributes_without_archive_are_restored_and_applied_as_they_are(tmp_path):
    """ntfs-3g sets ARCHIVE on an inode given a name (the rename into place, a hardlink, a
    short name) after restore set its attributes: one restore must still reach the image's
    tree (0x2, 0x6, NORMAL 0x80 alone, a read-only file, a folder's 0x16)."""
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    mount = tmp_path / "m"
    bits = {"hidden": 0x2, "hidden system": 0x6, "normal": 0x80, "read-only": 0x1,
            "Long hidden name.txt": 0x2, "fifo": 0x4}

    def attributes(changed=()):
        with mounted(volume, mount):
            for name in bits:
                if name == "fifo":
                    if not (mount / name).exists():
                        os.mkfifo(mount / name)
                elif not (mount / name).exists() or name in changed:
                    (mount / name).write_bytes(b"new " * len(changed) + name.encode())
            if not (mount / "hidden link").exists():
                os.link(mount / "hidden", mount / "hidden link")
                set_xattr(mount / "Long hidden name.txt", ntfs.DOS_NAME, b"LONGHI~1.TXT")
                os.mkdir(mount / "Documents and Settings")
                set_xattr(mount / "Documents and Settings", ntfs.ATTRIB, struct.pack(">I", 0x16))
            for name, value in bits.items():
                set_xattr(mount / name, ntfs.ATTRIB, struct.pack(">I", value))
    attributes()
    run_cli("create", volume, tmp_path / "base.img", "-q", check_rc=0)
    held = {e.path: e.xattrs[ntfs.ATTRIB] for e in Image(tmp_path / "base.img").entries()}
    assert {name: struct.unpack(">I", held[name.encode()])[0] for name in bits} == bits
    target = new_ntfs(tmp_path / "t.ntfs", 32)
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    run_cli("compare", target, tmp_path / "base.img", check_rc=0)
    attributes(changed=("hidden", "hidden system", "normal"))
    run_cli("diff", volume, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    run_cli("apply", "-q", tmp_path / "d1.img", target, check_rc=0)
    run_cli("compare", target, volume, check_rc=0)
