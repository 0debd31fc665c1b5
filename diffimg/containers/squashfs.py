"""squashfs containers, made with mksquashfs (zstd)."""

import os
import struct

from .. import tools
from . import FileContainer

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
        return None

    def start_stream(self, out: bytes) -> tools.Running:
        """mksquashfs reading a tar stream from its stdin (Running.stdin): the files to store
        are sent straight from the tree, with no staging copy (bench/README.md)."""
        return tools.start(["mksquashfs", "-", out, "-tar", "-comp", "zstd", "-Xcompression-level",
                            str(self.level), *LAYOUT, "-noappend", "-no-progress", "-quiet",
                            "-processors", str(os.cpu_count() or 1)], "mksquashfs", fed=True)

    def build(self, source: bytes, out: bytes, sizes=None):
        """mksquashfs of a folder (the image commands feed it a stream instead: start_stream)."""
        tools.run(["mksquashfs", source, out, "-comp", "zstd", "-Xcompression-level",
                   str(self.level), *LAYOUT, "-noappend", "-no-progress", "-quiet",
                   "-one-file-system", "-processors", str(os.cpu_count() or 1)], "mksquashfs")
