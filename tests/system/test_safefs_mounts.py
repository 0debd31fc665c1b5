"""safefs.remove against a mount point in the tree it removes (a bind mount: root)."""

import os

import pytest


@pytest.mark.root("a bind mount")
def test_remove_stops_at_a_mount_point_and_walks_paths_of_any_length(tmp_path):
    """Item 2's guard: a folder being removed that holds a mount point (a bind mount of the same
    filesystem) is not emptied across it; and a subtree deeper than PATH_MAX is removed."""
    import errno
    import subprocess

    import pytest

    from diffimg.system.safefs import remove
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious").write_bytes(b"x")
    point = tmp_path / "doomed" / "sub" / "mnt"
    point.mkdir(parents=True)
    deep = os.open(tmp_path / "doomed", os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(3000):                   # 6,000 bytes of path: past PATH_MAX
        os.mkdir(b"d", dir_fd=deep)
        child = os.open(b"d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=deep)
        os.close(deep)
        deep = child
    os.close(deep)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    subprocess.run(["mount", "--bind", tmp_path / "other", point], check=True)
    try:
        with pytest.raises(OSError) as caught:
            remove(fd, b"doomed")
        assert caught.value.errno == errno.EBUSY
        assert os.listdir(point) == ["precious"]
    finally:
        subprocess.run(["umount", point], check=True)
    remove(fd, b"doomed")
    os.close(fd)
    assert os.listdir(tmp_path) == ["other"] and os.listdir(tmp_path / "other") == ["precious"]
