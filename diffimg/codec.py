"""The one place that imports msgpack and zstandard; their options are pinned here.

Manifest streams are msgpack objects inside one zstd frame. Writers pack with use_bin_type so
bytes stay bytes and strings stay strings, which (with msgpack's smallest-encoding rule) makes
the encoding of a record canonical: one record, one byte string.
"""

import threading

import msgpack
import zstandard

ZSTD_LEVEL = 3
# A single record (a path, a symlink target, xattrs) is far below this; a larger object means
# a corrupt or hostile stream, and the reader stops instead of allocating it.
MAX_OBJECT_BYTES = 64 << 20

_local = threading.local()


def packer() -> msgpack.Packer:
    """A Packer for this thread, reused (creating one per record is slow)."""
    p = getattr(_local, "packer", None)
    if p is None:
        p = _local.packer = msgpack.Packer(use_bin_type=True, strict_types=False)
    return p


def pack(obj) -> bytes:
    return packer().pack(obj)


def compressing_writer(fileobj):
    """A zstd stream writer over fileobj with the frame's content checksum on."""
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return cctx.stream_writer(fileobj, closefd=False)


def object_reader(fileobj) -> msgpack.Unpacker:
    """Unpack msgpack objects from the zstd stream in fileobj, with bounded buffers."""
    dctx = zstandard.ZstdDecompressor()
    stream = dctx.stream_reader(fileobj, closefd=False, read_across_frames=False)
    return msgpack.Unpacker(
        stream,
        raw=False,
        use_list=True,
        strict_map_key=False,
        max_buffer_size=MAX_OBJECT_BYTES,
        read_size=1 << 18,
    )


# Errors that mean "this stream is not what it claims to be".
DecodeErrors = (
    msgpack.UnpackException,
    msgpack.ExtraData,
    ValueError,
    zstandard.ZstdError,
)
