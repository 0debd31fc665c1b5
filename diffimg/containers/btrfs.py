"""btrfs containers, made with mkfs.btrfs --rootdir --shrink: exactly the size its content needs,
with no guess and no resize afterwards. (btrfs-progs 6.2, Debian 12's, cannot compress files in
--rootdir mode; compression would need a loop mount of a guessed size.)"""

from ..tools import run

fstype = "btrfs"


def build(source: bytes, out: bytes, sizes=None):
    with open(out, "wb"):
        pass            # mkfs.btrfs wants the file to exist; --shrink sets its size
    run(["mkfs.btrfs", "-q", "-f", "--rootdir", source, "--shrink", out], "mkfs.btrfs")
