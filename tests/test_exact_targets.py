"""Exact where admins stand (issue 24): a partition file's state outlives its loop device, --keep
matches as the target's filesystem does, a diff can leave paths out as not its own, nothing on
the target changes when a restore fails before it needs to, a diff whose delta is not its
manifest's tree is refused."""

import os
import subprocess

import pytest
from conftest import IS_ROOT, run_cli

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (loop devices, mounts)")


def _ext4(path, size="32M"):
    subprocess.run(["truncate", "-s", size, str(path)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(path)], check=True)
    return path


class _Mounted:
    """A filesystem image file mounted on a loop device of its own for the block."""

    def __init__(self, volume, where):
        self.volume, self.where = volume, where

    def __enter__(self):
        self.where.mkdir(exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(self.volume), str(self.where)], check=True)
        return self.where

    def __exit__(self, *exc):
        subprocess.run(["umount", "-d", str(self.where)], check=True)


def _source_device(mount) -> str:
    return subprocess.run(["findmnt", "-no", "SOURCE", str(mount)], capture_output=True,
                          text=True, check=True).stdout.strip()


@needs_root
def test_a_partition_files_stat_proofs_survive_another_loop_device(tmp_path):
    """A partition file restored once is attached to another loop device the next time; an
    edit that kept size and mtime is still seen (by status and by restore), because the state
    names the filesystem by its UUID, and nothing unchanged is hashed again."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "data").write_bytes(b"model content 01\n")
    (tree / "etc" / "hostname").write_text("pc12\n")
    run_cli("create", "-q", tree, tmp_path / "base.img", check_rc=0)
    target = _ext4(tmp_path / "target.ext4")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)

    # the same file, on a loop device it never had before: another file holds the first free one
    blocker = _ext4(tmp_path / "blocker.ext4", "8M")
    held = subprocess.run(["losetup", "-f", "--show", str(blocker)], capture_output=True,
                          text=True, check=True).stdout.strip()
    try:
        with _Mounted(target, tmp_path / "mnt") as mnt:
            data = mnt / "data"
            st = os.stat(data)
            data.write_bytes(b"student edit! 01\n")              # same size
            os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
            first_device = _source_device(mnt)
        status = run_cli("status", target)
        assert status.returncode == 1 and b"data" in status.stdout, status
        restored = run_cli("restore", "--json", tmp_path / "base.img", target, check_rc=0)
        assert b"another filesystem" not in restored.stderr, restored.stderr
        assert b'"files_written": 1' in restored.stdout, restored.stdout
        with _Mounted(target, tmp_path / "mnt") as mnt:
            assert (mnt / "data").read_bytes() == b"model content 01\n"
            assert _source_device(mnt) != held and first_device != held
        run_cli("status", target, check_rc=0)
    finally:
        subprocess.run(["losetup", "-d", held], check=True)
