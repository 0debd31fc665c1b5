"""What a Windows tree's image leaves out by default: files Windows makes again by itself and
folders of machine-local state. The list is wimlib's default capture configuration (wimlib's
wimcapture manual, "DEFAULT CAPTURE CONFIGURATION"), anchored at the tree's root.

A scan of a Windows tree (osinfo.detect says so) leaves these paths out with their subtrees,
whatever their case: an image does not hold them, compare does not report them, and a restore
or status leaves them on a Windows target as they are."""

import os

from ..system.osinfo import is_windows

DEFAULT_LEFT_OUT = (
    b"$ntfs.log",
    b"hiberfil.sys",
    b"pagefile.sys",
    b"swapfile.sys",
    b"System Volume Information",
    b"RECYCLER",
    b"$Recycle.Bin",
    b"Windows/CSC",
)


def left_out_in(root) -> set[bytes]:
    """The DEFAULT_LEFT_OUT paths the tree at root has, as its own names spell them; none
    unless the tree holds Windows."""
    if not is_windows(root):
        return set()
    return present_in(root)


def present_in(root) -> set[bytes]:
    """The DEFAULT_LEFT_OUT paths the tree at root has, every spelling of each (a POSIX
    namespace may hold pagefile.sys and PAGEFILE.SYS side by side) (a restore of a Windows
    image leaves them on its target, Windows or not yet)."""
    root = os.fsencode(root)
    found = set()
    for wanted in DEFAULT_LEFT_OUT:
        found.update(_spellings(root, wanted.split(b"/")))
    return found


def _spellings(root: bytes, parts: list, path: bytes = b"") -> list:
    """The paths below root whose names are parts, each in any case."""
    try:
        names = os.listdir(os.path.join(root, path) if path else root)
    except OSError:
        return []
    found = []
    for name in names:
        if name.lower() != parts[0].lower():
            continue
        here = os.path.join(path, name) if path else name
        found += [here] if len(parts) == 1 else _spellings(root, parts[1:], here)
    return found
