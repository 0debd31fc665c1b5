"""Protected paths (--keep PATTERN): target paths a restore or apply leaves exactly as they are.

A pattern is anchored at the target's root ('/home', '/Users/*/Documents', '/pagefile.sys'; the
leading '/' is optional); each component is a shell-style glob that never matches across '/'.
The kept paths are found in the target before anything is planned, without following symlinks;
a kept folder takes its whole subtree.
"""

import errno
import fnmatch
import os
import re
import stat

from .errors import DiffimgError
from .manifest import STATE_DIR, unsafe_path
from .safefs import open_dir

DEFAULT_EXT_KEEP = "/lost+found"          # mkfs makes it; fsck needs it
_EXT_FSTYPES = frozenset({"ext2", "ext3", "ext4"})
_GLOB = re.compile(rb"[*?\[]")


class BadPattern(DiffimgError, ValueError):
    exit_code = 2


def parse(patterns) -> list[list[bytes]]:
    """Each pattern as its components; a clear error for one that names no path below the root."""
    parsed = []
    for pattern in patterns:
        raw = os.fsencode(pattern).strip(b"/")
        parts = raw.split(b"/")
        if not raw or unsafe_path(raw):
            raise BadPattern(f"--keep {pattern!r}: give a path below the target's root")
        parsed.append(parts)
    return parsed


def literal_pattern(path: bytes) -> bytes:
    """A pattern that matches path alone: its glob characters bracketed."""
    return _GLOB.sub(lambda m: b"[" + m.group() + b"]", path)


def defaults_for(filesystem_type: str | None) -> list[str]:
    """The paths kept without being asked: lost+found at the root of an ext2/3/4 target."""
    return [DEFAULT_EXT_KEEP] if filesystem_type in _EXT_FSTYPES else []


def find_kept(root_fd: int, patterns) -> set[bytes]:
    """The target paths the patterns match (entries of any kind; folders are entered only when
    they are real folders, never through a symlink)."""
    found: set[bytes] = set()
    for parts in parse(patterns):
        _expand(root_fd, b"", parts, found)
    return found


def _expand(root_fd: int, prefix: bytes, parts: list[bytes], found: set):
    head, rest = parts[0], parts[1:]
    try:
        dir_fd = open_dir(root_fd, prefix)
    except OSError:
        return                              # not a real folder: nothing below it is kept
    try:
        if _GLOB.search(head):
            regex = re.compile(fnmatch.translate(head.decode("latin-1")).encode("latin-1"), re.DOTALL)
            names = [n for n in map(os.fsencode, os.listdir(dir_fd)) if regex.match(n)]
        else:
            names = [head]
        for name in sorted(names):
            if not prefix and name == STATE_DIR:
                continue
            try:
                st = os.lstat(name, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue
                raise
            path = prefix + b"/" + name if prefix else name
            if not rest:
                found.add(path)
            elif stat.S_ISDIR(st.st_mode):
                _expand(root_fd, path, rest, found)
    finally:
        os.close(dir_fd)


class Kept:
    """The kept paths of one target: is a path kept (itself or below a kept folder), does a
    folder hold a kept path."""

    def __init__(self, paths: set[bytes]):
        self.paths = paths
        self._prefixes = tuple(p + b"/" for p in paths)
        self.holders = set()                # folders above kept paths
        for p in paths:
            while b"/" in p:
                p = p.rpartition(b"/")[0]
                self.holders.add(p)
        if paths:
            self.holders.add(b"")

    def __bool__(self):
        return bool(self.paths)

    def covers(self, path: bytes) -> bool:
        return path in self.paths or path.startswith(self._prefixes)

    def holds(self, path: bytes) -> bool:
        return path in self.holders
