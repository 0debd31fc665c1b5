"""Write file content into a target, in worker processes: to a temporary name in the file's own
folder, checked against its digest, with its metadata set, then renamed over the real name. A
file is never half-written under its real name, and a wrong byte never lands at all."""

import errno
import os
import stat

import xxhash

from .safefs import Dirs, replace, set_meta_fd, split

CHUNK = 1 << 20
HOLE_UNIT = 4 << 10          # sparse files: zero blocks of this size become holes (the
                             # block size of common filesystems: any hole the source had)
_ZEROS = bytes(HOLE_UNIT)
_BUFFER = memoryview(bytearray(CHUNK))   # one per worker process, reused for every file
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

BAD_CONTENT, NO_SPACE, FAILED = "bad-content", "no-space", "failed"


def write_batch(items: list[tuple]) -> list[tuple]:
    """items: (root, tmp_name, source, entry) with source ('file', absolute path of a layer's
    file), ('target', path inside root), ('move', path inside root of content kept aside, which
    may be linked instead of copied) or ('empty', None). Answers (None, None, bytes) or
    (problem, message, None) for each."""
    if not items:
        return []
    root_fd = os.open(items[0][0], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    dirs, source_dirs = Dirs(root_fd), Dirs(root_fd)   # two caches: the paths interleave
    try:
        return [_write_one(dirs, source_dirs, *item[1:]) for item in items]
    finally:
        dirs.close()
        source_dirs.close()
        os.close(root_fd)


def _open_source(source_dirs, source):
    kind, where = source
    if kind == "file":
        return os.open(where, _READ)
    parent, name = split(where)
    return os.open(name, _READ, dir_fd=source_dirs.fd(parent))


def _write_one(dirs, source_dirs, tmp, source, entry):
    if source[0] == "move":
        moved = _move(dirs, source_dirs, tmp, source[1], entry)
        if moved is not None:
            return moved
        source = ("target", source[1])
    parent, name = split(entry.path)
    try:
        dir_fd = dirs.fd(parent)
        src = _open_source(source_dirs, source) if source[0] != "empty" else None
    except OSError as exc:
        return FAILED, f"cannot open the source of {os.fsdecode(entry.path)}: {exc.strerror}", None
    try:
        dst = os.open(tmp, _CREATE, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if src is not None:
            os.close(src)
        return _failure(exc), exc.strerror, None
    try:
        digest, size = _copy(src, dst, entry.sparse) if src is not None else (None, 0)
        if src is not None and digest != entry.digest:
            raise _Mismatch
        set_meta_fd(dst, entry)
        os.close(dst)
        dst = None
        replace(dir_fd, tmp, name)
        return None, None, size
    except _Mismatch:
        problem = (BAD_CONTENT, "the stored content does not match its digest")
    except OSError as exc:
        problem = (_failure(exc), exc.strerror)
    finally:
        if src is not None:
            os.close(src)
        if dst is not None:
            os.close(dst)
    _discard(dir_fd, tmp)
    return problem[0], problem[1], None


def _move(dirs, source_dirs, tmp, where, entry):
    """Give the content kept aside at where (inside root) the entry's name and metadata, by a
    hardlink instead of a copy, when nothing else links to it any more (its old paths are gone):
    the bytes do not move at all. None when it must be copied instead."""
    if entry.sparse:
        return None                     # the copy makes the holes the manifest records
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
            set_meta_fd(fd, entry)
        finally:
            os.close(fd)
        replace(dir_fd, tmp, name)
        return None, None, entry.size
    except OSError as exc:
        _discard(dir_fd, tmp)
        return _failure(exc), exc.strerror, None


def _failure(exc: OSError) -> str:
    return NO_SPACE if exc.errno == errno.ENOSPC else FAILED


def _discard(dir_fd: int, tmp: bytes):
    """Remove a temporary name that will not be renamed into place (it may not exist yet)."""
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except OSError:
        pass


class _Mismatch(Exception):
    pass


def _copy(src: int, dst: int, sparse: bool):
    """Copy src to dst, hashing as it goes; zero runs become holes when sparse."""
    h = xxhash.xxh3_128()
    view = _BUFFER
    offset = 0
    with open(src, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(view):
            chunk = view[:n]
            h.update(chunk)
            if sparse:
                for start in range(0, n, HOLE_UNIT):
                    piece = chunk[start:start + HOLE_UNIT]
                    if piece != _ZEROS[:len(piece)]:
                        _write_all(dst, piece, offset + start)
            else:
                _write_all(dst, chunk, offset)
            offset += n
    if sparse:
        os.ftruncate(dst, offset)
    return h.digest(), offset


def _write_all(fd: int, data, offset: int):
    while data:
        written = os.pwrite(fd, data, offset)
        data = data[written:]
        offset += written
