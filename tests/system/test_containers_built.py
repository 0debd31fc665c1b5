"""Real containers built from a real folder (or, for btrfs, started beside a scan), mounted and
read back through container_tree; an image's layout as the spec gives it."""

import os

import pytest
from containerbuild import FILE_FORMATS, assert_holds_files, folder_with_files

from diffimg.image import containers
from diffimg.image.containers import FORMATS
from diffimg.image.format import ALIGN, Image, container_tree
from diffimg.make.packer import PackOptions, create


@pytest.mark.root
@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_container_built_from_a_folder_mounts_with_its_files(tmp_path, fmt):
    source, sizes = folder_with_files(tmp_path / "source")
    out = os.fsencode(tmp_path / f"c.{fmt}")
    container = containers.get(fmt, level=3)
    container.build(source, out, sizes)
    with container_tree(out, fmt, container.content_length(out)) as shown:
        assert_holds_files(shown)


@pytest.mark.root
@pytest.mark.parametrize("fmt", ["btrfs"])     # packs_from_tree_while_scanning
def test_a_container_started_beside_the_scan_holds_the_tree(tmp_path, fmt):
    source, _ = folder_with_files(tmp_path / "source")
    out = os.fsencode(tmp_path / f"c.{fmt}")
    container = containers.get(fmt)
    container.start(source, out).wait()
    with container_tree(out, fmt, container.content_length(out)) as shown:
        assert_holds_files(shown)


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


@pytest.mark.parametrize("fmt", [f if f == "dir" else pytest.param(f, marks=pytest.mark.root)
                                 for f in FORMATS])             # a file container is mounted
def test_images_keep_the_layout_of_the_spec(tmp_path, fmt):
    """spec/image.md: the container from offset 0 (length in the index), zero padding to 4096,
    then the manifest blob; the dir format puts the metadata alone in IMAGE/diffimg.meta."""
    source, _ = folder_with_files(tmp_path / "source")
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
        assert_holds_files(shown)
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [os.path.basename(out), b"source"]  # no leftovers
