"""fetch's cache folder: this user's, writable by no one else, and no folder above it (as given
or where it really is) changeable by others."""

import os

import pytest

from diffimg.deliver.cache import check_cache_folder
from diffimg.errors import OutputError


def test_a_private_folder_is_taken_also_through_a_symlink_in_a_private_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    assert check_cache_folder(real) == bytes(real)
    assert check_cache_folder(tmp_path / "link") == bytes(tmp_path / "link")


def test_a_symlink_in_a_folder_others_can_write_is_refused(tmp_path):
    """Whoever can write that folder can swap the symlink once the folder is checked."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "link").symlink_to(real)
    with pytest.raises(OutputError, match="shared above the cache folder can be changed by others"):
        check_cache_folder(shared / "link")


def test_a_symlink_others_can_swap_is_found_behind_dot_dot_and_other_symlinks(tmp_path):
    """".." after a symlink goes up from where the symlink leads, and a symlink may lead to
    another: the folders holding each of them are checked too."""
    for name in ("real", "safe", "shared", "other"):
        (tmp_path / name).mkdir(mode=0o700)
    (tmp_path / "real" / "cache").mkdir(mode=0o700)
    (tmp_path / "real" / "deeper").mkdir(mode=0o700)
    os.chmod(tmp_path / "shared", 0o777)
    (tmp_path / "shared" / "up").symlink_to(tmp_path / "real" / "deeper")
    (tmp_path / "shared" / "hop").symlink_to(tmp_path / "real" / "cache")
    (tmp_path / "safe" / "first").symlink_to(tmp_path / "shared" / "hop")
    (tmp_path / "other" / "fine").symlink_to(tmp_path / "real" / "deeper")
    assert check_cache_folder(tmp_path / "other" / "fine" / ".." / "cache")
    for given in (tmp_path / "shared" / "up" / ".." / "cache", tmp_path / "safe" / "first"):
        with pytest.raises(OutputError, match="shared above the cache folder"):
            check_cache_folder(given)


def test_a_folder_others_can_write_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o770)
    with pytest.raises(OutputError, match="writable by no one else"):
        check_cache_folder(cache)
