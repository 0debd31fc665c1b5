"""apply's check that a target is the tree a diff was made on, at the paths its delta touches.

Each delta record holds the parent's entry and the new one (spec/image.md), so the target is
checked against the parent at exactly those paths, plus the paths content is taken from, without
a scan: the cost grows with the change, not with the tree (planner.plan_delta then plans from the
records alone).
"""

import errno
import os

from .compare import entry_differences, is_xattr_label
from .delta import LINK, PARENT
from .entry import Entry, Kind, entry_from_stat
from .errors import Refused, ScanError, show_path
from .fsmeta import read_xattrs
from .hashing import hash_file
from .safefs import Dirs, proc_path, split

_ABSENT = (errno.ENOENT, errno.ENOTDIR)
SHOWN = 20     # differing paths a refusal names in its message (all are on the error)


def check_parent(root_fd: int, target: bytes, changes, checksum: bool = False):
    """Refuse (changing nothing) unless the target holds the parent's entry at every path the
    delta touches, and a file of the right size at every path content is taken from; the
    refusal names every path that differs. checksum: compare the content of those files too,
    not only their size and mtime."""
    dirs, source_dirs = Dirs(root_fd), Dirs(root_fd)   # two caches: the paths interleave
    touched = {c.path for c in changes}
    differences: dict[bytes, str] = {}                 # path -> what differs, in delta order
    try:
        for c in changes:
            found = _lookup(dirs, c.path, checksum and c.before is not None)
            problem = _differs(found, c.before, checksum)
            if problem:
                differences.setdefault(c.path, problem)
            if c.action in (PARENT, LINK) and c.source not in touched:
                found = _lookup(source_dirs, c.source, checksum and c.after.kind is Kind.FILE)
                if found is None or found.kind is not c.after.kind or found.size != c.after.size \
                        or (checksum and c.action == PARENT and found.digest != c.digest):
                    differences.setdefault(c.source, "is not the entry the diff takes content or "
                                           "a hardlink from")
    finally:
        dirs.close()
        source_dirs.close()
    if differences:
        _refuse(target, list(differences.items()))


def _refuse(target: bytes, differences: list[tuple[bytes, str]]):
    shown = "; ".join(f"{show_path(path) or '.'} {problem}" for path, problem in differences[:SHOWN])
    more = f"; and {len(differences) - SHOWN:,} more" if len(differences) > SHOWN else ""
    count = "1 path differs" if len(differences) == 1 else f"{len(differences):,} paths differ"
    raise Refused(f"{show_path(target)} is not the tree the diff was made on: {count} from the "
                  f"diff's parent: {shown}{more}; nothing was changed. restore makes the target "
                  "exact from any state (or apply --force)", differences=differences)


def _lookup(dirs: Dirs, path: bytes, with_digest: bool) -> Entry | None:
    """The target's entry at path (never through a symlink), or None when there is none."""
    parent, name = split(path)
    try:
        dir_fd = dirs.fd(parent)
        st = os.lstat(name, dir_fd=dir_fd) if path else os.fstat(dirs.root)
        e = entry_from_stat(path, st)
        # the root through "fd/N/.": a bare /proc/self/fd/N is a link, whose own xattrs are none
        where = proc_path(dir_fd, name) if path else proc_path(dirs.root, b".")
        e.xattrs = read_xattrs(where)
        if e.kind is Kind.SYMLINK:
            e.target = os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _ABSENT or exc.errno == errno.ELOOP:
            return None            # a symlink where the parent has a folder: reported as absent
        raise ScanError(f"cannot read {show_path(path) or '.'} in the target: {exc.strerror}") \
            from None
    if e.kind is Kind.FILE and with_digest:
        content = hash_file(where).content
        e.digest = content.digest if content is not None else None
    return e


def _differs(have: Entry | None, want: Entry | None, checksum: bool) -> str | None:
    """What makes the target's entry other than the parent's, or None when it matches. Holes and
    hardlink groups are not looked at; content only with checksum (a file that could not be
    hashed has other content)."""
    if want is None:
        return None if have is None else "exists, but the diff's parent has nothing there"
    if have is None:
        return "is missing"
    fields = entry_differences(have, want)
    if "kind" in fields:
        return f"is a {have.kind.name.lower()}, not a {want.kind.name.lower()}"
    for name in fields:
        if name == "mtime_ns":
            return "has another mtime"
        if is_xattr_label(name):
            return "has other xattrs or ACLs"
        if name not in ("content", "hardlink", "sparse"):
            return f"has another {name}"
    if checksum and want.kind is Kind.FILE and have.digest != want.digest:
        return "has other content"
    return None
