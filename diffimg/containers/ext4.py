"""ext4 containers, made with mkfs.ext4 -d, sized from what they will hold.

The size is computed, not guessed and shrunk: data blocks plus folder, inode-table, bitmap and
xattr blocks, with a small margin. If mkfs still runs out of room (an estimate is an estimate),
it is retried once a quarter larger. Blocks are 1 KiB: each file's last block is half empty on
average, 2 KiB a file with 4 KiB blocks, 17 MB on a tree of 8,500 files (bench/README.md); 1 KiB
blocks still address 4 TiB without the 64bit feature."""

import os

from ..errors import OutputError, ToolError
from ..tools import run
from . import FileContainer

BLOCK = 1024
INODE_SIZE = 256
BLOCKS_PER_GROUP = 8 * BLOCK       # one bitmap block's bits


def size_for(sizes) -> int:
    """Bytes for an ext4 holding sizes (a containers.Sizes)."""
    inodes = sizes.entries + 32
    # file data (Sizes counts whole KiB), each folder's first block and its names beyond it
    data = sizes.file_kib + sizes.folders + (sizes.name_bytes + 16 * sizes.entries) // BLOCK + 1
    xattrs = -(-sizes.xattr_bytes // BLOCK) + sizes.xattr_bytes // 100   # out-of-inode blocks
    extents = sizes.file_kib // 32768 + 1              # extent tree blocks of big files
    inode_table = -(-inodes * INODE_SIZE // BLOCK)
    blocks = data + xattrs + extents + inode_table
    groups = blocks // BLOCKS_PER_GROUP + 1
    blocks += groups * 4 + 64                            # bitmaps, descriptors, superblocks
    blocks = int(blocks * 1.02) + 1024                   # lost+found and allocator slack
    return blocks * BLOCK


class Ext4(FileContainer):
    name = fstype = "ext4"

    def superblock_problem(self, head: bytes, length: int) -> str | None:
        if len(head) < 1082 or head[1080:1082] != b"\x53\xef":
            return "no ext4 superblock"
        return None

    def build(self, source: bytes, out: bytes, sizes):
        size = size_for(sizes)
        for attempt in range(2):
            try:
                _mkfs(source, out, size, sizes.entries + 32)
                return
            except (ToolError, OutputError) as exc:
                if attempt or not _out_of_room(exc):
                    raise
                size = size * 5 // 4


def _out_of_room(exc) -> bool:
    """mkfs.ext4 -d failed because the file system it fills is too small: it says so in its
    output (it has no exit code of its own for that), or said no space at all (OutputError)."""
    return isinstance(exc, OutputError) or any(
        word in exc.tool_output for word in ("space", "allocate", "inode"))


def _mkfs(source, out, size, inodes):
    if os.path.exists(out):
        os.unlink(out)
    run(["mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", str(BLOCK), "-I", str(INODE_SIZE),
         "-m", "0", "-N", str(inodes), "-O", "^has_journal,^resize_inode",
         "-E", "root_owner=0:0", "-d", source, out, str(size // 1024) + "k"], "mkfs.ext4")
