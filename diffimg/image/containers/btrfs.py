"""btrfs containers, made with mkfs.btrfs --rootdir --shrink: exactly the size its content needs,
with no guess and no resize afterwards. (btrfs-progs 6.2, Debian 12's, cannot compress files in
--rootdir mode; compression would need a loop mount of a guessed size.)"""

from ...system import tools
from . import FileContainer


class Btrfs(FileContainer):
    name = fstype = "btrfs"
    packs_from_tree_while_scanning = True

    def superblock_problem(self, head: bytes, length: int) -> str | None:
        if len(head) < 0x10048 or head[0x10040:0x10048] != b"_BHRfS_M":
            return "no btrfs superblock"
        return None

    def build(self, source: bytes, out: bytes, sizes=None):
        self.start(source, out).wait()

    def start(self, source: bytes, out: bytes) -> tools.Running:
        """mkfs.btrfs in the background; it needs nothing from the scan, so it can run beside it."""
        with open(out, "wb"):
            pass            # mkfs.btrfs wants the file to exist; --shrink sets its size
        # one copy of metadata (the default keeps two, DUP): a read-only image needs no second,
        # and a diff of 3.7 MB was 106 MB with it, 19 MB without; data and metadata in mixed
        # block groups, so that no chunk of either is left mostly empty: a diff of 2.6 MB,
        # 21.8 MB in separate groups, is 15.2 MB (bench/README.md)
        return tools.start(["mkfs.btrfs", "-q", "-f", "--mixed", "-m", "single", "-d", "single",
                            "--rootdir", source, "--shrink", out], "mkfs.btrfs")
