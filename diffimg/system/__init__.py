"""The machine: safe file access beneath a root (safefs), filesystems and partitions, loop
devices, external tools, worker processes, HTTP, this run's temporary files.

The tools diffimg runs by name (blkid, sfdisk, losetup, mkfs.*, partclone.*) live in the sbin
folders, which a normal user's PATH lacks on Debian: they are appended to PATH (after the
user's own folders, which still come first) when this package is loaded."""

import os

SYSTEM_TOOL_FOLDERS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def _find_system_tools():
    folders = os.environ.get("PATH", os.defpath).split(os.pathsep)
    missing = [f for f in SYSTEM_TOOL_FOLDERS if f not in folders]
    if missing:
        os.environ["PATH"] = os.pathsep.join([*filter(None, folders), *missing])


_find_system_tools()
