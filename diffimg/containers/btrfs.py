"""btrfs containers, made with mkfs.btrfs --rootdir --shrink: exactly the size its content needs,
with no guess and no resize afterwards. (btrfs-progs 6.2, Debian 12's, cannot compress files in
--rootdir mode; compression would need a loop mount of a guessed size.)"""

from .. import tools

fstype = "btrfs"


def build(source: bytes, out: bytes, sizes=None):
    start(source, out).wait()


def start(source: bytes, out: bytes):
    """mkfs.btrfs in the background; it needs nothing from the scan, so it can run beside it."""
    with open(out, "wb"):
        pass            # mkfs.btrfs wants the file to exist; --shrink sets its size
    return tools.start(["mkfs.btrfs", "-q", "-f", "--rootdir", source, "--shrink", out], "mkfs.btrfs")
