"""Running the external tools an imaging server has (mksquashfs, mkfs.*, mount)."""

import os
import shutil
import subprocess

from .errors import NeedsRoot, OutputError, ToolError

# Debian package of each tool, for the error that says how to get it
PACKAGE = {"mksquashfs": "squashfs-tools", "unsquashfs": "squashfs-tools",
           "mkfs.btrfs": "btrfs-progs", "mkfs.ext4": "e2fsprogs", "mount": "mount",
           "umount": "mount"}


def run(argv: list, what: str) -> str:
    """Run a tool; its combined output on success, ToolError (or OutputError for a full disk)
    naming what failed otherwise."""
    if shutil.which(argv[0]) is None:
        raise ToolError(f"{argv[0]} is not installed (Debian package {PACKAGE.get(argv[0], argv[0])})")
    proc = subprocess.run([os.fsencode(a) if isinstance(a, bytes) else a for a in argv],
                          stdin=subprocess.DEVNULL, capture_output=True)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if proc.returncode != 0:
        lines = [" ".join(line.split()) for line in out.strip().splitlines() if line.strip()]
        detail = "; ".join(lines[-3:])[-400:] if lines else f"exit {proc.returncode}"
        if "No space left" in out or "ENOSPC" in out:
            raise OutputError(f"{what}: no space left on the device ({detail})")
        raise ToolError(f"{what} failed: {detail}")
    return out


def require_root(what: str):
    if os.geteuid() != 0:
        raise NeedsRoot(f"{what} needs root (it mounts the image read-only with a loop device)")
