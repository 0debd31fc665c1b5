"""ext4 containers, made with mkfs.ext4 -d, sized from what they will hold.

The size is computed, not guessed and shrunk: data blocks plus folder, inode-table, bitmap and
xattr blocks, with a small margin. If mkfs still runs out of room (an estimate is an estimate),
it is retried once a quarter larger. Blocks are 1 KiB: each file's last block is half empty on
average, 2 KiB a file with 4 KiB blocks, 17 MB on a tree of 8,500 files (bench/README.md); 1 KiB
blocks still address 4 TiB without the 64bit feature.

xattrs: ext4 keeps a file's xattr entries (and the values that fit beside them) in its inode
and one xattr block; with ea_inode, a value too long for that block goes to an inode of its
own, so a value of any length Linux allows (64 KiB) fits. A file whose xattrs do not surely fit
a 1 KiB block makes the whole container use 4 KiB blocks; one whose entries alone cannot fit a
4 KiB block (possible on XFS or tmpfs) cannot be held by ext4 at all, and is refused before
mkfs runs."""

import os

from ...errors import OutputError, ToolError, show_path
from ...system.tools import run
from . import FileContainer

BLOCK = 1024
BIG_BLOCK = 4096                   # for xattrs that do not fit a 1 KiB block
INODE_SIZE = 256
# what the inode body holds of xattrs: past the 128-byte inode and its 32 extra bytes, the
# magic number and the final null entry
_IBODY_XATTRS = INODE_SIZE - 128 - 32 - 8


def block_for(sizes) -> int:
    """The block size the container needs for its xattrs (1 KiB unless some file's do not
    surely fit one); OutputError naming a file whose xattr entries no ext4 block holds."""
    if not sizes.xattr_tables:
        return BLOCK
    for path, table in sizes.xattr_tables:
        if sum(entry for entry, _ in table) > BIG_BLOCK - 36 + _IBODY_XATTRS:
            raise OutputError(
                f"{show_path(path)}: its xattrs ({len(table)} names) are more than an ext4 "
                "container holds for one file; use --format squashfs (or btrfs)")
    return BIG_BLOCK


def size_for(sizes, block: int = BLOCK) -> int:
    """Bytes for an ext4 of block-byte blocks holding sizes (a containers.Sizes)."""
    k = block // 1024
    inodes = sizes.entries + sizes.big_values + 32
    # file data, each folder's first block and its names beyond it (in KiB)
    data = (sizes.file_kib if k == 1 else sizes.file_4kib * k) + sizes.folders * k \
        + (sizes.name_bytes + 16 * sizes.entries) // 1024 + k
    xattrs = (-(-sizes.xattr_bytes // 1024) + sizes.xattr_bytes // 100) * k \
        + (sizes.xattr_files * k if k > 1 else 0) \
        + sizes.big_value_bytes // 1024 + sizes.big_values * k    # out-of-inode blocks, ea inodes
    extents = (sizes.file_kib // 32768 + 1) * k           # extent tree blocks of big files
    inode_table = -(-inodes * INODE_SIZE // 1024)
    blocks = -(-(data + xattrs + extents + inode_table) // k)
    groups = blocks // (8 * block) + 1                   # one bitmap block's bits a group
    blocks += groups * 4 + 64                            # bitmaps, descriptors, superblocks
    blocks = int(blocks * 1.02) + 1024 // k              # lost+found and allocator slack
    return blocks * block


class Ext4(FileContainer):
    name = fstype = "ext4"

    def superblock_problem(self, head: bytes, length: int) -> str | None:
        if len(head) < 1082 or head[1080:1082] != b"\x53\xef":
            return "no ext4 superblock"
        return None

    def build(self, source: bytes, out: bytes, sizes):
        block = block_for(sizes)
        size = size_for(sizes, block)
        for attempt in range(2):
            try:
                _mkfs(source, out, size, sizes.entries + sizes.big_values + 32, block)
                return
            except (ToolError, OutputError) as exc:
                if "Insufficient space to store extended attribute" in exc.tool_output:
                    tight = sizes.xattr_tables[0][0] if sizes.xattr_tables else None
                    raise OutputError(
                        (f"{show_path(tight)}: its xattrs" if tight is not None else "xattrs")
                        + " do not fit an ext4 container; use --format squashfs (or btrfs)",
                        tool_output=exc.tool_output) from None
                if attempt or not _out_of_room(exc):
                    raise
                size = size * 5 // 4


def _out_of_room(exc) -> bool:
    """mkfs.ext4 -d failed because the file system it fills is too small: it says so in its
    output (it has no exit code of its own for that), or said no space at all (OutputError)."""
    return isinstance(exc, OutputError) or any(
        word in exc.tool_output for word in ("space", "allocate", "inode"))


def _mkfs(source, out, size, inodes, block=BLOCK):
    if os.path.exists(out):
        os.unlink(out)
    # ea_inode: an xattr value too long for the xattr block gets an inode of its own (Linux
    # 4.13 and later mount it)
    run(["mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", str(block), "-I", str(INODE_SIZE),
         "-m", "0", "-N", str(inodes), "-O", "^has_journal,^resize_inode,ea_inode",
         "-E", "root_owner=0:0", "-d", source, out, str(size // 1024) + "k"], "mkfs.ext4")
