"""NTFS metadata, through ntfs-3g's xattrs: what a Windows partition holds beyond POSIX.

On a volume mounted with ntfs-3g each file and folder has, besides its content and its named
streams (user.* xattrs with streams_interface=xattr, ntfs-3g's default), a security descriptor,
DOS attributes, a creation time, a DOS short name and reparse data (junctions, symlinks). ntfs-3g
gives them as system.ntfs_* xattrs that it never lists: they are asked for by name (NAMES), and
recorded in the entry's xattrs with the others, so they count in the tree ID and a change to any
of them is a change (spec/manifest.md). system.ntfs_times_be is not recorded: it holds the last
access time, which a read changes; the last write time is the entry's mtime.

Restore sets them after everything else of an entry (SET_ORDER): chown and chmod rewrite the
security descriptor, utime the times, and the read-only attribute blocks writes on Windows.
"""

import ctypes
import errno
import os
import struct

from .entry import Kind

ACL = b"system.ntfs_acl"                     # the security descriptor, self-relative
ATTRIB = b"system.ntfs_attrib_be"            # DOS attributes, 32 bits big-endian
CRTIME = b"system.ntfs_crtime_be"            # creation time, NTFS units big-endian
DOS_NAME = b"system.ntfs_dos_name"           # the 8.3 short name, when it has one
REPARSE = b"system.ntfs_reparse_data"        # reparse data, raw (a junction keeps C:\...)

NAMES = (ACL, ATTRIB, CRTIME, DOS_NAME, REPARSE)
# the reparse data comes first: it is set when the entry is made (make_reparse_point); the
# short name is set apart, once the entry has its own name (set_short_name)
SET_ORDER = (REPARSE, ACL, CRTIME, ATTRIB)

FILE_ATTRIBUTE_DIRECTORY = 0x10
# the POSIX modes an NTFS entry is recorded with, by kind (Volume.fit); others: 0o644
MODES = {Kind.DIR: 0o755, Kind.SYMLINK: 0o777}
XATTR_SIZE_MAX = 65536

_LIBC = ctypes.CDLL(None, use_errno=True)


def get_xattr(target, name: bytes, follow: bool = False) -> bytes:
    """The xattr name of target (an fd, or a path followed only if follow), read with a buffer
    of the largest size Linux allows: ntfs-3g answers EIO, not ERANGE, to a buffer too small,
    and os.getxattr starts with 128 bytes."""
    buffer = ctypes.create_string_buffer(XATTR_SIZE_MAX)
    if isinstance(target, int):
        n = _LIBC.fgetxattr(target, name, buffer, XATTR_SIZE_MAX)
    else:
        call = _LIBC.getxattr if follow else _LIBC.lgetxattr
        n = call(os.fsencode(target), name, buffer, XATTR_SIZE_MAX)
    if n < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), None if isinstance(target, int) else target)
    return buffer.raw[:n]


def is_ntfs(path) -> bool:
    """Whether path is on a volume that ntfs-3g serves (it answers for system.ntfs_attrib_be)."""
    try:
        return len(get_xattr(path, ATTRIB)) == 4
    except OSError:
        return False


class Volume:
    """How a tree's entries are read where it lies: on an ntfs-3g volume, the NTFS names are
    asked for (asked), and a junction's symlink, which ntfs-3g points into its mount point, is
    recorded without that mount point (the raw reparse data is the junction)."""

    def __init__(self, asked: tuple = (), mount_point: bytes | None = None):
        self.asked = asked
        self._prefix = mount_point.rstrip(b"/") + b"/" if mount_point is not None else None

    @classmethod
    def of(cls, where, mount_point) -> "Volume":
        """where: a path or fd on the volume; mount_point: where its filesystem is mounted."""
        if not is_ntfs(where):
            return cls()
        return cls(NAMES, os.fsencode(mount_point or "/"))

    def recorded_target(self, target: bytes, xattrs: dict | None) -> bytes:
        prefix = self._prefix
        if prefix is not None and target.startswith(prefix) and is_reparse_point(xattrs):
            return target[len(prefix) - 1:]
        return target

    def fit(self, entry):
        """The entry (with its xattrs and target read) as it is recorded from this volume. NTFS
        keeps no POSIX mode or owner: ntfs-3g shows those of its mount options (the security
        descriptor, recorded, is the truth), so an NTFS entry is recorded with fixed ones
        (MODES, owner root) whatever the mount, and a restore onto NTFS converges."""
        if not self.asked:
            return entry
        entry.mode = MODES.get(entry.kind, 0o644)
        entry.uid = entry.gid = 0
        if entry.target is not None:
            entry.target = self.recorded_target(entry.target, entry.xattrs)
        elif is_reparse_point(entry.xattrs):
            # one ntfs-3g shows as a file or folder (deduplicated, cloud or compressed files):
            # its content is what it shows, restored as such
            entry.xattrs = without_reparse(entry.xattrs)
        return entry


def is_ntfs_name(name: bytes) -> bool:
    return name in NAMES


def without_ntfs(xattrs: dict | None) -> dict | None:
    """xattrs less the NTFS ones (for a target that cannot hold them)."""
    if not xattrs:
        return xattrs
    kept = {k: v for k, v in xattrs.items() if k not in NAMES}
    return kept or None


LEFT_OUT = ("the image holds NTFS attributes (security descriptors, DOS attributes, creation "
            "times, short names, reparse data) that the target's filesystem cannot hold: they "
            "are left out (restore onto an NTFS volume mounted with ntfs-3g to keep them)")


def fit_for_plain_target(entries, warn):
    """The entries without their NTFS xattrs, for a target that is not NTFS; warn(LEFT_OUT)
    once, at the first entry that had some."""
    warned = False
    for e in entries:
        if e is not None and e.xattrs and any(name in NAMES for name in e.xattrs):
            e.xattrs = without_ntfs(e.xattrs)
            if not warned:
                warn(LEFT_OUT)
                warned = True
        yield e


def without_reparse(xattrs: dict) -> dict | None:
    kept = {k: v for k, v in xattrs.items() if k != REPARSE}
    return kept or None


def has_descriptor(xattrs: dict | None) -> bool:
    return bool(xattrs) and ACL in xattrs


def is_reparse_point(xattrs: dict | None) -> bool:
    return bool(xattrs) and REPARSE in xattrs


def is_directory(xattrs: dict) -> bool:
    """Whether the NTFS attributes say folder (a junction is a folder, ntfs-3g shows a symlink)."""
    value = xattrs.get(ATTRIB)
    return value is not None and len(value) == 4 and bool(
        struct.unpack(">I", value)[0] & FILE_ATTRIBUTE_DIRECTORY)


def set_in_order(target, xattrs: dict | None, follow: bool = True):
    """Set the NTFS xattrs among xattrs on target (an fd or a path), in SET_ORDER; the reparse
    data only when the entry does not have it already (it is set when the entry is made)."""
    if not xattrs:
        return
    for name in SET_ORDER:
        value = xattrs.get(name)
        if value is None:
            continue
        if name == REPARSE and _current(target, name, follow) == value:
            continue
        os.setxattr(target, name, value, follow_symlinks=follow)


def set_short_name(path: bytes, xattrs: dict | None):
    """Give the entry at path (not followed) its DOS short name, if it has one: the name
    belongs to a link, not to the inode; ntfs-3g drops it with a temporary name, and refuses
    it on a temporary name while the old entry still has it."""
    if xattrs and DOS_NAME in xattrs and _current(path, DOS_NAME, False) != xattrs[DOS_NAME]:
        os.setxattr(path, DOS_NAME, xattrs[DOS_NAME], follow_symlinks=False)


def make_reparse_point(dir_fd: int, name: bytes, xattrs: dict):
    """A new reparse point named name in dir_fd: an empty folder or file (as its attributes
    say) given the reparse data, which ntfs-3g then shows as a symlink."""
    if is_directory(xattrs):
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    else:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd))
    os.setxattr(b"/proc/self/fd/%d/%s" % (dir_fd, name), REPARSE, xattrs[REPARSE],
                follow_symlinks=False)
    # the kernel still holds it as a folder or file: its first lookup fails (EIO) and drops
    # that inode, and the next finds the symlink
    try:
        os.lstat(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise


def _current(target, name, follow):
    try:
        return get_xattr(target, name, follow)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise
