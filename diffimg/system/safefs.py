"""Operations inside a target tree that never leave it.

Every path is resolved from the opened target root one component at a time, with O_NOFOLLOW
and O_DIRECTORY, so a symlink planted in the target (esc -> /etc) is never followed: opening
through it fails, and the executor replaces it instead. Names are handed to *at() system calls
with the folder's fd; xattrs, which have no *at() call, go through /proc/self/fd/N/NAME, which the
kernel resolves to that very folder.
"""

import ctypes
import errno
import os
import stat

from ..entry import KIND_OF_FMT, Entry, Kind
from ..windows import ntfs, streams

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


_NOT_NAMES = (b"", b".", b"..")


def _name(part: bytes) -> bytes:
    """part, when it names an entry inside its folder (never the folder itself or its parent)."""
    if part in _NOT_NAMES:
        raise OSError(errno.EINVAL, "not a name inside the target", part)
    return part


def open_dir(root_fd: int, rel: bytes) -> int:
    """A new fd for the folder rel (b"" for the root itself) under root_fd."""
    fd = os.dup(root_fd)
    try:
        for part in rel.split(b"/") if rel else ():
            child = os.open(_name(part), DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class Dirs:
    """Folder fds along the current path, reused while operations move in canonical order.
    Kept as one list of (name, fd) pairs, and an fd leaves the list before it is closed: a
    Ctrl-C between any two steps leaves nothing that a later close() would close twice."""

    def __init__(self, root_fd: int):
        self.root = root_fd
        self._open: list[tuple[bytes, int]] = []

    def fd(self, rel_dir: bytes) -> int:
        parts = rel_dir.split(b"/") if rel_dir else []
        keep = 0
        while keep < len(self._open) and keep < len(parts) and self._open[keep][0] == parts[keep]:
            keep += 1
        self._drop(keep)
        for part in parts[keep:]:
            parent = self._open[-1][1] if self._open else self.root
            self._open.append((part, os.open(_name(part), DIR_FLAGS, dir_fd=parent)))
        return self._open[-1][1] if self._open else self.root

    def _drop(self, keep: int):
        while len(self._open) > keep:
            os.close(self._open.pop()[1])

    def close(self):
        """Forget every cached fd (also needed after folders were removed or replaced)."""
        self._drop(0)


def split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.rpartition(b"/")
    return parent, name


def proc_path(dir_fd: int, name: bytes) -> bytes:
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def regular_files(root_fd: int, paths, subtrees: bool = True):
    """The stat results of the regular files at paths (relative to root_fd) and, with subtrees,
    below the folders among them; found without following anything, what cannot be read
    passed over."""
    for path in paths:
        folder, _, name = path.rpartition(b"/")
        try:
            parent = open_dir(root_fd, folder)
        except OSError:
            continue
        try:
            st = os.lstat(name, dir_fd=parent)
            if stat.S_ISREG(st.st_mode):
                yield st
            elif subtrees and stat.S_ISDIR(st.st_mode):
                for _, _, files, dir_fd in os.fwalk(name, dir_fd=parent, follow_symlinks=False):
                    for file in files:
                        try:
                            st = os.lstat(file, dir_fd=dir_fd)
                        except OSError:
                            continue
                        if stat.S_ISREG(st.st_mode):
                            yield st
        except OSError:
            pass
        finally:
            os.close(parent)


def pwrite_all(fd: int, data, offset: int):
    """Write all of data at offset: a write to a filling disk may take only part of it (the
    rest then fails with ENOSPC, never vanishes)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def fd_path(fd: int) -> bytes:
    """A path naming the very file (or folder) open at fd in this process."""
    return b"/proc/self/fd/%d" % fd


def names_in(dir_fd: int) -> list[bytes]:
    """The names in the open folder, as bytes, sorted (listdir of an fd would give str)."""
    names = os.listdir(fd_path(dir_fd))
    names.sort()
    return names


def private_to_us(st) -> bool:
    """A stat result of a file this user made for itself: owned by it, writable by no one else
    (what another user planted, or could change, is never trusted)."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def sync_xattrs(target, wanted: dict | None, follow: bool = True, streams_done: bool = False):
    """Make target's xattrs exactly wanted. target: an fd, or a path (not followed if follow is
    False). Extras are removed first: a new file may inherit an ACL from its folder's default.
    The NTFS ones are left to ntfs.set_in_order: ntfs-3g lists none, and their order matters;
    the streams to streams.sync where ntfs-3g serves them as files (streams_done)."""
    def ours(name: bytes) -> bool:
        return not (ntfs.is_ntfs_name(name) or name.startswith(streams.REF) or name == streams.LIST
                    or (streams_done and name.startswith(streams.INLINE)))
    wanted = {k: v for k, v in wanted.items() if ours(k)} if wanted else {}
    try:
        listed = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno != errno.ENODATA:          # ntfs-3g serving streams as files: none
            raise
        listed = []
    have = {n for n in map(os.fsencode, listed) if ours(n)}
    for name in have - wanted.keys():
        os.removexattr(target, name, follow_symlinks=follow)
    for name, value in wanted.items():
        if name not in have or os.getxattr(target, name, follow_symlinks=follow) != value:
            os.setxattr(target, name, value, follow_symlinks=follow)


# the coarsest time a filesystem restores onto keeps (FAT: 2 s); NTFS keeps 100 ns
_TIME_GRAIN_NS = 2_000_000_000


def held_time(st, e: Entry):
    """OSError (ERANGE) when the filesystem did not take e's modification time (it clamps
    what it cannot hold, e.g. ext4 before 1901, saying nothing): a tree it cannot hold is an
    error, never a silently other tree. Within its grain (2 s) a time is taken as held."""
    if abs(st.st_mtime_ns - e.mtime_ns) > _TIME_GRAIN_NS:
        raise OSError(errno.ERANGE, "the target's filesystem cannot hold its modification time "
                      f"({e.mtime_ns} ns)", e.path)


def set_meta_fd(fd: int, e: Entry, at: tuple[int, bytes] | None = None, sources=None):
    """Owner, mode, xattrs and times of an open file or folder, in that order: chown clears
    setuid bits and capabilities, so mode and xattrs come after it; then the NTFS attributes,
    which chown, chmod and utime would change (ntfs.py). An entry with a security descriptor
    (so on NTFS: onto anything else restore leaves those out) gets it instead of an owner and
    mode, which NTFS does not keep (each a round trip through ntfs-3g). at: (folder fd, name)
    where it is (name b"" for the folder itself), through which its streams are written where
    ntfs-3g serves them as files, before the times (a stream's write moves them); sources:
    digest -> the container tree that stores a large stream (streams.sync)."""
    if not ntfs.has_descriptor(e.xattrs):
        os.fchown(fd, e.uid, e.gid)
        os.fchmod(fd, e.mode)
    done = at is not None and streams.sync(at, fd, e.xattrs, sources or {})
    sync_xattrs(fd, e.xattrs, streams_done=done)
    os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
    held_time(os.fstat(fd), e)
    ntfs.set_in_order(fd, e.xattrs)


def set_meta_at(dir_fd: int, name: bytes, e: Entry, sources=None):
    """The same for an entry that is not opened (symlinks, devices, FIFOs, sockets, and files).
    The entry is first pinned with O_PATH, never following a symlink, and must still be of
    e's kind (else OSError, changing nothing): one swapped in since the scan is not touched, and
    nothing is followed out of the target. Files and folders are then opened through the pin
    (the same inode; a device is never opened); mode is set through the pin too."""
    pin = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if KIND_OF_FMT.get(stat.S_IFMT(os.fstat(pin).st_mode)) is not e.kind:
            raise OSError(errno.ESTALE, "changed kind while being restored", name)
        pinned = fd_path(pin)        # the pinned inode itself, which is no symlink
        if e.kind is Kind.FILE or e.kind is Kind.DIR:
            flags = (DIR_FLAGS if e.kind is Kind.DIR else
                     os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
            fd = os.open(pinned, flags & ~os.O_NOFOLLOW)
            try:
                set_meta_fd(fd, e, (dir_fd, name), sources)
            finally:
                os.close(fd)
            return
        if e.kind is not Kind.SYMLINK:          # every change through the pin: a name
            if not ntfs.has_descriptor(e.xattrs):   # swapped meanwhile is never touched
                os.chown(pinned, e.uid, e.gid)
                os.chmod(pinned, e.mode)
            sync_xattrs(pinned, e.xattrs)
            os.utime(pinned, ns=(e.mtime_ns, e.mtime_ns))
            held_time(os.stat(pinned), e)
            ntfs.set_in_order(pinned, e.xattrs)
            return
        # a symlink's own attributes can only be set by name (no-follow): it is one this run
        # made under a temporary name (the planner remakes a symlink whose metadata changes)
        if not ntfs.has_descriptor(e.xattrs):
            os.chown(name, e.uid, e.gid, dir_fd=dir_fd, follow_symlinks=False)
        sync_xattrs(proc_path(dir_fd, name), e.xattrs, follow=False)
        os.utime(name, ns=(e.mtime_ns, e.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
        held_time(os.lstat(name, dir_fd=dir_fd), e)
        ntfs.set_in_order(proc_path(dir_fd, name), e.xattrs, follow=False)
    finally:
        os.close(pin)


def open_regular(dir_fd: int, name: bytes, flags: int) -> int:
    """name in dir_fd opened with flags, only if it is a regular file (never through a
    symlink): it is pinned with O_PATH first, so a device or FIFO is never opened."""
    pin = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(pin).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        return os.open(fd_path(pin), flags & ~os.O_NOFOLLOW)
    finally:
        os.close(pin)


def open_file(path, mode: str = "rb"):
    """The file at path opened for reading, only if it is a regular file (a FIFO, device or
    socket given as an image or manifest is never opened: a FIFO would block forever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        return open(fd, mode)   # noqa: SIM115  (the caller closes it)
    except BaseException:
        os.close(fd)
        raise


def make_special(dir_fd: int, name: bytes, e: Entry, on_ntfs: bool = False):
    """Create a symlink, device, FIFO or socket named name (which must not exist). On NTFS
    (ntfs-3g), a symlink with reparse data is made from its reparse data: a junction stays one."""
    if e.kind is Kind.SYMLINK and on_ntfs and ntfs.is_reparse_point(e.xattrs):
        ntfs.make_reparse_point(dir_fd, name, e.xattrs)
    elif e.kind is Kind.SYMLINK:
        os.symlink(e.target, name, dir_fd=dir_fd)
    elif e.kind is Kind.FIFO:
        os.mkfifo(name, 0o600, dir_fd=dir_fd)
    else:
        fmt = {Kind.CHAR: stat.S_IFCHR, Kind.BLOCK: stat.S_IFBLK, Kind.SOCKET: stat.S_IFSOCK}[e.kind]
        os.mknod(name, fmt | 0o600, e.rdev or 0, dir_fd=dir_fd)


def remove(dir_fd: int, name: bytes):
    """Remove name (a folder with its whole subtree) without following any symlink, and never
    across a mount point: a folder on which something is mounted (another filesystem, or a bind
    mount of the same one) stops the removal with OSError EBUSY, leaving it and what is mounted
    there untouched. Folders are walked by fd, so no path length limit applies."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    home = (os.fstat(dir_fd).st_dev, mount_id(dir_fd))
    # depth first, one fd per level: (its fd, its names still to look at, its name)
    stack = [(_open_inside(dir_fd, name, home), None, name)]
    try:
        while stack:
            fd, names, own = stack[-1]
            if names is None:
                names = iter(names_in(fd))
                stack[-1] = (fd, names, own)
            child = next(names, None)
            if child is None:             # emptied: removed from its parent
                stack.pop()
                os.close(fd)
                os.rmdir(own, dir_fd=stack[-1][0] if stack else dir_fd)
            elif stat.S_ISDIR(os.lstat(child, dir_fd=fd).st_mode):
                stack.append((_open_inside(fd, child, home), None, child))
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _open_inside(dir_fd: int, name: bytes, home: tuple[int, int]) -> int:
    """The folder name in dir_fd, opened, when it is on the mount home (st_dev, mount ID)."""
    fd = os.open(_name(name), DIR_FLAGS, dir_fd=dir_fd)
    if (os.fstat(fd).st_dev, mount_id(fd)) != home:
        os.close(fd)
        raise OSError(errno.EBUSY, "a mount point: not removed", name)
    return fd


def mount_id(fd: int) -> int | None:
    """The ID of the mount an open file lies on (the kernel's fdinfo; statx's STATX_MNT_ID)."""
    try:
        with open(b"/proc/self/fdinfo/%d" % fd, "rb") as f:
            for line in f:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


_RENAME_NOREPLACE = 1
LIBC = ctypes.CDLL(None, use_errno=True)   # the C library, for calls os does not offer


def rename_noreplace(src_dir_fd: int, src: bytes, dst_dir_fd: int, dst: bytes):
    """Rename src to dst, FileExistsError if dst exists: checked and done in one step by the
    kernel (renameat2 RENAME_NOREPLACE), so nothing that appears meanwhile is replaced. Where
    the filesystem cannot do that, a check just before the rename."""
    if LIBC.renameat2(src_dir_fd, src, dst_dir_fd, dst, _RENAME_NOREPLACE) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOSYS):
        raise OSError(err, os.strerror(err), dst)
    try:
        os.lstat(dst, dir_fd=dst_dir_fd)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    raise FileExistsError(errno.EEXIST, "exists", dst)


def replace(dir_fd: int, tmp: bytes, name: bytes):
    """Rename tmp over name in one folder; a folder in the way (a kind change) is removed first."""
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise
        remove(dir_fd, name)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
