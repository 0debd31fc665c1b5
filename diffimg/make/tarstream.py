"""The tar stream a squashfs container is fed (mksquashfs -tar): regular files only, each a
header (with a POSIX pax record before it where ustar cannot hold its path or size), then its
content padded to whole 512-byte blocks; two zero blocks end the stream.

The container's files carry no metadata of their own (the manifest holds it), so a header has
only a path and a size. Written here rather than with tarfile: tarfile's per-file work and
16 KiB copies cost 4 s of the 10.4 s stream of the 100k-entry bench tree (bench/README.md)."""

BLOCK = 512
END = bytes(2 * BLOCK)
_USTAR_NAME = 100                 # bytes of the ustar name field
_USTAR_SIZE = 8 ** 11 - 1         # eleven octal digits


def padding(size: int) -> bytes:
    """The zeros after size bytes of content, up to a whole block."""
    return bytes(-size % BLOCK)


def file_header(path: bytes, size: int) -> bytes:
    """The header of a regular file at path (relative, no NUL) holding size bytes."""
    records = b""
    if len(path) >= _USTAR_NAME:
        records += _pax_record(b"path", path)
    if size > _USTAR_SIZE:
        records += _pax_record(b"size", b"%d" % size)
    if not records:
        return _ustar(path, size, b"0")
    return (_ustar(b"././@PaxHeader", len(records), b"x") + records + padding(len(records))
            + _ustar(path[:_USTAR_NAME - 1], 0 if size > _USTAR_SIZE else size, b"0"))


def _pax_record(key: bytes, value: bytes) -> bytes:
    """'LENGTH KEY=VALUE\\n', where LENGTH counts the whole record, its own digits too."""
    rest = len(key) + len(value) + 3           # ' ', '=', '\n'
    length = rest
    while length != rest + len(str(length)):
        length = rest + len(str(length))
    return b"%d %s=%s\n" % (length, key, value)


def _ustar(name: bytes, size: int, kind: bytes) -> bytes:
    header = bytearray(BLOCK)
    header[0:len(name)] = name
    header[100:108] = b"0000644\0"             # mode
    header[108:116] = b"0000000\0"             # uid
    header[116:124] = b"0000000\0"             # gid
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"00000000000\0"         # mtime
    header[156:157] = kind
    header[257:265] = b"ustar\x0000"
    header[148:156] = b" " * 8                 # the checksum counts itself as spaces
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)
