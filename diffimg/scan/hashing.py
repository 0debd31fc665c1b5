"""Hash and copy file content (xxh3-128), a file or a batch at a time: the batches run in worker
processes (workers.py), which import this module.
"""

import enum
import errno
import os
import stat
from typing import NamedTuple

import xxhash

from ..system.safefs import fd_path, open_dir, open_regular, split

WHOLE_READ = 1 << 20        # files up to this size are read in one call
CHUNK = 1 << 20             # larger files are hashed in 1 MiB reads
READ_ATTEMPTS = 3
EMPTY_DIGEST = xxhash.xxh3_128_digest(b"")

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)   # leave the source's access times alone where allowed

class Problem(enum.StrEnum):
    """What went wrong with one file read, copied or written by a worker."""
    VANISHED = "vanished"         # gone (or no longer a file): drop it, warn
    CHANGED = "changed"           # kept changing while read: the content is the last read, warn
    ERROR = "error"               # could not be read or written
    NO_SPACE = "no-space"         # the device written to is full
    BAD_CONTENT = "bad-content"   # the bytes written do not match the digest they must have
    UNREADABLE = "unreadable"     # the content to write could not be opened or read


class Content(NamedTuple):
    """A file's content and inode attributes, as read."""
    digest: bytes
    sparse: bool
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    ino: int
    ctime_ns: int        # unchanged while the content was read (a stat cache keys on it)
    dev: int             # with ino: which file was read (the scan checks it is the one listed)


class Hashed(NamedTuple):
    """The answer for one file: problem None and its content, or what went wrong."""
    problem: Problem | None
    message: str | None
    content: Content | None


def hash_file(path: bytes) -> Hashed:
    """Read and hash one file. content is None for VANISHED and ERROR (unreadable: the scan
    fails); with CHANGED it is the last read."""
    for _ in range(READ_ATTEMPTS):
        try:
            fd = open_for_read(path)
        except FileNotFoundError:
            return Hashed(Problem.VANISHED, "vanished while being scanned", None)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return Hashed(Problem.VANISHED, "was replaced by a symlink while being scanned", None)
            return Hashed(Problem.ERROR, exc.strerror, None)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Hashed(Problem.VANISHED, "is no longer a regular file", None)
            if before.st_size <= WHOLE_READ:
                data = os.read(fd, WHOLE_READ + 1)
                if len(data) > WHOLE_READ:      # it grew past the one-call size meanwhile
                    digest, nread = _hash_stream(fd, data)
                else:
                    digest, nread = xxhash.xxh3_128_digest(data), len(data)
            else:
                digest, nread = _hash_stream(fd, b"")
            after = os.fstat(fd)
            content = _content(after, digest, has_holes(fd, after.st_size))
            steady = (before.st_size == after.st_size and before.st_mtime_ns == after.st_mtime_ns
                      and before.st_ctime_ns == after.st_ctime_ns)
            if steady and nread == after.st_size:
                return Hashed(None, None, content)
            if steady and nread < after.st_size:     # unchanged, yet it ends early: damaged
                return Hashed(Problem.ERROR, f"could be read only to byte {nread:,} of its "
                              f"{after.st_size:,}", None)
        except OSError as exc:
            return Hashed(Problem.ERROR, exc.strerror, None)
        finally:
            os.close(fd)
    return Hashed(Problem.CHANGED, "kept changing while being read; recorded as last read", content)


def digest_of(fd: int) -> bytes:
    """xxh3-128 of the whole file open at fd, read from its start (its offset left as it is)."""
    h = xxhash.xxh3_128()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.digest()


def has_holes(fd: int, size: int) -> bool:
    """Whether the open file has a hole before its end, by SEEK_HOLE alone: its block count
    says nothing sure (an xattr or extent block can make up for a hole)."""
    if size <= 0:
        return False
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < size
    finally:
        os.lseek(fd, offset, os.SEEK_SET)       # the file's offset as it was


def holes_at(path: bytes) -> bool | None:
    """has_holes of the regular file at path (not following a symlink); None when it cannot
    be opened as one."""
    try:
        fd = open_for_read(path)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        return has_holes(fd, st.st_size) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _content(st, digest: bytes, sparse: bool) -> Content:
    return Content(digest, sparse, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode),
                   st.st_uid, st.st_gid, st.st_ino, st.st_ctime_ns, st.st_dev)


def hash_batch(paths: list[bytes]) -> list[Hashed]:
    return [hash_file(path) for path in paths]


def copy_file(source: bytes, dest: bytes) -> Hashed:
    """Copy source to a new file dest, hashing what is copied; answers as hash_file does.
    The digest is of the bytes written, so a caller compares it with the one it expects."""
    try:
        fd = open_for_read(source)
    except FileNotFoundError:
        return Hashed(Problem.VANISHED, "vanished since it was scanned", None)
    except OSError as exc:
        return Hashed(Problem.ERROR, exc.strerror, None)
    try:
        with open(fd, "rb", buffering=0, closefd=False) as src, open(dest, "xb") as dst:
            before = os.fstat(fd)
            h = xxhash.xxh3_128()
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while n := src.readinto(buf):
                h.update(view[:n])
                dst.write(view[:n])
            after = os.fstat(fd)
        content = _content(after, h.digest(), False)
        if before.st_size != after.st_size or before.st_mtime_ns != after.st_mtime_ns:
            return Hashed(Problem.CHANGED, "changed while being copied", content)
        return Hashed(None, None, content)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return Hashed(Problem.NO_SPACE, "no space left on the device", None)
        return Hashed(Problem.ERROR, exc.strerror, None)
    finally:
        os.close(fd)


def copy_batch(pairs: list[tuple[bytes, bytes]]) -> list[Hashed]:
    return [copy_file(source, dest) for source, dest in pairs]


LONG_PATH = 3800      # a longer path is opened in pieces (the kernel refuses past PATH_MAX)


def _pin(path: bytes) -> int:
    """An O_PATH fd of path itself (a symlink is not followed); a path of any length."""
    if len(path) <= LONG_PATH:
        return os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    folder, name = path.rsplit(b"/", 1)
    dir_fd = None
    try:
        while folder:               # the folders in pieces below LONG_PATH, each from the last
            cut = folder.rfind(b"/", 0, LONG_PATH) if len(folder) > LONG_PATH else len(folder)
            if cut <= 0:
                raise OSError(errno.ENAMETOOLONG, "a path component is too long", path)
            piece, folder = folder[:cut], folder[cut + 1:]
            opened = os.open(piece, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                             dir_fd=dir_fd if dir_fd is not None else -100)   # -100: AT_FDCWD
            if dir_fd is not None:
                os.close(dir_fd)
            dir_fd = opened
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


class Beneath(NamedTuple):
    """A file at rel beneath the folder root (an image's container), reached without following
    any symlink on the way: a container from anyone may hold x -> /etc."""
    root: bytes
    rel: bytes

    def open(self) -> int:
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            parent, name = split(self.rel)
            dir_fd = open_dir(root_fd, parent)
        finally:
            os.close(root_fd)
        try:
            return open_regular(dir_fd, name, _OPEN_FLAGS)
        finally:
            os.close(dir_fd)

    def __str__(self) -> str:
        return os.fsdecode(os.path.join(self.root, self.rel))


def open_for_read(path) -> int:
    """path opened for reading when it is a regular file; otherwise its O_PATH pin, which the
    caller's fstat finds not regular (a device or FIFO is never opened: some act on open).
    A Beneath path is opened beneath its root, and only when it is a regular file."""
    if isinstance(path, Beneath):
        return path.open()
    pin = _pin(path)
    if not stat.S_ISREG(os.fstat(pin).st_mode):
        return pin
    pinned = fd_path(pin)
    flags = _OPEN_FLAGS & ~os.O_NOFOLLOW
    try:
        try:
            return os.open(pinned, flags | _NOATIME)
        except PermissionError:
            if not _NOATIME:
                raise
            return os.open(pinned, flags)    # O_NOATIME is refused for files of other owners
    finally:
        os.close(pin)


def _hash_stream(fd: int, head: bytes):
    """Hash head plus the rest of fd, in CHUNK reads."""
    h = xxhash.xxh3_128(head)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = len(head)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            total += n
    return h.digest(), total
