"""Each container format as an object: its facts, its output file or folder, and a dir
container read back through container_tree; no tool is run, nothing mounted. (Real containers
built, mounted and laid out as the spec says: system/test_containers_built.py.)"""

import os

import pytest
from containerbuild import FILE_FORMATS, assert_holds_files, folder_with_files

from diffimg.image import containers
from diffimg.image.containers import FORMATS
from diffimg.image.containers.squashfs import ZSTD_LEVEL
from diffimg.image.format import container_tree

# name: (fstype, packs_from_tree_while_scanning, needs_build)
FACTS = {"squashfs": ("squashfs", False, True), "btrfs": ("btrfs", True, True),
         "ext4": ("ext4", False, True), "dir": (None, False, False)}


def test_formats_are_the_containers_names():
    assert set(FORMATS) == set(FACTS)
    for name in FORMATS:
        container = containers.get(name)
        assert container.name == name
        assert (container.fstype, container.packs_from_tree_while_scanning,
                container.needs_build) == FACTS[name]


def test_only_squashfs_compresses_and_takes_the_level():
    assert containers.get("squashfs").compression == f"zstd level {ZSTD_LEVEL}"
    assert containers.get("squashfs", level=3).compression == "zstd level 3"
    for name in ("btrfs", "ext4", "dir"):
        assert containers.get(name, level=3).compression == "none"
    with pytest.raises(KeyError):
        containers.get("zip")


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_file_container_is_the_image_file_with_the_metadata_appended(tmp_path, fmt):
    container = containers.get(fmt)
    tmp, beside = os.fsencode(tmp_path / ".img.tmp-1"), os.fsencode(tmp_path / ".img.staging-1")
    container.make_output(tmp)
    assert not os.path.lexists(tmp)              # the tool makes the file
    assert container.staging_folder(tmp, beside) == beside
    assert container.metadata_file(tmp) == (tmp, "r+b")
    assert container.content_folder(tmp) is None  # seen through a mount
    with open(tmp, "wb") as f:
        f.write(b"x" * 5000)
    assert container.content_length(tmp) == 5000


def test_a_dir_image_is_a_folder_with_tree_and_diffimg_meta(tmp_path):
    container = containers.get("dir")
    tmp, beside = os.fsencode(tmp_path / ".img.tmp-1"), os.fsencode(tmp_path / ".img.staging-1")
    container.make_output(tmp)
    assert os.path.isdir(tmp)
    assert container.staging_folder(tmp, beside) == os.path.join(tmp, b"tree")
    assert container.metadata_file(tmp) == (os.path.join(tmp, b"diffimg.meta"), "xb")
    assert container.content_folder(tmp) == os.path.join(tmp, b"tree")
    assert container.content_length(tmp) == 0
    with pytest.raises(FileExistsError):
        container.make_output(tmp)               # never writes into an existing folder


def test_a_dir_container_shows_its_staged_folder(tmp_path):
    container = containers.get("dir")
    tmp = os.fsencode(tmp_path / "image")
    container.make_output(tmp)
    folder_with_files(container.staging_folder(tmp, b"unused"))
    with container_tree(tmp, "dir", 0) as shown:
        assert_holds_files(shown)


