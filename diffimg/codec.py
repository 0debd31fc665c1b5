"""The one place that imports msgpack and zstandard; their options are pinned here.

Manifest streams are msgpack objects inside one zstd frame. Writers pack with use_bin_type so
bytes stay bytes and strings stay strings, which (with msgpack's smallest-encoding rule) makes
the encoding of a record canonical: one record, one byte string.
"""

import io
import threading

import msgpack
import zstandard

ZSTD_LEVEL = 3
ZSTD_JOB_BYTES = 1 << 20   # the compression thread's unit of work; small keeps its buffers small
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


def _compressor() -> zstandard.ZstdCompressor:
    """Every zstd frame diffimg writes: ZSTD_LEVEL, the content checksum on, compressed in a
    zstd thread of its own (still one frame), which overlaps with the caller's work."""
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, threads=1, job_size=ZSTD_JOB_BYTES, write_checksum=1)
    return zstandard.ZstdCompressor(compression_params=params)


def compressing_writer(fileobj):
    """A zstd stream writer over fileobj (one frame)."""
    return _compressor().stream_writer(fileobj, closefd=False)


class ObjectReader:
    """Objects from a zstd-compressed msgpack stream, each with its end offset in the
    decompressed stream; the decompressed bytes stay available (take) until released, so a
    reader can digest objects exactly as they were written."""

    READ_SIZE = 1 << 18

    def __init__(self, fileobj):
        dctx = zstandard.ZstdDecompressor()
        self._stream = dctx.stream_reader(fileobj, closefd=False, read_across_frames=False)
        self._unpacker = msgpack.Unpacker(raw=False, use_list=True, strict_map_key=False,
                                          max_buffer_size=MAX_OBJECT_BYTES)
        self._kept = bytearray()
        self._kept_from = 0      # stream offset of _kept[0]
        self._fed = 0            # bytes fed to the unpacker so far

    def __iter__(self):
        """Yield (object, offset just after it)."""
        unpacker = self._unpacker
        while True:
            for obj in unpacker:
                yield obj, unpacker.tell()
            if not self._feed():
                return

    def _feed(self) -> bool:
        chunk = self._stream.read(self.READ_SIZE)
        if not chunk:
            return False
        self._unpacker.feed(chunk)
        self._kept += chunk
        self._fed += len(chunk)
        return True

    def take(self, start: int, end: int) -> bytes:
        return bytes(self._kept[start - self._kept_from:end - self._kept_from])

    def release(self, upto: int):
        del self._kept[:upto - self._kept_from]
        self._kept_from = upto

    def at_end(self) -> bool:
        """True when nothing at all follows the last object yielded."""
        return self._unpacker.tell() == self._fed and not self._feed()


# Errors that mean "this stream is not what it claims to be".
DecodeErrors = (
    msgpack.UnpackException,
    msgpack.BufferFull,
    ValueError,
    zstandard.ZstdError,
)


def compress(data: bytes) -> bytes:
    """data in one zstd frame (with content size and checksum)."""
    return _compressor().compress(data)


def check_frame(head: bytes):
    """ValueError unless head starts a zstd frame whose content checksum is on: every frame
    diffimg writes has one, and a stream without it is not in its canonical form."""
    try:
        if not zstandard.get_frame_parameters(head).has_checksum:
            raise ValueError("zstd frame without its content checksum")
    except zstandard.ZstdError as exc:
        raise ValueError(f"not a zstd frame ({exc})") from None


def frame_content_size(head: bytes) -> int:
    """The content size a zstd frame's header declares; -1 when it declares none."""
    return zstandard.frame_content_size(head)


def decompressing_reader(fileobj):
    """A stream of the one zstd frame read from fileobj."""
    return zstandard.ZstdDecompressor().stream_reader(fileobj, read_across_frames=False)


class Window(io.RawIOBase):
    """The next length bytes of a file, as a file: a manifest embedded in an image, or the
    stat section's frame, ends there."""

    def __init__(self, f, length: int):
        self._f = f
        self._left = length

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        got = self._f.readinto(memoryview(buffer)[:n])
        self._left -= got
        return got

    def close(self):
        self._f.close()
        super().close()


def pack_compressed(obj) -> bytes:
    """One msgpack object in one zstd frame (with content size and checksum)."""
    return _compressor().compress(pack(obj))


class _Capped(io.RawIOBase):
    """A stream that fails once more than limit bytes were read from it."""

    def __init__(self, stream, limit: int):
        self._stream, self._left = stream, limit

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self._stream.readinto(buffer)
        self._left -= n
        if self._left < 0:
            raise ValueError("decompresses to more than it may")
        return n


def iter_compressed_array(data: bytes, max_items: int, max_size: int = 1 << 30):
    """The items of the one msgpack array in the zstd frame data, decoded one at a time: a
    caller that checks each item stops at the first bad one, so a small frame that expands to
    a huge array of junk costs no memory. ValueError (or a DecodeErrors) when malformed."""
    check_frame(data[:18])
    stream = _Capped(zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False),
                     max_size)
    unpacker = msgpack.Unpacker(stream, raw=False, use_list=True, strict_map_key=False,
                                max_buffer_size=MAX_OBJECT_BYTES, max_array_len=1 << 16,
                                max_map_len=1 << 16)
    count = unpacker.read_array_header()
    if count > max_items:
        raise ValueError(f"{count:,} items, more than {max_items:,}")
    for _ in range(count):
        yield unpacker.unpack()
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return
    raise ValueError("data after the array")


def unpack(data: bytes):
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
