"""Partitions given as devices or filesystem image files wherever a folder is taken: mounted
for the command (ntfs-3g for NTFS, the kernel otherwise), always unmounted; unsafe NTFS
volumes (unclean, hibernated, BitLocker) refused before anything is written."""

import os
import struct
import subprocess

import pytest
from conftest import assert_one_line_error, run_cli
from leftovers import nothing_left_on
from ntfsbuild import imaged, new_ntfs, ntfs_view, windows_tree

from diffimg.image.format import Image


def mounted_ntfs(volume, mount):
    mount.mkdir(exist_ok=True)
    subprocess.run(["ntfs-3g", str(volume), str(mount)], check=True)
    return mount


def set_ntfs_dirty(volume):
    """Set the dirty flag of $Volume's VOLUME_INFORMATION, as Windows leaves it on a crash
    (written here from the NTFS layout, independently of diffimg's reader), in the MFT and in
    its mirror."""
    with open(volume, "r+b") as f:
        boot = f.read(512)
        sector = struct.unpack_from("<H", boot, 11)[0]
        cluster = sector * boot[13]
        record_size = 1 << -struct.unpack_from("<b", boot, 64)[0]
        for mft_at in (48, 56):                                  # $MFT, $MFTMirr
            where = struct.unpack_from("<Q", boot, mft_at)[0] * cluster + 3 * record_size
            f.seek(where)
            record = f.read(record_size)
            at = struct.unpack_from("<H", record, 20)[0]
            while struct.unpack_from("<I", record, at)[0] != 0x70:
                at += struct.unpack_from("<I", record, at + 4)[0]
            flags_at = at + struct.unpack_from("<H", record, at + 20)[0] + 10
            assert flags_at % sector < sector - 2      # not under an update sequence fixup
            flags = struct.unpack_from("<H", record, flags_at)[0] | 1
            f.seek(where + flags_at)
            f.write(struct.pack("<H", flags))
    shown = subprocess.run(["ntfsinfo", "-f", "-m", str(volume)], capture_output=True,
                           text=True).stdout
    assert "Volume Flags: 0x0001" in shown, shown


@pytest.mark.root
def test_an_unmounted_ntfs_volume_is_imaged_and_restored_onto_one(tmp_path):
    """create from an NTFS volume file, restore onto another one (not mounted by anyone):
    every NTFS value equal, nothing left mounted, and the source left unchanged."""
    source = new_ntfs(tmp_path / "source.ntfs")
    view = tmp_path / "view"
    mounted_ntfs(source, view)
    try:
        windows_tree(view)
        want = ntfs_view(view)
    finally:
        subprocess.run(["umount", str(view)], check=True)
    before = source.read_bytes()
    run_cli("create", source, tmp_path / "base.img", "-q", check_rc=0)
    assert source.read_bytes() == before                        # mounted read-only
    info = Image(tmp_path / "base.img").info
    assert info["source"]["fstype"] == "ntfs" and info["os"]["family"] == "windows"
    target = new_ntfs(tmp_path / "target.ntfs")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    nothing_left_on(source, target)
    run_cli("compare", tmp_path / "base.img", target, check_rc=0)
    run_cli("status", target, check_rc=0)
    # an error names the partition as given, not its temporary mount point
    line = assert_one_line_error(run_cli("status", source), 15)
    assert str(source) in line and "diffimg-run" not in line
    mounted_ntfs(target, view)
    try:
        assert ntfs_view(view) == imaged(want)
    finally:
        subprocess.run(["umount", str(view)], check=True)
    nothing_left_on(source, target)


@pytest.mark.root("a loop mount")
def test_an_ext4_image_file_is_a_tree_too(tmp_path):
    folder = tmp_path / "folder"
    (folder / "etc").mkdir(parents=True)
    (folder / "etc" / "hostname").write_text("pc12\n")
    os.symlink("etc/hostname", folder / "link")
    volume = tmp_path / "root.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(folder), str(volume), "16M"], check=True)
    run_cli("create", volume, tmp_path / "base.img", "-q", check_rc=0)
    run_cli("compare", tmp_path / "base.img", volume, check_rc=0)
    (folder / "etc" / "hostname").write_text("pc13\n")
    run_cli("restore", "-q", tmp_path / "base.img", tmp_path / "out", check_rc=3)  # no folder
    target = tmp_path / "target.ext4"
    subprocess.run(["mkfs.ext4", "-q", str(target), "16M"], check=True)
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)
    # identical but for the target's own lost+found, which a restore keeps as it is
    shown = run_cli("compare", tmp_path / "base.img", target).stdout.decode().splitlines()
    assert all(line.startswith("~ lost+found: mtime_ns") for line in shown), shown
    run_cli("status", target, check_rc=0)
    nothing_left_on(volume, target)


@pytest.mark.root
def test_an_unclean_ntfs_volume_is_refused_unless_imaged_read_only_on_purpose(tmp_path):
    volume = new_ntfs(tmp_path / "dirty.ntfs")
    set_ntfs_dirty(volume)
    before = volume.read_bytes()
    line = assert_one_line_error(run_cli("create", volume, tmp_path / "a.img"), 17)
    assert "dirty" in line and "--allow-unclean" in line
    assert not (tmp_path / "a.img").exists()
    run_cli("create", volume, tmp_path / "a.img", "-q", "--allow-unclean", check_rc=0)
    run_cli("create", tmp_path / "view", tmp_path / "b.img", check_rc=3)
    target_line = assert_one_line_error(run_cli("restore", tmp_path / "a.img", volume), 17)
    assert "dirty" in target_line
    assert volume.read_bytes() == before
    nothing_left_on(volume)


@pytest.mark.root
def test_a_hibernated_windows_is_refused_as_source_and_as_target(tmp_path):
    volume = new_ntfs(tmp_path / "hibernated.ntfs")
    view = mounted_ntfs(volume, tmp_path / "view")
    try:
        (view / "hiberfil.sys").write_bytes(b"HIBR" + bytes(4092))
        (view / "file").write_text("x")
    finally:
        subprocess.run(["umount", str(view)], check=True)
    other = new_ntfs(tmp_path / "other.ntfs")
    run_cli("create", other, tmp_path / "other.img", "-q", check_rc=0)
    before = volume.read_bytes()
    line = assert_one_line_error(run_cli("create", volume, tmp_path / "h.img"), 17)
    assert "hibernated" in line
    assert "hibernated" in assert_one_line_error(run_cli("restore", tmp_path / "other.img", volume), 17)
    assert volume.read_bytes() == before
    nothing_left_on(volume, other)


def test_a_bitlocker_volume_is_refused(tmp_path):
    volume = tmp_path / "bitlocker.img"
    with open(volume, "wb") as f:
        f.write(b"\xeb\x58\x90-FVE-FS-" + bytes(512 - 11))
        f.truncate(8 << 20)
    line = assert_one_line_error(run_cli("scan", volume, "-o", tmp_path / "m.dimf"), 17)
    assert "BitLocker" in line
    nothing_left_on(volume)


@pytest.mark.root
def test_clusters_over_64_kib_and_a_read_only_fallback(tmp_path):
    """A clean volume with 128 KiB clusters is not taken as dirty (the cluster size byte is a
    power of two past 0x80; second review); a target ntfs-3g mounts read-only by itself (it
    finds Windows hibernated: an empty hiberfil.sys) is refused, nothing changed."""
    big = new_ntfs(tmp_path / "big.ntfs", 256, "-c", "131072")
    run_cli("create", big, tmp_path / "big.img", "-q", check_rc=0)
    volume = new_ntfs(tmp_path / "v.ntfs")
    view = mounted_ntfs(volume, tmp_path / "view")
    try:
        (view / "hiberfil.sys").write_bytes(b"")
    finally:
        subprocess.run(["umount", str(view)], check=True)
    before = volume.read_bytes()
    line = assert_one_line_error(run_cli("restore", tmp_path / "big.img", volume), 17)
    assert "read-only" in line
    assert volume.read_bytes() == before
    nothing_left_on(big, volume)
