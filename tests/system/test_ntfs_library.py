"""An NTFS partition given as itself is read through libntfs-3g (windows/_ntfsvol.c,
scan/ntfswalk.py), not through ntfs-3g's FUSE view: real mkntfs volumes in files, filled
through ntfs-3g, then scanned, imaged, restored and compared both ways."""

import os
import struct

import pytest
from conftest import assert_one_line_error, run_cli
from ntfsbuild import (
    ADMINS,
    OLD_NS,
    SYSTEM,
    attributes,
    filled_volume,
    mounted,
    new_ntfs,
    patch_record,
)

from diffimg.entry import Kind
from diffimg.image.format import Image
from diffimg.tree.manifest import read_entries
from diffimg.windows import ntfs


def _through_fuse():
    return {**os.environ, "DIFFIMG_NTFS_FUSE": "1"}


@pytest.mark.root
def test_the_library_reads_what_the_mount_shows_and_times_before_1970_exactly(tmp_path):
    """One volume of every kind, read through libntfs-3g and through ntfs-3g's mount: the same
    records, an mtime before 1970 to the 100 ns (a restore of it then settles)."""
    volume = filled_volume(tmp_path)
    run_cli("scan", volume, "-q", "-o", tmp_path / "lib.dimf", check_rc=0)
    run_cli("scan", volume, "-q", "-o", tmp_path / "fuse.dimf", check_rc=0, env=_through_fuse())
    library = list(read_entries(tmp_path / "lib.dimf"))
    mounted = list(read_entries(tmp_path / "fuse.dimf"))
    # ntfs-3g's stat says -1 s: both read the time itself
    assert [e for e in library if e.path == b"old"][0].mtime_ns == OLD_NS
    assert library == mounted
    kinds = {e.kind for e in library}
    assert kinds == {Kind.DIR, Kind.FILE, Kind.SYMLINK, Kind.FIFO, Kind.CHAR}
    assert any(e.link for e in library) and any(e.xattrs and b"diffimg.stream.large" in e.xattrs
                                               for e in library)


@pytest.mark.root
def test_an_image_read_through_the_library_restores_exactly_and_its_diff_holds_the_change(tmp_path):
    volume = filled_volume(tmp_path)
    run_cli("create", volume, tmp_path / "base.img", "-q", check_rc=0)
    run_cli("verify", tmp_path / "base.img", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs", 64)
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    run_cli("compare", target, tmp_path / "base.img", check_rc=0)
    run_cli("compare", volume, target, check_rc=0)
    assert b"nothing to do" in run_cli("restore", tmp_path / "base.img", target, check_rc=0).stderr
    assert b"unchanged since" in run_cli("status", target, check_rc=0).stdout
    mount = tmp_path / "m"
    with mounted(target, mount):
        (mount / "Windows" / "f007.dll").write_bytes(b"MZ patched")
    assert b"unchanged since" not in run_cli("status", target).stdout
    run_cli("diff", target, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    diff = Image(tmp_path / "d1.img")
    # (the folders above it: ntfs-3g gives them a new mtime as it writes)
    assert [c.path for c in diff.delta() if c.path != b"" and c.path != b"Windows"] == \
        [b"Windows/f007.dll"]
    assert diff.info["stored_files"] == 1
    run_cli("apply", tmp_path / "d1.img", volume, check_rc=0)
    run_cli("compare", volume, target, check_rc=0)


@pytest.mark.root
def test_holes_of_a_sparse_file_stay_holes_so_the_volume_still_fits(tmp_path):
    """A 1 GiB sparse file on a 64 MiB volume: ntfs-3g's view cannot say where its holes are
    (no SEEK_HOLE), and a restore of it written whole would not fit."""
    volume = new_ntfs(tmp_path / "v.ntfs", 64)
    mount = tmp_path / "m"
    with mounted(volume, mount), open(mount / "huge", "wb") as f:
        f.truncate(1 << 30)
        f.seek(5 << 20)
        f.write(b"x" * 100_000)
    run_cli("create", volume, tmp_path / "base.img", "-q", check_rc=0)
    huge = [e for e in Image(tmp_path / "base.img").entries() if e.path == b"huge"][0]
    assert huge.sparse and huge.size == 1 << 30
    target = new_ntfs(tmp_path / "t.ntfs", 64)
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    run_cli("compare", target, tmp_path / "base.img", check_rc=0)
    # the restore's own view of the target (ntfs-3g's mount) cannot see the holes: it does
    # not write the file again for them
    assert b"nothing to do" in run_cli("restore", tmp_path / "base.img", target, check_rc=0).stderr


@pytest.mark.root
def test_a_damaged_folder_record_is_one_line_naming_the_folder_as_given(tmp_path):
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    mount = tmp_path / "m"
    with mounted(volume, mount):
        os.makedirs(mount / "Data" / "inner")
        (mount / "Data" / "inner" / "a").write_bytes(b"a")
        record = os.lstat(mount / "Data" / "inner").st_ino      # ntfs-3g's: the MFT record number
    with open(volume, "r+b") as f:          # the folder's MFT record loses its magic
        boot = f.read(512)
        mft = int.from_bytes(boot[48:56], "little") * int.from_bytes(boot[11:13], "little") * boot[13]
        f.seek(mft + record * 1024)
        assert f.read(4) == b"FILE"
        f.seek(mft + record * 1024)
        f.write(b"BAAD")
    for env in (None, _through_fuse()):
        line = assert_one_line_error(run_cli("scan", volume, "-o", tmp_path / "m.dimf", env=env), 6)
        assert f"{volume}:/Data/inner" in line, line


def _ea(name: bytes, value: bytes) -> bytes:
    """One extended attribute as NTFS's $EA holds it (WSL's $LXUID and the like)."""
    body = struct.pack("<BBH", 0, len(name), len(value)) + name + b"\0" + value
    size = (4 + len(body) + 3) & ~3
    return struct.pack("<I", size) + body + b"\0" * (size - 4 - len(body))


@pytest.mark.root
def test_object_ids_and_extended_attributes_are_kept_swapped_and_taken_away(tmp_path):
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    mount = tmp_path / "m"
    ids = bytes(range(16)) + bytes(48), bytes(range(16, 32)) + bytes(48)
    uid = _ea(b"$LXUID", b"\xe8\x03\0\0")
    eas = uid + _ea(b"$LXGID", b"\xe8\x03\0\0")

    def fill():
        for name in ("a", "b"):
            (mount / name).write_bytes(name.encode())
        os.setxattr(mount / "a", ntfs.EA, eas)
        os.setxattr(mount / "a", ntfs.OBJECT_ID, ids[0])
        os.setxattr(mount / "b", ntfs.OBJECT_ID, ids[1])
    with mounted(volume, mount):
        fill()
    run_cli("create", volume, tmp_path / "base.img", "-q", check_rc=0)
    a = [e for e in Image(tmp_path / "base.img").entries() if e.path == b"a"][0]
    assert a.xattrs[ntfs.EA] == eas and a.xattrs[ntfs.OBJECT_ID] == ids[0]
    target = new_ntfs(tmp_path / "t.ntfs", 32)
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    run_cli("compare", target, tmp_path / "base.img", check_rc=0)

    def swap():                          # one volume holds each object ID once
        os.removexattr(mount / "a", ntfs.OBJECT_ID)
        os.setxattr(mount / "b", ntfs.OBJECT_ID, ids[0])
        os.setxattr(mount / "a", ntfs.OBJECT_ID, ids[1])
        os.removexattr(mount / "a", ntfs.EA)
        os.setxattr(mount / "b", ntfs.EA, uid)
    with mounted(volume, mount):
        swap()
    run_cli("diff", volume, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    assert {c.path for c in Image(tmp_path / "d1.img").delta()} >= {b"a", b"b"}
    run_cli("apply", "-q", tmp_path / "d1.img", target, check_rc=0)
    run_cli("compare", target, volume, check_rc=0)
    for name, mine in (("a", {ntfs.OBJECT_ID: ids[1]}), ("b", {ntfs.OBJECT_ID: ids[0],
                                                             ntfs.EA: uid})):
        got = [e for e in Image(tmp_path / "d1.img").entries() if e.path == name.encode()][0]
        assert {k: got.xattrs.get(k) for k in (ntfs.OBJECT_ID, ntfs.EA)} == \
            {ntfs.OBJECT_ID: mine[ntfs.OBJECT_ID], ntfs.EA: mine.get(ntfs.EA)}


@pytest.mark.root
def test_null_and_missing_dacls_and_a_third_party_reparse_tag_are_imaged_and_restored(tmp_path):
    """What ntfs-3g and Windows accept, an image holds: a NULL DACL (everyone may), no DACL,
    and a reparse point of a tag that is not Microsoft's (with its owner's GUID); each once made
    the whole volume refused."""
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    mount = tmp_path / "m"

    def no_dacl(control):
        head = struct.pack("<BBHIIII", 1, 0, control, 20, 20 + len(SYSTEM), 0, 0)
        return head + SYSTEM + ADMINS
    third_party = struct.pack("<IHH", 0x00001234, 4, 0) + bytes(range(16)) + b"data"
    with mounted(volume, mount):
        for name in ("null dacl", "no dacl", "tagged"):
            (mount / name).write_bytes(b"")
        os.setxattr(mount / "null dacl", ntfs.ACL, no_dacl(0x8004))
        os.setxattr(mount / "no dacl", ntfs.ACL, no_dacl(0x8000))
        os.setxattr(mount / "tagged", ntfs.REPARSE, third_party)
    run_cli("create", volume, tmp_path / "base.img", "-q", check_rc=0)
    held = {e.path: e for e in Image(tmp_path / "base.img").entries()}
    assert held[b"null dacl"].xattrs[ntfs.ACL] == no_dacl(0x8004)
    assert held[b"no dacl"].xattrs[ntfs.ACL] == no_dacl(0x8000)
    assert held[b"tagged"].xattrs[ntfs.REPARSE] == third_party
    target = new_ntfs(tmp_path / "t.ntfs", 32)
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    run_cli("compare", target, volume, check_rc=0)


@pytest.mark.root
def test_a_file_claiming_more_than_it_has_is_a_damaged_volume_not_terabytes_of_zeros(tmp_path):
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    mount = tmp_path / "m"
    with mounted(volume, mount):
        (mount / "big.bin").write_bytes(os.urandom(100_000))
        record = os.lstat(mount / "big.bin").st_ino      # ntfs-3g's: the MFT record number

    def claim_a_terabyte(data):
        at = [at for at, kind in attributes(data) if kind == 0x80][0]     # its $DATA
        assert data[at + 8] == 1                                          # non-resident
        struct.pack_into("<qq", data, at + 48, 1 << 40, 1 << 40)          # data, initialized
    patch_record(volume, record, claim_a_terabyte)
    line = assert_one_line_error(run_cli("scan", volume, "-o", tmp_path / "m.dimf", timeout=120), 6)
    assert f"{volume}:/big.bin" in line and "damaged" in line, line


@pytest.mark.root
def test_a_renamed_file_keeps_its_object_id_through_apply_in_one_run(tmp_path):
    """Windows keeps a file's object ID across a rename; apply sets the old inode aside (its
    rescue folder) while it writes the new name, and that inode must let go of the ID first
    (review)."""
    volume = new_ntfs(tmp_path / "v.ntfs", 32)
    mount = tmp_path / "m"
    object_id = bytes([7]) * 16 + bytes(48)
    with mounted(volume, mount):
        (mount / "Long Old Name.txt").write_bytes(os.urandom(5000))
        os.setxattr(mount / "Long Old Name.txt", ntfs.DOS_NAME, b"LONGOL~1.TXT")
        os.setxattr(mount / "Long Old Name.txt", ntfs.OBJECT_ID, object_id)
    run_cli("create", volume, tmp_path / "base.img", "-q", check_rc=0)
    target = new_ntfs(tmp_path / "t.ntfs", 32)
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    with mounted(volume, mount):
        os.rename(mount / "Long Old Name.txt", mount / "Long New Name.txt")
        os.setxattr(mount / "Long New Name.txt", ntfs.DOS_NAME, b"LONGNE~1.TXT")
    run_cli("diff", volume, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    applied = run_cli("apply", tmp_path / "d1.img", target, check_rc=0)
    assert b"object ID" not in applied.stderr, applied.stderr
    run_cli("compare", target, volume, check_rc=0)
