"""Container formats: each turns a folder into the content of an image, behind one small
interface, one class per format (as borg's chunkers and httpx's transports are). The container
only stores bytes; the manifest is the authority on metadata.

    containers.get(name, level=...)   the Container of a format, made with its options
"""

import os
from dataclasses import dataclass, field

# xattr name prefixes an ext4 entry stores as an index, not as text (e2fsprogs' table)
_XATTR_INDEXED = (b"user.", b"trusted.", b"security.")
_XATTR_WHOLE = (b"system.posix_acl_access", b"system.posix_acl_default")
XATTR_BLOCK_FREE_1K = 1024 - 32 - 4     # an xattr block's room: header, final null entry


def xattr_table(xattrs: dict) -> list[tuple[int, int]]:
    """(bytes its ext4 entry takes, value length) of each xattr mkfs.ext4 -d writes (ntfs-3g's
    system.ntfs_* are never listed, so never copied); an entry is 16 bytes and its name without
    an indexed prefix, rounded up to 4."""
    table = []
    for name, value in xattrs.items():
        if name.startswith(b"system.ntfs_"):
            continue
        if name in _XATTR_WHOLE:
            stored = 0
        else:
            stored = len(name) - next((len(p) for p in _XATTR_INDEXED if name.startswith(p)), 0)
        table.append(((stored + 16 + 3) & ~3, len(value)))
    return table


def xattr_room(table, block: int) -> int:
    """Bytes of an ext4 xattr block of block bytes that table surely fits in: every entry, and
    each value short enough to stay beside it (a longer one goes to an inode of its own,
    ea_inode)."""
    return sum(entry + ((size + 3) & ~3 if size <= block - 56 else 0) for entry, size in table)


@dataclass
class Sizes:
    """What the container will hold, for formats that must be sized up front."""
    entries: int = 0          # every entry, folders included
    folders: int = 0
    file_bytes: int = 0       # sum of the stored files' sizes
    file_kib: int = 0         # the same, each file in whole KiB (1 KiB blocks)
    name_bytes: int = 0       # sum of the names' lengths (folder blocks)
    xattr_bytes: int = 0      # sum of xattr names and values
    file_4kib: int = 0        # the stored files' sizes, each in whole 4 KiB blocks
    xattr_files: int = 0      # entries with xattrs
    big_values: int = 0       # xattr values that may go to an ext4 inode of their own
    big_value_bytes: int = 0
    # (path, xattr_table) of each entry whose xattrs do not surely fit a 1 KiB ext4 xattr block
    xattr_tables: list = field(default_factory=list)

    def add(self, name_len: int, size: int = 0, xattr_bytes: int = 0, folder: bool = False,
            xattrs: dict | None = None, path: bytes = b""):
        self.entries += 1
        self.folders += folder
        self.file_bytes += size
        self.file_kib += -(-size // 1024)
        self.file_4kib += -(-size // 4096)
        self.name_bytes += name_len
        self.xattr_bytes += xattr_bytes
        if xattrs:
            self.xattr_files += 1
            table = xattr_table(xattrs)
            tight = xattr_room(table, 1024) > XATTR_BLOCK_FREE_1K
            if tight:
                self.xattr_tables.append((path, table))
            for _, value in table:
                if tight or value > 1024 - 56:
                    self.big_values += 1
                    self.big_value_bytes += value


class Container:
    """One container format: how its content is made, and where an image's parts lie.

    The packer makes an image in a temporary name (tmp) beside the output: it stages the files
    to store in a folder (or lets the tool read the tree itself), builds the container, appends
    the metadata, and renames tmp to the output at the end."""

    name: str                                # in --format and in the image's index
    fstype: str | None = None                # for mount -t; None: a plain folder, never mounted
    compression = "none"                     # for the image's info
    packs_from_tree_while_scanning = False   # start() may run beside the scan
    needs_build = True                       # False: the staged folder already is the content

    def build(self, source: bytes, out: bytes, sizes: Sizes):
        """Make the container file out from the folder source (sizes: what it will hold)."""
        raise NotImplementedError

    def start(self, source: bytes, out: bytes):
        """Begin build in the background (a tools.Running); only when
        packs_from_tree_while_scanning, since it cannot use the scan's sizes."""
        raise NotImplementedError

    def make_output(self, tmp: bytes):
        """Create what must exist at tmp before staging (OSError when it cannot)."""
        raise NotImplementedError

    def staging_folder(self, tmp: bytes, beside: bytes) -> bytes:
        """Where the files to store are copied: beside (a temporary name next to tmp) or a
        folder inside tmp."""
        raise NotImplementedError

    def content_length(self, tmp: bytes) -> int:
        """The container's length in bytes, for the index (the metadata starts after it)."""
        raise NotImplementedError

    def metadata_file(self, image: bytes) -> tuple[bytes, str]:
        """The file the metadata is appended to, and the mode to open it with."""
        raise NotImplementedError

    def content_folder(self, image: bytes) -> bytes | None:
        """The folder holding the image's files; None when the container must be mounted."""
        raise NotImplementedError


class FileContainer(Container):
    """A file system image file (squashfs, btrfs, ext4): the image is that one file, with the
    metadata appended to it, and its files are seen through a read-only mount."""

    def make_output(self, tmp: bytes):
        pass                  # the tool makes the file

    def staging_folder(self, tmp: bytes, beside: bytes) -> bytes:
        return beside

    def content_length(self, tmp: bytes) -> int:
        return os.path.getsize(tmp)

    def metadata_file(self, image: bytes) -> tuple[bytes, str]:
        return image, "r+b"   # after the container, which must stay as it is

    def content_folder(self, image: bytes) -> bytes | None:
        return None

    def superblock_problem(self, head: bytes, length: int) -> str | None:
        """What makes the container's first bytes (SUPERBLOCK_BYTES of them) not a superblock
        of this format holding length bytes; None when they look right. A damaged image is
        told apart from a machine that cannot mount it (a bad image, not a failed tool)."""
        raise NotImplementedError


SUPERBLOCK_BYTES = 65536 + 4096      # btrfs's lies at 64 KiB


from . import btrfs, dirfmt, ext4, squashfs  # noqa: E402  (they import the classes above)

FORMATS = ("squashfs", "btrfs", "ext4", "dir")


def get(name: str, level: int = squashfs.ZSTD_LEVEL) -> Container:
    """The container of format name (KeyError for an unknown one); level is the zstd level,
    which only squashfs compresses with."""
    if name == "squashfs":
        return squashfs.Squashfs(level)
    return {"btrfs": btrfs.Btrfs, "ext4": ext4.Ext4, "dir": dirfmt.Dir}[name]()
