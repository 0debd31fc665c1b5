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

from ..entry import Kind
from ..errors import BadUsage, show_path
from ..system.fsmeta import mount_of
from ..system.safefs import open_dir, regular_files
from ..tree.manifest import STATE_DIR, unsafe_path
from ..windows.ntfs import is_ntfs

DEFAULT_EXT_KEEP = "/lost+found"          # mkfs makes it; fsck needs it
_EXT_FSTYPES = frozenset({"ext2", "ext3", "ext4"})
_GLOB = re.compile(rb"[*?\[]")


class BadPattern(BadUsage):
    """A --keep pattern that names no path below the root."""


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
        _expand(root_fd, b"", parts, matched, fold_case)
        if not matched and unmatched is not None:
            unmatched.append(pattern)
        found |= matched
    return found


def _matcher(head: bytes, fold: bool):
    """A match function for the names a pattern component matches (a glob, or with fold a
    name in any case); None for a literal name matched as it is."""
    if not fold and not _GLOB.search(head):
        return None
    compiled = _component_regex(head, fold)
    return lambda name: compiled.match(_text(name, fold)) is not None


def _text(name: bytes, fold: bool) -> str:
    text = name.decode("utf-8", "surrogateescape")
    return _upper(text) if fold else text


def _upper(text: str) -> str:
    """text in capitals as NTFS compares names: each character by its simple upper case, and
    only where that goes both ways (the long s, the dotless i, the micro sign and the Kelvin
    sign are names of their own there, as in NTFS's $UpCase table, not s, i, mu or K)."""
    return "".join(up if len(up := c.upper()) == 1 and up.lower() == c else c for c in text)


def _expand(root_fd: int, prefix: bytes, parts: list[bytes], found: set, fold: bool):
    head, rest = parts[0], parts[1:]
    try:
        dir_fd = open_dir(root_fd, prefix)
    except OSError:
        return                              # not a real folder: nothing below it is kept
    try:
        match = _matcher(head, fold)
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
                _expand(root_fd, path, rest, found, fold)
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


class Matcher:
    """Whether a tree path is covered by a pattern (matched, or below a matched folder), read
    from the path alone: for the entries of a recorded tree, which is not on disk."""

    def __init__(self, patterns, fold_case: bool = False):
        self._fold = fold_case
        self._patterns = [[_component_regex(part, fold_case) for part in parts]
                          for parts in parse(patterns)]

    def covers(self, path: bytes) -> bool:
        if not path:
            return False
        names = path.split(b"/")
        return any(len(names) >= len(parts) and all(
            regex.match(_text(name, self._fold)) for regex, name in zip(parts, names))
            for parts in self._patterns)


def _component_regex(part: bytes, fold: bool):
    text = _text(part, fold)
    return re.compile(fnmatch.translate(text) if _GLOB.search(part) else re.escape(text) + r"\Z",
                      re.DOTALL)


class NotATree(BadUsage):
    """Paths kept from the chain that would not make a tree with the scanned ones."""


def linked_inodes(root_fd: int, paths) -> set[int]:
    """The inode numbers of the regular files with other links at or below paths (found
    beneath root_fd, nothing followed)."""
    return {st.st_ino for st in regular_files(root_fd, paths) if st.st_nlink > 1}


def chain_kept(scanned, chain_entries, matcher: Matcher, tree_name: str, kept_links=frozenset()):
    """The scanned entries (the kept paths left out of the scan), with the chain's entries at the
    paths matcher covers in their place, in canonical order: a tree whose kept paths are as the
    chain has them (diff --keep: neither stored nor deleted). NotATree when a kept entry's
    folder is not a folder in the tree, or a hardlink group crosses a kept path's edge (in
    the chain, or in the tree: kept_links, the inodes of linked files at kept paths)."""
    from ..tree.merge import merge_join
    folders = {b""}
    for mine, chains in merge_join(scanned, (e for e in chain_entries if matcher.covers(e.path))):
        if chains is None:
            if mine.kind is Kind.FILE and mine.ino in kept_links:
                raise NotATree(f"{show_path(mine.path)} in {tree_name} is a hardlink of a file "
                               "at a kept path: keep both or neither")
            if mine.link is not None and matcher.covers(mine.link):
                raise NotATree(f"{show_path(mine.path)} in {tree_name} is a hardlink of "
                               f"{show_path(mine.link)}, a kept path: keep both or neither")
            if mine.kind is Kind.DIR:
                folders.add(mine.path)
            yield mine
            continue
        folder = chains.path.rpartition(b"/")[0]
        if not matcher.covers(folder) and folder not in folders:
            raise NotATree(f"{show_path(chains.path)} is kept as the chain has it, but "
                           f"{show_path(folder)} is not a folder in {tree_name}")
        if chains.link is not None and not matcher.covers(chains.link):
            raise NotATree(f"{show_path(chains.path)}, a kept path, is a hardlink of "
                           f"{show_path(chains.link)}, which is not kept: keep both or neither")
        yield chains
