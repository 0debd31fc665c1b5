"""Entry: the in-memory record of one tree entry, and the canonical order of paths.

Paths are bytes relative to the tree's root (the root itself is b""), times are integer
nanoseconds. A field that does not apply to a kind is None: unknown means absent, never a default.
"""

import enum
import stat
from dataclasses import dataclass, field
from typing import NamedTuple


class Kind(enum.IntEnum):
    DIR = 1
    FILE = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5
    CHAR = 6
    BLOCK = 7


KIND_OF_FMT = {
    stat.S_IFDIR: Kind.DIR,
    stat.S_IFREG: Kind.FILE,
    stat.S_IFLNK: Kind.SYMLINK,
    stat.S_IFIFO: Kind.FIFO,
    stat.S_IFSOCK: Kind.SOCKET,
    stat.S_IFCHR: Kind.CHAR,
    stat.S_IFBLK: Kind.BLOCK,
}
FMT_OF_KIND = {kind: fmt for fmt, kind in KIND_OF_FMT.items()}

ACL_ACCESS = b"system.posix_acl_access"
ACL_DEFAULT = b"system.posix_acl_default"


@dataclass(slots=True)
class Entry:
    path: bytes
    kind: Kind
    mode: int                      # permission bits with setuid/setgid/sticky (st_mode & 0o7777)
    uid: int
    gid: int
    mtime_ns: int
    size: int | None = None        # files
    digest: bytes | None = None    # files: xxh3-128 of the content, 16 bytes
    target: bytes | None = None    # symlinks
    rdev: int | None = None        # character and block devices
    xattrs: dict[bytes, bytes] | None = None   # every namespace, sorted by name; None when none
    link: bytes | None = None      # a later member of a hardlink group: the first member's path
    sparse: bool | None = None     # files: True when the file has holes (restore it sparse)
    # where it was read, for a stat cache (statcache.py); not part of the record, not compared
    ino: int | None = field(default=None, compare=False, repr=False)
    ctime_ns: int | None = field(default=None, compare=False, repr=False)
    nlink: int | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> bytes:
        return self.path.rpartition(b"/")[2]


class Hint(NamedTuple):
    """What a quick check needs of a recorded file: a file at path with this size and mtime_ns
    (and, where the record has a trusted stat, this inode number and ctime_ns on the same
    filesystem) is taken to hold this digest (and holes, when sparse)."""
    path: bytes
    size: int
    mtime_ns: int
    digest: bytes
    sparse: bool | None
    ino: int | None = None         # None: no stat proof (statcache.py)
    ctime_ns: int | None = None


def same_meta(a: Entry, b: Entry) -> bool:
    """Same owner, mode, mtime and xattrs: what setting metadata changes in place."""
    return (a.mode == b.mode and a.uid == b.uid and a.gid == b.gid and a.mtime_ns == b.mtime_ns
            and (a.xattrs or None) == (b.xattrs or None))


def inode_fields(e: Entry) -> tuple:
    """What the members of one hardlink group share: the inode's kind, metadata and content."""
    xattrs = tuple(e.xattrs.items()) if e.xattrs else None
    return (e.kind, e.mode, e.uid, e.gid, e.mtime_ns, e.size, e.digest, e.target, e.rdev,
            xattrs, bool(e.sparse))


def follow(member: Entry, leader: Entry) -> Entry:
    """member, a later link of leader's hardlink group, with its link to leader and the inode's
    fields (inode_fields, and the ctime of its stat proof) taken from leader."""
    member.link = leader.path
    member.xattrs, member.target, member.rdev = leader.xattrs, leader.target, leader.rdev
    member.digest, member.sparse = leader.digest, leader.sparse
    member.size, member.mtime_ns = leader.size, leader.mtime_ns
    member.mode, member.uid, member.gid = leader.mode, leader.uid, leader.gid
    member.ctime_ns = leader.ctime_ns
    return member


def same_object(a: Entry, b: Entry) -> bool:
    """Same symlink target, device number and hardlink group: what defines a non-file object
    besides its kind (a symlink, FIFO or device can be hardlinked too)."""
    return a.target == b.target and a.rdev == b.rdev and a.link == b.link


def entry_from_stat(path: bytes, st) -> Entry:
    """An Entry from an lstat result; content, target and xattrs are filled in by the caller."""
    kind = KIND_OF_FMT[stat.S_IFMT(st.st_mode)]
    entry = Entry(path, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
    entry.ino, entry.ctime_ns, entry.nlink = st.st_ino, st.st_ctime_ns, st.st_nlink
    if kind is Kind.FILE:
        entry.size = st.st_size
    elif kind is Kind.CHAR or kind is Kind.BLOCK:
        entry.rdev = st.st_rdev
    return entry


def path_key(path: bytes) -> bytes:
    """Canonical order: by path components, so a folder is followed by its whole subtree.

    Comparing the paths with each '/' turned into NUL orders them exactly as comparing their
    lists of components does (NUL sorts before any byte a name can hold), and much faster."""
    return path.replace(b"/", b"\0")


def join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


def content_files(entries):
    """(path, digest, size) of each file that holds its own content: not a later hardlink
    member."""
    for e in entries:
        if e.kind is Kind.FILE and e.link is None:
            yield e.path, e.digest, e.size
