"""apply's check that a target is the tree a diff was made on, at the paths its delta touches.

Each delta record holds the parent's entry and the new one (spec/image.md), so the target is
checked against the parent at exactly those paths, plus the paths content is taken from, without
a scan: the cost grows with the change, not with the tree (planner.plan_delta then plans from the
records alone).
"""

import errno
import os
import stat

from ..entry import Entry, Kind, entry_from_stat, inode_fields, same_meta
from ..errors import ImageError, Refused, ScanError, show_path
from ..scan.hashing import hash_file
from ..system.fsmeta import read_xattrs
from ..system.safefs import Dirs, names_in, open_dir, proc_path, split
from ..tree.compare import entry_differences, is_xattr_label
from ..tree.delta import LINK, META, PARENT
from ..windows import ntfs

_ABSENT = (errno.ENOENT, errno.ENOTDIR)
SHOWN = 20     # differing paths a refusal names in its message (all are on the error)


def check_parent(root_fd: int, target: bytes, changes, checksum: bool = False,
                 proofs: dict | None = None, ntfs_attributes: bool = True):
    """Refuse (changing nothing) unless the target holds the parent's entry at every path the
    delta touches, and a file of the right size at every path content is taken from; the
    refusal names every path that differs. checksum: compare the content of those files too,
    not only their size and mtime. proofs: path -> (ino, ctime_ns) from the target's state
    (of the parent tree): the content of those files is compared unless their stat proves it.
    Returns the paths of meta records whose inode has other links (planner.plan_delta)."""
    dirs, source_dirs = Dirs(root_fd), Dirs(root_fd)   # two caches: the paths interleave
    volume = target_volume(root_fd, ntfs_attributes)
    afters = {c.path: c.after for c in changes}
    befores = {c.path: c.before for c in changes}
    differences: dict[bytes, str] = {}                 # path -> what differs, in delta order
    shared: set[bytes] = set()
    try:
        def content_check(path):
            if checksum:
                return True
            return None if proofs is None else proofs.get(path, True)

        def source_check(path):
            # content taken from the target is put in place by link or rename, unread: without
            # a state to prove it, it is hashed here (a source of other content would be found
            # only half-way through, or not at all)
            return True if checksum or proofs is None else proofs.get(path, True)
        # a source the delta also changes or deletes is read through its own record: hashed
        # as any source is, or a moved (or linked) file's other content of the same size and
        # mtime would be put in place unseen
        # (a hardlink's first member the delta keeps, a meta record's file, is linked to
        # unread: hashed too)
        sources = {c.source for c in changes if c.action in (PARENT, LINK)}
        for c in changes:
            check = source_check if c.path in sources else content_check
            found = _lookup(dirs, c.path, check(c.path) if c.before is not None else None, volume)
            problem = _differs(found, c.before)
            if problem:
                differences.setdefault(c.path, problem)
            elif c.action == META and found.kind is not Kind.DIR and found.nlink > 1:
                shared.add(c.path)
            if c.action == PARENT and c.source in afters:
                # the parent's content there is the source record's `before`
                source_before = befores.get(c.source)
                if source_before is None or source_before.kind is not Kind.FILE \
                        or source_before.digest != c.after.digest:
                    raise ImageError(f"{show_path(c.path)}: it takes content from "
                                     f"{show_path(c.source)}, whose parent entry does not hold "
                                     "it (a damaged image?)")
            if c.action == LINK and c.source in afters:
                leader = afters[c.source]       # made by the delta: the very inode, recorded
                if leader is None or leader.link is not None \
                        or inode_fields(leader) != inode_fields(c.after):
                    raise ImageError(f"{show_path(c.path)}: its hardlink's first member "
                                     f"{show_path(c.source)} is not the same inode (a damaged image?)")
            elif c.action in (PARENT, LINK) and c.source not in afters:
                # a hardlink's first member is linked to unread, as a moved file is renamed
                found = _lookup(source_dirs, c.source,
                                source_check(c.source) if c.after.kind is Kind.FILE else None, volume)
                if found is None or found.kind is not c.after.kind or found.size != c.after.size \
                        or (c.digest is not None and found.digest not in (None, c.digest)) \
                        or (c.action == LINK and not _same_inode(found, c.after)):
                    differences.setdefault(c.source, "is not the entry the diff takes content or "
                                           "a hardlink from")
    finally:
        dirs.close()
        source_dirs.close()
    if differences:
        _refuse(target, list(differences.items()))
    return shared


def _same_inode(have: Entry, want: Entry) -> bool:
    """The target's entry (content unread) is the inode a link record's member shares."""
    return same_meta(have, want) and have.target == want.target and have.rdev == want.rdev


def _refuse(target: bytes, differences: list[tuple[bytes, str]]):
    shown = "; ".join(f"{show_path(path) or '.'} {problem}" for path, problem in differences[:SHOWN])
    more = f"; and {len(differences) - SHOWN:,} more" if len(differences) > SHOWN else ""
    count = "1 path differs" if len(differences) == 1 else f"{len(differences):,} paths differ"
    raise Refused(f"{show_path(target)} is not the tree the diff was made on: {count} from the "
                  f"diff's parent: {shown}{more}; nothing was changed. restore makes the target "
                  "exact from any state (or apply --force)", differences=differences)


_UNREADABLE = b"unreadable"      # the digest of a file that could not be hashed: matches none


def _lookup(dirs: Dirs, path: bytes, content, volume: ntfs.Volume) -> Entry | None:
    """The target's entry at path (never through a symlink), or None when there is none. Its
    digest is read when content is True, or is a stat proof (ino, ctime_ns) that the file's
    stat does not equal; it is None when content is None or the proof holds. volume: how the
    target's entries are read (ntfs.Volume)."""
    parent, name = split(path)
    try:
        dir_fd = dirs.fd(parent)
        st = os.lstat(name, dir_fd=dir_fd) if path else os.fstat(dirs.root)
        e = entry_from_stat(path, st)
        # the root through "fd/N/.": a bare /proc/self/fd/N is a link, whose own xattrs are none
        where = proc_path(dir_fd, name) if path else proc_path(dirs.root, b".")
        e.xattrs = read_xattrs(where, volume.asked)
        if e.kind is Kind.SYMLINK:
            e.target = os.readlink(name, dir_fd=dir_fd)
        volume.fit(e)
    except OSError as exc:
        if exc.errno in _ABSENT or exc.errno == errno.ELOOP:
            return None            # a symlink where the parent has a folder: reported as absent
        raise ScanError(f"cannot read {show_path(path) or '.'} in the target: {exc.strerror}") \
            from None
    if e.kind is Kind.FILE and content is not None and (
            content is True or content != (st.st_ino, st.st_ctime_ns)):
        hashed = hash_file(where).content
        e.digest = hashed.digest if hashed is not None else _UNREADABLE
    return e


def _differs(have: Entry | None, want: Entry | None) -> str | None:
    """What makes the target's entry other than the parent's, or None when it matches. Holes and
    hardlink groups are not looked at; content only where it was read (a file that could not be
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
    if want.kind is Kind.FILE and have.digest is not None and have.digest != want.digest:
        return "has other content"
    return None


def untracked_below(root_fd: int, folders, recorded) -> list[tuple[bytes, str]]:
    """(path, why) of each entry the target holds below the folders (which the delta removes)
    that the parent tree lacks: removing the folder would lose it. recorded: a stream of the
    parent tree's entries (the target's state). Walked by fd, never through a symlink."""
    folders = [f for f in folders if f]
    if not folders:
        return []
    prefixes = tuple(f + b"/" for f in folders)
    known = {e.path for e in recorded if e.path.startswith(prefixes)}
    found = []
    for folder in folders:
        pending = [folder]
        while pending:
            rel = pending.pop()
            try:
                fd = open_dir(root_fd, rel)
            except OSError:
                continue                # not a real folder: check_parent names it
            try:
                for name in names_in(fd):
                    path = rel + b"/" + name
                    if path not in known:
                        found.append((path, f"is not in the diff's parent, and the diff removes "
                                            f"{show_path(folder)}, which holds it"))
                    elif stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                        pending.append(path)
            finally:
                os.close(fd)
    return found


def entry_at(root_fd: int, path: bytes) -> Entry | None:
    """The target's entry at path, with its xattrs (never through a symlink); None if absent."""
    dirs = Dirs(root_fd)
    try:
        return _lookup(dirs, path, None, target_volume(root_fd))
    finally:
        dirs.close()


def target_volume(root_fd: int, ntfs_attributes: bool = True) -> ntfs.Volume:
    """How the entries of the target open at root_fd are read (ntfs.Volume)."""
    return ntfs.Volume.of(root_fd, ntfs_attributes)
