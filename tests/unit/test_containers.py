"""Each container format as an object: its facts, its layout, and a real container built from a
real folder (or, for squashfs and btrfs, started beside a scan) read back through container_tree."""

import os

import pytest

from diffimg.image import containers
from diffimg.image.containers import FORMATS, Sizes
from diffimg.image.containers.squashfs import ZSTD_LEVEL
from diffimg.image.format import ALIGN, Image, container_tree
from diffimg.make.packer import PackOptions, create

FILE_FORMATS = ["squashfs", "btrfs", "ext4"]
# name: (fstype, packs_from_tree_while_scanning, needs_build)
FACTS = {"squashfs": ("squashfs", False, True), "btrfs": ("btrfs", True, True),
         "ext4": ("ext4", False, True), "dir": (None, False, False)}
FILES = {b"a.txt": b"hello\n", b"empty": b"", b"sub/deeper/big.bin": os.urandom(300_000),
         b"sub/name with spaces \xff": b"any bytes in a name"}


def _folder(root) -> tuple[bytes, Sizes]:
    """A small real folder holding FILES, and the Sizes of what it holds."""
    root = os.fsencode(root)
    for path, data in FILES.items():
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "wb") as f:
            f.write(data)
    sizes = Sizes()
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            sizes.add(len(name), folder=True)
        for name in files:
            sizes.add(len(name), os.path.getsize(os.path.join(folder, name)))
    return root, sizes


def _assert_holds_files(shown: bytes):
    for path, data in FILES.items():
        with open(os.path.join(shown, path), "rb") as f:
            assert f.read() == data, path


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


@pytest.mark.root
@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_container_built_from_a_folder_mounts_with_its_files(tmp_path, fmt):
    source, sizes = _folder(tmp_path / "source")
    out = os.fsencode(tmp_path / f"c.{fmt}")
    container = containers.get(fmt, level=3)
    container.build(source, out, sizes)
    with container_tree(out, fmt, container.content_length(out)) as shown:
        _assert_holds_files(shown)


@pytest.mark.root
@pytest.mark.parametrize("fmt", [f for f in FILE_FORMATS if FACTS[f][1]])
def test_a_container_started_beside_the_scan_holds_the_tree(tmp_path, fmt):
    source, _ = _folder(tmp_path / "source")
    out = os.fsencode(tmp_path / f"c.{fmt}")
    container = containers.get(fmt)
    container.start(source, out).wait()
    with container_tree(out, fmt, container.content_length(out)) as shown:
        _assert_holds_files(shown)


@pytest.mark.root
@pytest.mark.parametrize("fmt", ["btrfs", "ext4"])
def test_a_file_system_container_is_its_content_and_at_most_16_mib_more(tmp_path, fmt):
    """A diff-sized tree (3 MB in 300 files, 520 folders): btrfs kept two copies of metadata,
    then separate data and metadata chunks (18 MiB over), ext4 had 4 KiB blocks (2 KiB a file)."""
    source = tmp_path / "source"
    for i in range(300):
        folder = source / f"a{i % 20}" / f"b{i % 200}" / f"c{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i}").write_bytes(os.urandom(i * 70))
    info = create(source, os.fsencode(tmp_path / f"image.{fmt}"), PackOptions(fmt=fmt))
    assert info["stored_bytes"] > 3_000_000
    assert info["container_bytes"] <= info["stored_bytes"] + 16 * 2**20, info


def test_a_dir_container_shows_its_staged_folder(tmp_path):
    container = containers.get("dir")
    tmp = os.fsencode(tmp_path / "image")
    container.make_output(tmp)
    _folder(container.staging_folder(tmp, b"unused"))
    with container_tree(tmp, "dir", 0) as shown:
        _assert_holds_files(shown)


@pytest.mark.parametrize("fmt", [f if f == "dir" else pytest.param(f, marks=pytest.mark.root)
                                 for f in FORMATS])             # a file container is mounted
def test_images_keep_the_layout_of_the_spec(tmp_path, fmt):
    """spec/image.md: the container from offset 0 (length in the index), zero padding to 4096,
    then the manifest blob; the dir format puts the metadata alone in IMAGE/diffimg.meta."""
    source, _ = _folder(tmp_path / "source")
    out = os.fsencode(tmp_path / f"image.{fmt}")
    info = create(source, out, PackOptions(fmt=fmt, level=5))
    image = Image(out)
    length = image.container["length"]
    assert list(image.container) == ["format", "offset", "length"]
    assert image.container["format"] == image.info["format"] == fmt
    assert image.container["offset"] == 0 and info["container_bytes"] == length
    assert info["compression"] == ("zstd level 5" if fmt == "squashfs" else "none")
    manifest_offset = image.blobs["manifest"][0]
    if fmt == "dir":
        assert image.meta_path == os.path.join(out, b"diffimg.meta")
        assert length == 0 and manifest_offset == 0
    else:
        assert image.meta_path == out and length > 0
        assert manifest_offset == -(-length // ALIGN) * ALIGN
        with open(out, "rb") as f:
            f.seek(length)
            assert f.read(manifest_offset - length) == b"\0" * (manifest_offset - length)
    with image.content() as shown:
        _assert_holds_files(shown)
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [os.path.basename(out), b"source"]  # no leftovers
