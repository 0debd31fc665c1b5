"""Where each file's bytes lie in a squashfs container, read from its own tables.

A client fetching an image over HTTP reads only the byte ranges of the files it lacks; for that
it needs each stored file's data blocks (offset, compressed size) and fragment, which squashfs
keeps in its inode and directory tables (compressed 8 KiB metadata blocks). The packer reads them
here, from the container it has just made, and appends them as the image's "ranges" blob
(spec/image.md); remote.py reads the blob back and decodes the blocks (decode_block).

Format: squashfs 4.0, as squashfs-tools documents it (squashfs_fs.h): little-endian, a 96-byte
superblock, metadata blocks with a 2-byte header (bit 15: stored uncompressed; low 15 bits: size).
"""

import struct

import zstandard

from .. import codec

SUPERBLOCK = struct.Struct("<IIIIIHHHHHHQQQQQQQQ")
METADATA_BLOCK = 8192
MAX_DEPTH = 1 << 16     # folders within folders: Linux sets no bound; a deeper table is junk
MAX_NAME = 256          # squashfs's own bound on a name (SQUASHFS_NAME_LEN)
MAX_TABLE = 1 << 29     # decoded bytes of one metadata table: ~10 million entries' worth
UNCOMPRESSED_METADATA = 0x8000
UNCOMPRESSED_BLOCK = 1 << 24      # in a data block's or fragment's size word
SIZE_MASK = UNCOMPRESSED_BLOCK - 1
NO_FRAGMENT = 0xFFFFFFFF
ZSTD = 6                          # compression id

# inode types
DIR, FILE, SYMLINK, BLKDEV, CHRDEV, FIFO, SOCKET = range(1, 8)
LDIR, LFILE = 8, 9


class SquashfsError(Exception):
    """The container's tables are not what squashfs 4.0 writes (or are cut short)."""


def decompress_block(dctx, raw: bytes, cap: int) -> bytes:
    """A zstd block decoded to at most cap bytes; b"" when it does not decode or would be
    longer (python-zstandard's decompress ignores max_output_size for a frame that declares
    its size: a small frame could ask for gigabytes)."""
    plain = bytearray()
    try:
        with dctx.stream_reader(raw, read_across_frames=False) as reader:
            while len(plain) <= cap and (chunk := reader.read(cap + 1 - len(plain))):
                plain += chunk
    except zstandard.ZstdError:
        return b""
    return bytes(plain) if len(plain) <= cap else b""


class _Table:
    """A metadata table (inodes or directories): blocks decoded on demand, by their position
    relative to the table's start."""

    def __init__(self, data, start: int, end: int, dctx, read_once: bool = False):
        """read_once: each byte is read at most once (folder listings, which never overlap):
        reading more bytes than the blocks decoded hold is refused, so that crafted listings
        cost no more than the table's own size."""
        self._data, self._start, self._end, self._dctx = data, start, end, dctx
        self._blocks: dict[int, tuple[bytes, int]] = {}
        self._decoded = 0
        self._served = 0 if read_once else None

    def _block(self, rel: int) -> tuple[bytes, int]:
        """(the block's bytes, the next block's position) for the block at rel."""
        got = self._blocks.get(rel)
        if got is not None:
            return got
        at = self._start + rel
        if at + 2 > self._end:
            raise SquashfsError("a metadata block past the end of the container")
        header, = struct.unpack_from("<H", self._data, at)
        size = header & 0x7FFF
        raw = bytes(self._data[at + 2:at + 2 + size])
        if len(raw) != size or size == 0:
            raise SquashfsError("a metadata block cut short")
        if header & UNCOMPRESSED_METADATA:
            block = raw
        else:
            block = decompress_block(self._dctx, raw, METADATA_BLOCK)
            if not block:
                raise SquashfsError("a metadata block does not decompress to at most 8 KiB")
        self._decoded += len(block)
        if self._decoded > MAX_TABLE:
            raise SquashfsError(f"a metadata table of more than {MAX_TABLE >> 20} MiB")
        got = self._blocks[rel] = (block, rel + 2 + size)
        return got

    def read(self, rel: int, offset: int, n: int) -> tuple[bytes, int, int]:
        """n bytes from offset in the block at rel, on across blocks; with the position after
        them (block, offset)."""
        out = bytearray()
        while True:
            block, following = self._block(rel)
            if offset > len(block):
                raise SquashfsError("a metadata reference past its block")
            piece = block[offset:offset + n - len(out)]
            out += piece
            offset += len(piece)
            if len(out) == n:
                if self._served is not None:
                    self._served += n
                    if self._served > self._decoded:
                        raise SquashfsError("folder listings that overlap")
                return bytes(out), rel, offset
            rel, offset = following, 0


def tables_span(superblock: bytes, length: int) -> tuple[int, int]:
    """(start, end) of what read_map reads past the superblock of a container of length bytes:
    its inode, directory and fragment tables, from the inode table to the bytes squashfs
    uses. SquashfsError when the superblock is not sound."""
    if length < SUPERBLOCK.size or len(superblock) < SUPERBLOCK.size:
        raise SquashfsError("no superblock")
    fields = SUPERBLOCK.unpack_from(superblock, 0)
    magic, major, inode_table, dir_table, bytes_used = fields[0], fields[9], fields[15], \
        fields[16], fields[12]
    if magic != 0x73717368 or major != 4 or bytes_used > length:
        raise SquashfsError("not a squashfs 4.0 superblock")
    if not SUPERBLOCK.size <= inode_table < dir_table < bytes_used:
        raise SquashfsError("tables out of order")
    return inode_table, bytes_used


def read_map(data, length: int, expected=None) -> dict:
    """The ranges blob's content for the squashfs container in data[:length] (bytes or mmap):
    {"block_size", "compressor", "fragments": [[start, size word]...],
     "files": [[path, start, [size words], fragment or None, fragment offset, size]...]}
    in the order the directory tree is walked. SquashfsError when its tables are not sound, or
    list a file that is not among expected (the paths a ranges blob holds, when given: crafted
    tables then cost no more than the blob already did)."""
    if length < SUPERBLOCK.size:
        raise SquashfsError("no superblock")
    (magic, _inodes, _mtime, block_size, fragment_count, compressor, block_log, _flags, _ids,
     major, _minor, root_ref, bytes_used, _id_table, _xattr_table, inode_table, dir_table,
     fragment_table, _export_table) = SUPERBLOCK.unpack_from(data, 0)
    if magic != 0x73717368 or major != 4 or block_size != 1 << block_log \
            or not 4096 <= block_size <= 1 << 20 or bytes_used > length:
        raise SquashfsError("not a squashfs 4.0 superblock")
    if compressor != ZSTD:
        raise SquashfsError(f"compressed with method {compressor}, not zstd")
    if not inode_table < dir_table < bytes_used:
        raise SquashfsError("tables out of order")
    dctx = zstandard.ZstdDecompressor()
    inodes = _Table(data, inode_table, dir_table, dctx)
    dirs = _Table(data, dir_table, bytes_used, dctx, read_once=True)
    fragments = _fragments(data, fragment_table, fragment_count, bytes_used, dctx)
    files = []
    seen_dirs = set()
    seen_listings = set()       # each folder lists its own entries: a listing shared is junk
    found = set()

    def listing(ref: int, depth: int):
        if ref in seen_dirs:
            raise SquashfsError("a folder loop")
        if depth > MAX_DEPTH:
            raise SquashfsError(f"folders nested deeper than {MAX_DEPTH:,}")
        seen_dirs.add(ref)
        kind, body = _inode(inodes, ref, block_size)
        if kind not in (DIR, LDIR):
            raise SquashfsError("a folder entry that is not a folder")
        start, offset, size = body
        if size > 3:            # (an empty folder's listing is where the next one starts)
            if (start, offset) in seen_listings:
                raise SquashfsError("a folder listing shared by two folders")
            seen_listings.add((start, offset))
        return _listing(dirs, start, offset, size)

    # depth first, each folder's entries in listing order, without recursion (a legal tree may
    # be deeper than Python's stack); the stack holds names, not paths, so that a deep tree
    # costs memory in its depth, not in its depth squared
    stack = [listing(root_ref, 0)]
    names: list[bytes] = []         # the folders' names from the root down to stack[-1]'s
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            if names:
                names.pop()
            continue
        name, entry_kind, child = entry
        if entry_kind == DIR:
            stack.append(listing(child, len(stack)))
            names.append(name)
        elif entry_kind == FILE:
            path = b"/".join((*names, name))
            if expected is not None and (path not in expected or path in found):
                raise SquashfsError(f"a file its ranges blob does not list ({path[:200]!r})")
            if expected is not None:
                found.add(path)
            child_kind, blocks = _inode(inodes, child, block_size)
            if child_kind not in (FILE, LFILE):
                raise SquashfsError("a file entry that is not a file")
            files.append([path, *blocks])
    return {"block_size": block_size, "compressor": "zstd", "fragments": fragments,
            "files": files}


def ranges_blob(squashfs_map: dict) -> bytes:
    """The ranges blob of a squashfs container (read_map): one zstd frame holding one msgpack
    array, [header, fragment..., file...], each file's size words packed as 4-byte
    little-endian numbers (spec/image.md)."""
    header = {"block_size": squashfs_map["block_size"], "compressor": squashfs_map["compressor"],
              "fragments": len(squashfs_map["fragments"])}
    files = [[path, start, struct.pack(f"<{len(words)}I", *words), fragment, offset, size]
             for path, start, words, fragment, offset, size in squashfs_map["files"]]
    return codec.pack_compressed([header, *squashfs_map["fragments"], *files])


def _fragments(data, table: int, count: int, end: int, dctx) -> list:
    if count == 0 or table == 0xFFFFFFFFFFFFFFFF:
        return []
    blocks = -(-count * 16 // METADATA_BLOCK)
    if table + 8 * blocks > end:
        raise SquashfsError("the fragment table past the end")
    out = []
    for n in range(blocks):
        at, = struct.unpack_from("<Q", data, table + 8 * n)
        raw, _, _ = _Table(data, at, end, dctx).read(0, 0, min(METADATA_BLOCK,
                                                              (count - len(out)) * 16))
        for start, size, _unused in struct.iter_unpack("<QII", raw):
            out.append([start, size])
    return out[:count]


_HEADER = struct.Struct("<HHHHII")


def _inode(table: _Table, ref: int, block_size: int):
    """(type, body) of the inode at ref: a folder's (listing block, offset, listing size), a
    file's [start, size words, fragment or None, fragment offset, size]; None for others."""
    rel, offset = ref >> 16, ref & 0xFFFF
    head, rel, offset = table.read(rel, offset, _HEADER.size)
    kind = _HEADER.unpack(head)[0]
    if kind == DIR:
        raw, _, _ = table.read(rel, offset, 16)
        start, _nlink, size, off, _parent = struct.unpack("<IIHHI", raw)
        return kind, (start, off, size)
    if kind == LDIR:
        raw, _, _ = table.read(rel, offset, 24)
        _nlink, size, start, _parent, _count, off, _xattr = struct.unpack("<IIIIHHI", raw)
        return kind, (start, off, size)
    if kind == FILE:
        raw, rel, offset = table.read(rel, offset, 16)
        start, fragment, frag_offset, size = struct.unpack("<IIII", raw)
    elif kind == LFILE:
        raw, rel, offset = table.read(rel, offset, 40)
        start, size, _sparse, _nlink, fragment, frag_offset, _xattr = struct.unpack("<QQQIIII", raw)
    else:
        return kind, None
    count = size // block_size + (1 if size % block_size and fragment == NO_FRAGMENT else 0)
    if count > 1 << 32:
        raise SquashfsError("a file of impossible size")
    raw, _, _ = table.read(rel, offset, 4 * count)
    words = list(struct.unpack(f"<{count}I", raw))
    return kind, [start, words, None if fragment == NO_FRAGMENT else fragment, frag_offset, size]


def _listing(table: _Table, start: int, offset: int, size: int):
    """(name, entry type, inode ref) of each entry of a folder's listing (size includes the 3
    bytes squashfs adds)."""
    left = size - 3
    rel = start
    while left > 0:
        raw, rel, offset = table.read(rel, offset, 12)
        count, inode_block, _number = struct.unpack("<III", raw)
        left -= 12
        if count >= 256:
            raise SquashfsError("a folder listing header of more than 256 entries")
        for _ in range(count + 1):
            raw, rel, offset = table.read(rel, offset, 8)
            inode_offset, _delta, kind, name_size = struct.unpack("<HhHH", raw)
            if name_size >= MAX_NAME:
                raise SquashfsError("a name of more than 256 bytes in a folder listing")
            name, rel, offset = table.read(rel, offset, name_size + 1)
            left -= 8 + name_size + 1
            if b"/" in name or b"\0" in name or name in (b".", b".."):
                raise SquashfsError("a bad name in a folder listing")
            yield name, kind, (inode_block << 16) | inode_offset
    if left != 0:
        raise SquashfsError("a folder listing of the wrong size")
