"""What a Windows tree's image leaves out by default: files Windows makes again by itself and
folders of machine-local state. The list is wimlib's default capture configuration (wimlib's
wimcapture manual, "DEFAULT CAPTURE CONFIGURATION"), anchored at the tree's root.

A scan of a Windows tree (osinfo.detect says so) leaves these paths out with their subtrees,
whatever their case: an image does not hold them, compare does not report them, and a restore
or status leaves them on a Windows target as they are."""

import os

from .osinfo import detect

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
    if detect(os.fsencode(root)).get("family") != "windows":
        return set()
    return present_in(root)


def present_in(root) -> set[bytes]:
    """The DEFAULT_LEFT_OUT paths the tree at root has, as its own names spell them (a restore
    of a Windows image leaves them on its target, Windows or not yet)."""
    root = os.fsencode(root)
    found = set()
    for wanted in DEFAULT_LEFT_OUT:
        path = _spelt(root, wanted)
        if path is not None:
            found.add(path)
    return found


def _spelt(root: bytes, wanted: bytes) -> bytes | None:
    """wanted as the tree spells it (each name matched without regard to case), or None."""
    path = b""
    for part in wanted.split(b"/"):
        try:
            names = os.listdir(os.path.join(root, path) if path else root)
        except OSError:
            return None
        match = [n for n in names if n.lower() == part.lower()]
        if not match:
            return None
        path = os.path.join(path, match[0]) if path else match[0]
    return path
