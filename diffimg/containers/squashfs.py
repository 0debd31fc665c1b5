"""squashfs containers, made with mksquashfs (zstd)."""

import os

from .. import tools
from . import FileContainer

# zstd level 9, not mksquashfs's default 15: on real binaries (/usr/lib, 663 MB) level 9 made
# 222 MB in 4.7 s, level 15 205 MB in 31.5 s, level 3 239 MB in 1.8 s (bench/README.md)
ZSTD_LEVEL = 9


class Squashfs(FileContainer):
    name = fstype = "squashfs"
    packs_from_tree_while_scanning = True

    def __init__(self, level: int = ZSTD_LEVEL):
        self.level = level

    @property
    def compression(self) -> str:
        return f"zstd level {self.level}"

    def build(self, source: bytes, out: bytes, sizes=None):
        self.start(source, out).wait()

    def start(self, source: bytes, out: bytes) -> tools.Running:
        """mksquashfs in the background; it needs nothing from the scan, so it can run beside it."""
        return tools.start(["mksquashfs", source, out, "-comp", "zstd", "-Xcompression-level",
                            str(self.level), "-noappend", "-no-progress", "-quiet",
                            "-one-file-system", "-processors", str(os.cpu_count() or 1)],
                           "mksquashfs")
