"""squashfs containers, made with mksquashfs (zstd)."""

import os
import struct

from ...system import tools
from . import FileContainer

_NO_TABLE = (1 << 64) - 1            # an optional table that is absent
_METADATA = 8192                     # a metadata block's bytes, decoded
_DIR_INODES = (1, 8)                 # basic and extended folder inodes


def _index_problem(data, table: int, count: int, entry: int, next_table: int, what: str,
                   ends_at: int | None = None) -> tuple[str | None, int]:
    """(what is wrong with the index at table of a table of count entries of entry bytes, as
    Linux checks it at mount: the index must end just where next_table begins, its blocks lie one after
    another up to ends_at (default: table), each at most a metadata block; the first block's
    start)."""
    length = -(-count * entry // _METADATA) * 8
    if count == 0 or table + length != next_table:
        return f"its {what} table does not end where the next one begins", 0
    pointers = struct.unpack_from(f"<{length // 8}Q", data, table)
    for n, start in enumerate(pointers):
        end = pointers[n + 1] if n + 1 < len(pointers) else (table if ends_at is None else ends_at)
        if not start < end or end - start > _METADATA + 2:
            return f"its {what} table index points wrong", 0
    return None, pointers[0]


STREAM_MEMORY = "192M"          # mksquashfs's caches while it is fed a stream (start_stream)
# zstd level 9, not mksquashfs's default 15: on real binaries (/usr/lib, 663 MB) level 9 made
# 222 MB in 4.7 s, level 15 205 MB in 31.5 s, level 3 239 MB in 1.8 s (bench/README.md)
ZSTD_LEVEL = 9
# no fragments: each file's blocks are its own, so a client fetching a scattered 1% of the files
# over HTTP fetches 1.01x their compressed bytes, against 6.95x with fragments (shared tail
# blocks), for an image 0.02% larger (bench/bench_layout.py, bench/README.md)
LAYOUT = ["-no-fragments"]


class Squashfs(FileContainer):
    name = fstype = "squashfs"

    def __init__(self, level: int = ZSTD_LEVEL):
        self.level = level

    @property
    def compression(self) -> str:
        return f"zstd level {self.level}"

    def superblock_problem(self, head: bytes, length: int) -> str | None:
        # squashfs 4.0: magic, block size (a power of two, 4 KiB to 1 MiB) and its log, the
        # major version, and the bytes used (no more than the container's length)
        if len(head) < 96 or head[:4] != b"hsqs":
            return "no squashfs superblock"
        block_size, = struct.unpack_from("<I", head, 12)
        block_log, major = struct.unpack_from("<H", head, 22)[0], struct.unpack_from("<H", head, 28)[0]
        bytes_used, = struct.unpack_from("<Q", head, 40)
        if major != 4 or not 4096 <= block_size <= 1 << 20 or block_size != 1 << block_log \
                or bytes_used > length:
            return "a damaged squashfs superblock"
        compressor, minor = struct.unpack_from("<H", head, 20)[0], struct.unpack_from("<H", head, 30)[0]
        if compressor != 6 or minor != 0:
            return "a damaged squashfs superblock (not squashfs 4.0 with zstd)"
        return None

    def tables_problem(self, data, length: int) -> str | None:
        """What in the superblock's table fields (and the tables they index) makes Linux refuse
        to mount the container in data[:length] (bytes or mmap), checked as it checks them:
        the id, export, xattr and fragment indexes, each ending where the next table begins,
        the folder and inode tables before them, and a root inode that is a folder."""
        import zstandard

        from ..squashmap import SUPERBLOCK, SquashfsError, _Table
        try:
            (_magic, inodes, _mtime, _block_size, fragments, _compressor, _block_log, flags, ids,
             _major, _minor, root_ref, bytes_used, id_table, xattr_table, inode_table, dir_table,
             fragment_table, export_table) = SUPERBLOCK.unpack_from(data, 0)
            if inodes == 0:
                return "a damaged squashfs superblock (no inodes)"
            if flags & 0x400:                  # compressor options follow, stored as they are
                header, = struct.unpack_from("<H", data, SUPERBLOCK.size)
                if not header & 0x8000 or not 0 < header & 0x7FFF <= _METADATA \
                        or SUPERBLOCK.size + 2 + (header & 0x7FFF) > inode_table:
                    return "a damaged squashfs superblock (its compressor options)"
            problem, next_table = None, bytes_used
            if xattr_table != _NO_TABLE:       # its index ends the container
                start, count = struct.unpack_from("<QI", data, xattr_table)
                if xattr_table + 16 + -(-count * 16 // _METADATA) * 8 != bytes_used:
                    problem = "its xattr table does not end where the container does"
                else:
                    problem, first = _index_problem(data, xattr_table + 16, count, 16, bytes_used,
                                                    "xattr", ends_at=xattr_table)
                    if problem is None and start >= first:
                        problem = "its xattr table points past its blocks"
                    next_table = start          # the xattrs themselves, after the ids
            if problem is None:
                problem, next_table = _index_problem(data, id_table, ids, 4, next_table, "id")
            if problem is None and export_table != _NO_TABLE:
                problem, next_table = _index_problem(data, export_table, inodes, 8, next_table,
                                                     "export")
            if problem is None and fragments:
                problem, next_table = _index_problem(data, fragment_table, fragments, 16,
                                                     next_table, "fragment")
            if problem is None and not SUPERBLOCK.size <= inode_table < dir_table <= next_table:
                problem = "its inode and folder tables are out of order"
            if problem is None:
                table = _Table(data, inode_table, dir_table, zstandard.ZstdDecompressor())
                head, _, _ = table.read(root_ref >> 16, root_ref & 0xFFFF, 16)
                kind, _mode, uid, gid, _mtime, number = struct.unpack("<HHHHII", head)
                if kind not in _DIR_INODES or uid >= ids or gid >= ids or not 0 < number <= inodes:
                    problem = "its root inode is not a folder"
        except (struct.error, SquashfsError, IndexError, ValueError, OverflowError):
            problem = "its tables lie past the container's end or are cut short"
        return f"a damaged squashfs superblock ({problem})" if problem else None

    def start_stream(self, out: bytes) -> tools.Running:
        """mksquashfs reading a tar stream from its stdin (Running.stdin): the files to store
        are sent straight from the tree, with no staging copy (bench/README.md)."""
        # -mem: its caches, by default a quarter of the machine's memory, fill as fast as a
        # fast reader feeds it (576 MiB on a 200k-entry NTFS volume read through libntfs-3g)
        return tools.start(["mksquashfs", "-", out, "-tar", "-comp", "zstd", "-Xcompression-level",
                            str(self.level), *LAYOUT, "-noappend", "-no-progress", "-quiet",
                            "-processors", str(os.cpu_count() or 1), "-mem", STREAM_MEMORY],
                           "mksquashfs", fed=True)

    def build(self, source: bytes, out: bytes, sizes=None):
        """mksquashfs of a folder (the image commands feed it a stream instead: start_stream)."""
        tools.run(["mksquashfs", source, out, "-comp", "zstd", "-Xcompression-level",
                   str(self.level), *LAYOUT, "-noappend", "-no-progress", "-quiet",
                   "-one-file-system", "-processors", str(os.cpu_count() or 1)], "mksquashfs")
