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
from .fsmeta import mount_of
from .manifest import STATE_DIR, unsafe_path
from .ntfs import is_ntfs
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


# filesystems whose names match case-insensitively, as Windows (and a Windows admin) sees
# them: a pattern matches there whatever the case of its letters
CASE_INSENSITIVE_FSTYPES = frozenset({"ntfs", "ntfs3", "vfat", "msdos", "exfat", "fat"})


def folds_case(root_fd: int, windows_tree: bool) -> bool:
    """Whether patterns match names in any case on this target: a Windows tree (read from NTFS),
    or a target on NTFS or FAT, whose names Windows matches so."""
    fstype = mount_of(os.fstat(root_fd).st_dev).get("fstype", "")
    return windows_tree or fstype in CASE_INSENSITIVE_FSTYPES or \
        (fstype.startswith("fuse") and is_ntfs(root_fd))


def find_kept(root_fd: int, patterns, fold_case: bool = False, unmatched: list | None = None
              ) -> set[bytes]:
    """The target paths the patterns match (entries of any kind; folders are entered only when
    they are real folders, never through a symlink); with fold_case, whatever the case of their
    letters (NTFS, FAT). Each pattern that matches nothing is added to unmatched."""
    found: set[bytes] = set()
    for pattern, parts in zip(patterns, parse(patterns)):
        matched: set[bytes] = set()
        _expand(root_fd, b"", parts, matched, re.IGNORECASE if fold_case else 0)
        if not matched and unmatched is not None:
            unmatched.append(pattern)
        found |= matched
    return found


def _matcher(head: bytes, flags: int):
    """A match function for the names a pattern component matches (a glob, or with flags a
    name in any case); None for a literal name matched as it is."""
    if not flags and not _GLOB.search(head):
        return None
    text = head.decode("utf-8", "surrogateescape")
    regex = fnmatch.translate(text) if _GLOB.search(head) else re.escape(text) + r"\Z"
    compiled = re.compile(regex, re.DOTALL | flags)
    return lambda name: compiled.match(name.decode("utf-8", "surrogateescape")) is not None


def _expand(root_fd: int, prefix: bytes, parts: list[bytes], found: set, flags: int):
    head, rest = parts[0], parts[1:]
    try:
        dir_fd = open_dir(root_fd, prefix)
    except OSError:
        return                              # not a real folder: nothing below it is kept
    try:
        match = _matcher(head, flags)
        names = [head] if match is None else [n for n in map(os.fsencode, os.listdir(dir_fd))
                                              if match(n)]
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
                _expand(root_fd, path, rest, found, flags)
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
