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


def test_a_folder_others_can_write_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o770)
    with pytest.raises(OutputError, match="writable by no one else"):
        check_cache_folder(cache)
