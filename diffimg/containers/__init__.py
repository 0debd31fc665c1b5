"""Container formats: each turns a folder into one file system image file, behind one small
interface. The container only stores bytes; the manifest is the authority on metadata.

    build(source_dir, out_path, sizes)  make the container file out_path from source_dir
    fstype                              for mount -t; None for the dir format (no file)
"""

from dataclasses import dataclass


@dataclass
class Sizes:
    """What the container will hold, for formats that must be sized up front."""
    entries: int = 0          # every entry, folders included
    file_blocks: int = 0      # sum over stored files of their size in 4 KiB blocks
    name_bytes: int = 0       # sum of the names' lengths (folder blocks)
    xattr_bytes: int = 0      # sum of xattr names and values

    def add(self, name_len: int, size: int = 0, xattr_bytes: int = 0):
        self.entries += 1
        self.file_blocks += -(-size // 4096)
        self.name_bytes += name_len
        self.xattr_bytes += xattr_bytes


FORMATS = ("squashfs", "btrfs", "ext4", "dir")


def get(name: str):
    return {"squashfs": squashfs, "btrfs": btrfs, "ext4": ext4, "dir": dirfmt}[name]


from . import btrfs, dirfmt, ext4, squashfs  # noqa: E402  (they import Sizes from here)
