"""squashfs containers, made with mksquashfs (zstd)."""

import os

from .. import tools

fstype = "squashfs"
# zstd level 9, not mksquashfs's default 15: on real binaries (/usr/lib, 663 MB) level 9 made
# 222 MB in 4.7 s, level 15 205 MB in 31.5 s, level 3 239 MB in 1.8 s (bench/README.md)
ZSTD_LEVEL = 9


def build(source: bytes, out: bytes, sizes=None, level: int = ZSTD_LEVEL):
    start(source, out, level).wait()


def start(source: bytes, out: bytes, level: int = ZSTD_LEVEL):
    """mksquashfs in the background; it needs nothing from the scan, so it can run beside it."""
    return tools.start(["mksquashfs", source, out, "-comp", "zstd", "-Xcompression-level", str(level),
         "-noappend", "-no-progress", "-quiet", "-one-file-system", "-processors",
         str(os.cpu_count() or 1)], "mksquashfs")
