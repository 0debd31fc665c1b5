"""Which recorded digests a scan of a tree may trust instead of hashing (diff, compare, scan).

By default a file's recorded digest is trusted only with a stat proof taken on the very
filesystem being scanned (statcache.py): from the stat section of the manifest the tree is
compared with, or from the tree's own state (state.py) when diffimg last made it that very tree.
Every other file is hashed. With trust_mtime, size and mtime alone are trusted, as rsync and
wimlib do: right for a copy of the tree, but a change that kept both is missed.
"""

import contextlib
import os

from ..errors import ManifestError, show_path
from ..system.safefs import DIR_FLAGS
from ..tree import statcache
from .state import recorded_hints, usable_state


def tree_hints(tree, open_reader, tree_id: bytes | None, trust_mtime: bool, warn=None):
    """(hints, trust_mtime) for scan(tree). open_reader() opens the recorded manifest afresh (a
    ManifestReader); tree_id: its tree ID when known without reading it through."""
    if trust_mtime:
        return _hints(open_reader, None), True
    fs = statcache.identity(tree)
    if fs is not None:
        with open_reader() as m:
            section = m.stat_section()
        if section is not None and section.filesystem == fs:
            return _hints(open_reader, fs), False
        if tree_id is None and section is not None:
            tree_id = section.tree_id
        if tree_id is not None and _state_of(tree, fs) == tree_id:
            return _state_hints(tree, fs), False
    if warn is not None:
        warn(f"{show_path(tree)}: no stat cache of this filesystem: hashing every file "
             "(--trust-mtime trusts size and mtime, for copies)")
    return None, False


def _hints(open_reader, fs):
    with open_reader() as m:
        yield from m.file_hints(fs)


def _state_of(tree, fs) -> bytes | None:
    """The tree ID diffimg last made tree, when its state is complete and usable."""
    try:
        root_fd = os.open(tree, DIR_FLAGS)
    except OSError:
        return None
    try:
        state, _ = usable_state(root_fd, fs)
        return state.tree_id if state is not None else None
    except (OSError, ManifestError):
        return None
    finally:
        os.close(root_fd)


def _state_hints(tree, fs):
    root_fd = os.open(tree, DIR_FLAGS)
    try:
        yield from recorded_hints(root_fd, fs)
    finally:
        with contextlib.suppress(OSError):
            os.close(root_fd)
