"""What diffimg convert takes from a partclone image before any tool runs as root: its header
(both formats) read and checked, and the pipeline feeding partclone held to what the header
gives."""

import os

import pytest


def test_partclone_headers_of_both_formats_are_read_and_checked():
    """Format 0001 (partclone before 0.3.0, which this machine's partclone no longer writes)
    laid out as partclone's IMAGE_FORMATS.md gives it; impossible values refused."""
    import struct

    from diffimg.errors import ImageError
    from diffimg.make.convert import parse_header
    v1 = struct.pack("<15s15s4s2xiQQQ", b"partclone-image", b"NTFS", b"0001", 4096,
                     10 << 30, (10 << 30) // 4096, 1000) + bytes(4096)
    header = parse_header(v1, "old.img")
    assert (header.version, header.filesystem, header.block_size, header.device_size,
            header.used_bytes) == ("0001", "NTFS", 4096, 10 << 30, 1000 * 4096)
    for bad in (v1[:100], v1.replace(b"0001", b"0003", 1),
                struct.pack("<15s15s4s2xiQQQ", b"partclone-image", b"NTFS", b"0001", 4095,
                            10 << 30, 100, 10) + bytes(4096),          # not a power of two
                struct.pack("<15s15s4s2xiQQQ", b"partclone-image", b"NTFS", b"0001", 4096,
                            4096, 100, 10) + bytes(4096),              # blocks past the size
                struct.pack("<15s15s4s2xiQQQ", b"partclone-image", b"NTFS", b"0001", 4096,
                            1 << 30, 100, 200) + bytes(4096)):         # more used than total
        with pytest.raises(ImageError):
            parse_header(bad, "bad.img")


def test_partclone_restore_is_fed_no_more_than_the_header_gives(tmp_path):
    """The bound itself (the bitmap could change between the header's check and the restore):
    the last tool of the pipeline gets at most limit bytes, and a longer stream is flagged."""
    from diffimg.make.convert import _Pipeline
    source = tmp_path / "long"
    source.write_bytes(os.urandom(8 << 20))
    with open(tmp_path / "out", "wb") as out:
        pipeline = _Pipeline([os.fsencode(source)], None, ["cat"], stdout=out, limit=1 << 20)
        try:
            pipeline.wait()
        finally:
            pipeline.close()
    assert pipeline.overflowed
    assert os.path.getsize(tmp_path / "out") <= 1 << 20
    with open(tmp_path / "out2", "wb") as out:
        pipeline = _Pipeline([os.fsencode(source)], None, ["cat"], stdout=out, limit=16 << 20)
        try:
            pipeline.wait()
        finally:
            pipeline.close()
    assert not pipeline.overflowed and (tmp_path / "out2").read_bytes() == source.read_bytes()
