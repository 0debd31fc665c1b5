"""Write file content into a target, in worker processes: to a temporary name in the file's own
folder, checked against its digest, with its metadata set, then renamed over the real name. A
file is never half-written under its real name, and a wrong byte never lands at all."""

import enum
import errno
import os
import stat
from typing import NamedTuple

import xxhash

from ..entry import Entry
from ..scan.hashing import Problem
from ..system.safefs import Dirs, open_regular, pwrite_all, rename_noreplace, replace, set_meta_fd, split
from ..windows import ntfs

CHUNK = 1 << 20
HOLE_UNIT = 4 << 10          # sparse files: zero blocks of this size become holes (the
                             # block size of common filesystems: any hole the source had)
_ZEROS = bytes(HOLE_UNIT)
_BUFFER = memoryview(bytearray(CHUNK))   # one per worker process, reused for every file
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC



class From(enum.StrEnum):
    """Where the content of a file to write comes from (here, not in the planner that decides
    it: the worker processes import this module, and need no more)."""
    EMPTY = "empty"       # nowhere: the file is empty
    TARGET = "target"     # a path of the target that keeps its content
    RESCUE = "rescue"     # a path of the target that goes away: rescued (kept aside) first
    LAYER = "layer"       # a file stored in the container of one of the chain's layers


class Job(NamedTuple):
    """One file to write into the target."""
    tmp: bytes             # the temporary name, in the entry's folder
    entry: Entry
    origin: From
    where: bytes | None    # LAYER: the file's path in the layer's tree; TARGET, RESCUE: a path
                           # inside the target; EMPTY: None
    may_link: bool         # RESCUE: nothing else uses this content, so its inode may take the name
    layer_root: bytes | None = None   # LAYER: the layer's tree (a mounted container, a folder)
    streams: tuple = ()    # (digest, the layer's tree that stores it) of each large stream
    no_replace: bool = False   # extract: a name that appeared meanwhile is never replaced


class Written(NamedTuple):
    problem: Problem | None     # None, NO_SPACE, BAD_CONTENT or ERROR
    message: str | None
    size: int | None            # bytes written


class Root(NamedTuple):
    """The target as the process that locked it holds it open: a worker reaches that very
    folder through /proc/PID/fd/FD, never by its path (which a rename could send elsewhere)."""
    pid: int
    fd: int
    dev: int
    ino: int

    @classmethod
    def of(cls, fd: int) -> "Root":
        st = os.fstat(fd)
        return cls(os.getpid(), fd, st.st_dev, st.st_ino)

    def open(self) -> int:
        fd = os.open(b"/proc/%d/fd/%d" % (self.pid, self.fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (self.dev, self.ino):
            os.close(fd)
            raise OSError(errno.ESTALE, "the target is no longer the folder being restored")
        return fd


def write_batch(root, jobs: list[Job]) -> list[Written]:
    """Write each job's file into the target (a Root, or a path for tests); the answers, in
    order."""
    try:
        root_fd = (root.open() if isinstance(root, Root)
                   else os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as exc:
        return [Written(Problem.ERROR, f"cannot open the target: {exc.strerror}", None)] * len(jobs)
    dirs, source_dirs = Dirs(root_fd), Dirs(root_fd)   # two caches: the paths interleave
    layers = _Layers()
    try:
        return [_write_one(dirs, source_dirs, job, layers) for job in jobs]
    finally:
        dirs.close()
        source_dirs.close()
        layers.close()
        os.close(root_fd)


class _Layers:
    """Folder fds inside each layer's tree: a container's content is read beneath its root,
    never through a symlink it holds (a layer from anyone may hold x -> /dev)."""

    def __init__(self):
        self._dirs: dict[bytes, Dirs] = {}

    def fd(self, root: bytes, rel_dir: bytes) -> int:
        dirs = self._dirs.get(root)
        if dirs is None:
            dirs = self._dirs[root] = Dirs(os.open(root, os.O_RDONLY | os.O_DIRECTORY
                                                   | os.O_NOFOLLOW | os.O_CLOEXEC))
        return dirs.fd(rel_dir)

    def close(self):
        for dirs in self._dirs.values():
            dirs.close()
            os.close(dirs.root)


def _open_source(source_dirs: Dirs, job: Job, layers: _Layers) -> int | None:
    """The source's fd: a regular file reached without following a symlink, or OSError."""
    if job.origin is From.EMPTY:
        return None
    parent, name = split(job.where)
    dir_fd = layers.fd(job.layer_root, parent) if job.origin is From.LAYER else source_dirs.fd(parent)
    return open_regular(dir_fd, name, _READ)


def _write_one(dirs: Dirs, source_dirs: Dirs, job: Job, layers: _Layers) -> Written:
    if job.may_link:
        moved = _move(dirs, source_dirs, job.tmp, job.where, job.entry, dict(job.streams),
                      job.no_replace)
        if moved is not None:
            return moved
    tmp, entry = job.tmp, job.entry
    parent, name = split(entry.path)
    try:
        dir_fd = dirs.fd(parent)
    except OSError as exc:
        return Written(_failure(exc), exc.strerror, None)
    try:
        src = _open_source(source_dirs, job, layers)
    except OSError as exc:
        return Written(Problem.UNREADABLE, f"cannot open its content: {exc.strerror}", None)
    try:
        dst = os.open(tmp, _CREATE, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if src is not None:
            os.close(src)
        return Written(_failure(exc), exc.strerror, None)
    try:
        digest, size = _copy(src, dst, entry.sparse, entry.size) if src is not None else (None, 0)
        if src is not None and (digest != entry.digest or size != entry.size):
            raise _Mismatch
        set_meta_fd(dst, entry, (dir_fd, tmp), dict(job.streams))
        os.close(dst)
        dst = None
        place(dir_fd, tmp, name, job.no_replace, entry)
        return Written(None, None, size)
    except _Mismatch:
        failed = Written(Problem.BAD_CONTENT, "the stored content does not match its digest "
                         "and size", None)
    except _ReadError as exc:
        failed = Written(Problem.UNREADABLE, f"cannot read its content: {exc.strerror}", None)
    except OSError as exc:
        failed = Written(_failure(exc), exc.strerror, None)
    finally:
        if src is not None:
            os.close(src)
        if dst is not None:
            os.close(dst)
    _discard(dir_fd, tmp)
    return failed


def _move(dirs: Dirs, source_dirs: Dirs, tmp: bytes, where: bytes, entry: Entry,
          sources: dict, no_replace: bool = False) -> Written | None:
    """Give the content kept aside at where (inside root) the entry's name and metadata, by a
    hardlink instead of a copy, when nothing else links to it any more (its old paths are gone):
    the bytes do not move at all. None when it must be copied instead."""
    if entry.sparse:
        return None                     # the copy makes the holes the manifest records
    if entry.xattrs and ntfs.DOS_NAME in entry.xattrs:
        return None      # ntfs-3g gives no short name to an inode with another link (the kept one)
    parent, name = split(entry.path)
    source_parent, source_name = split(where)
    try:
        dir_fd = dirs.fd(parent)
        source_dir = source_dirs.fd(source_parent)
        st = os.stat(source_name, dir_fd=source_dir, follow_symlinks=False)
        if (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != entry.size
                or st.st_blocks * 512 < st.st_size):    # it may have holes: the copy decides
            return None
        os.link(source_name, tmp, src_dir_fd=source_dir, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    try:
        fd = os.open(tmp, _READ, dir_fd=dir_fd)
        try:
            set_meta_fd(fd, entry, (dir_fd, tmp), sources)
        finally:
            os.close(fd)
        place(dir_fd, tmp, name, no_replace, entry)
        return Written(None, None, entry.size)
    except OSError as exc:
        _discard(dir_fd, tmp)
        return Written(_failure(exc), exc.strerror, None)


def place(dir_fd: int, tmp: bytes, name: bytes, no_replace: bool, entry: Entry | None = None):
    """Give tmp its real name: over what is there (restore), or only if nothing is (extract);
    on NTFS, entry's DOS attributes are set again if the rename added ARCHIVE to them."""
    if no_replace:
        rename_noreplace(dir_fd, tmp, dir_fd, name)
    else:
        replace(dir_fd, tmp, name)
    if entry is not None:
        ntfs.keep_unarchived(dir_fd, name, entry.xattrs)


def _failure(exc: OSError) -> Problem:
    return Problem.NO_SPACE if exc.errno == errno.ENOSPC else Problem.ERROR


def _discard(dir_fd: int, tmp: bytes):
    """Remove a temporary name that will not be renamed into place (it may not exist yet)."""
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except OSError:
        pass


class _Mismatch(Exception):
    pass


class _ReadError(OSError):
    """Reading the source failed (not writing the target): a damaged layer, if it is one."""


def _copy(src: int, dst: int, sparse: bool, size: int):
    """Copy src to dst, hashing as it goes; zero runs become holes when sparse. A source longer
    than size is not read to its end: its digest is None."""
    h = xxhash.xxh3_128()
    view = _BUFFER
    offset = 0
    with open(src, "rb", buffering=0, closefd=False) as f:
        while n := _read(f, view):
            if offset + n > size:
                return None, offset + n
            chunk = view[:n]
            h.update(chunk)
            if sparse:
                for start in range(0, n, HOLE_UNIT):
                    piece = chunk[start:start + HOLE_UNIT]
                    if piece != _ZEROS[:len(piece)]:
                        pwrite_all(dst, piece, offset + start)
            else:
                pwrite_all(dst, chunk, offset)
            offset += n
    if sparse:
        os.ftruncate(dst, offset)
    return h.digest(), offset


def _read(f, view) -> int:
    try:
        return f.readinto(view)
    except OSError as exc:
        raise _ReadError(exc.errno, exc.strerror) from None


