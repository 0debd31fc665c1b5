"""squashfs containers, made with mksquashfs (zstd)."""

import os

from ..tools import run

fstype = "squashfs"
ZSTD_LEVEL = 15   # mksquashfs's own default level for zstd


def build(source: bytes, out: bytes, sizes=None, level: int = ZSTD_LEVEL):
    run(["mksquashfs", source, out, "-comp", "zstd", "-Xcompression-level", str(level),
         "-noappend", "-no-progress", "-quiet", "-one-file-system", "-processors",
         str(os.cpu_count() or 1)], "mksquashfs")
