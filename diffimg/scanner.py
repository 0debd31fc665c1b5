"""Walk one filesystem and yield its Entries in canonical order.

The walk runs in the calling thread; file content is hashed by a thread pool in batches (xxhash
releases the GIL on large updates, and reads release it too). Entries leave in order through a
bounded window, so memory does not grow with the tree, only with the hardlink map.
"""

import collections
import errno
import fnmatch
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor

import xxhash

from .entry import Entry, Kind, entry_from_stat, path_key
from .errors import InputNotFound, ScanError, show_path
from .fsmeta import read_xattrs

WHOLE_READ = 1 << 20        # files up to this size are read in one call
CHUNK = 1 << 20             # larger files are hashed in 1 MiB reads
BATCH_FILES = 64            # small files go to the pool in batches: one task each costs too much
BATCH_BYTES = 8 << 20
WINDOW = 4096               # entries held back waiting for their digests, at most
READ_ATTEMPTS = 3
EMPTY_DIGEST = xxhash.xxh3_128_digest(b"")

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)   # leave the source's access times alone where allowed


class Excluder:
    """--exclude GLOB: a pattern without '/' matches any entry's name; one with '/' matches the
    path from the tree's root (a leading '/' is allowed). An excluded folder takes its subtree."""

    def __init__(self, patterns):
        names, paths = [], []
        for pattern in patterns:
            pattern = os.fsencode(pattern)
            target = paths if b"/" in pattern.rstrip(b"/") else names
            target.append(pattern.strip(b"/"))
        self._names = self._compile(names)
        self._paths = self._compile(paths)

    @staticmethod
    def _compile(patterns):
        if not patterns:
            return None
        regex = "|".join(fnmatch.translate(p.decode("latin-1")) for p in patterns)
        return re.compile(regex.encode("latin-1"), re.DOTALL).match

    def __bool__(self):
        return bool(self._names or self._paths)

    def __call__(self, rel: bytes, name: bytes) -> bool:
        return bool((self._names and self._names(name)) or (self._paths and self._paths(rel)))


class _Batch:
    """Files handed to the pool together; problems[i] is set when file i could not be hashed."""
    __slots__ = ("items", "bytes", "future", "problems")

    def __init__(self):
        self.items: list[tuple[bytes, Entry]] = []
        self.bytes = 0
        self.future = None
        self.problems: dict[int, tuple[str, str]] = {}

    def run(self):
        for i, (path, entry) in enumerate(self.items):
            problem = hash_file(path, entry)
            if problem is not None:
                self.problems[i] = problem


def hash_file(path: bytes, entry: Entry):
    """Fill entry's digest, sparse flag, size and times from the file's content.

    Returns None, or (severity, message) with severity 'vanished' (drop it, warn), 'changed'
    (recorded as last read, warn) or 'error' (unreadable: the scan fails).
    """
    for _ in range(READ_ATTEMPTS):
        try:
            fd = _open_for_read(path)
        except FileNotFoundError:
            return ("vanished", "vanished while being scanned")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return ("vanished", "was replaced by a symlink while being scanned")
            return ("error", exc.strerror)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return ("vanished", "is no longer a regular file")
            if before.st_size <= WHOLE_READ:
                chunks = []
                while data := os.read(fd, WHOLE_READ + 1):
                    chunks.append(data)
                data = b"".join(chunks) if len(chunks) != 1 else chunks[0]
                digest, nread = xxhash.xxh3_128_digest(data), len(data)
            else:
                digest, nread = _hash_stream(fd)
            after = os.fstat(fd)
            entry.digest = digest
            entry.size = after.st_size
            entry.mtime_ns = after.st_mtime_ns
            entry.mode = stat.S_IMODE(after.st_mode)
            entry.uid, entry.gid = after.st_uid, after.st_gid
            entry.sparse = (after.st_blocks * 512 < after.st_size
                            and os.lseek(fd, 0, os.SEEK_HOLE) < after.st_size)
            if (nread == after.st_size and before.st_size == after.st_size
                    and before.st_mtime_ns == after.st_mtime_ns):
                return None
        except OSError as exc:
            return ("error", exc.strerror)
        finally:
            os.close(fd)
    return ("changed", "kept changing while being read; recorded as last read")


def _open_for_read(path: bytes) -> int:
    try:
        return os.open(path, _OPEN_FLAGS | _NOATIME)
    except PermissionError:
        if not _NOATIME:
            raise
        return os.open(path, _OPEN_FLAGS)   # O_NOATIME is refused for files of other owners


def _hash_stream(fd: int):
    h = xxhash.xxh3_128()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            total += n
    return h.digest(), total


def hints_of(entries):
    """Quick-check hints (path, size, mtime_ns, digest, sparse) from a stream of Entries."""
    for e in entries:
        if e.kind is Kind.FILE and e.digest is not None:
            yield e.path, e.size, e.mtime_ns, e.digest, e.sparse


def _lookup(hints):
    """A function (path key, size, mtime_ns) -> (digest, sparse) or None, merge-joining the hints
    (canonical order) with the walk (also canonical): one pass, constant memory."""
    if hints is None:
        return lambda key, size, mtime_ns: None
    it = iter(hints)
    cur = next(it, None)
    cur_key = path_key(cur[0]) if cur is not None else None

    def find(key, size, mtime_ns):
        nonlocal cur, cur_key
        while cur is not None and cur_key < key:
            cur = next(it, None)
            cur_key = path_key(cur[0]) if cur is not None else None
        if cur is not None and cur_key == key and cur[1] == size and cur[2] == mtime_ns:
            return cur[3], cur[4]
        return None
    return find


def scan(root, *, previous=None, checksum: bool = False, excludes=(), workers: int | None = None,
         on_progress=None, on_warning=None):
    """Yield the Entries of the tree at root in canonical order.

    previous: quick-check hints of an earlier scan, (path, size, mtime_ns, digest, sparse) of its
    files in canonical order (ManifestReader.file_hints, hints_of); a file whose size and mtime_ns
    are unchanged takes its digest from there, unless checksum is true.
    on_progress(entries, bytes): called now and then. on_warning(message): vanished files,
    skipped mount points, files that changed while read.
    """
    root = os.fsencode(root)
    try:
        root_st = os.lstat(root)
    except FileNotFoundError:
        raise InputNotFound(f"no such folder: {show_path(root)}") from None
    except OSError as exc:
        raise ScanError(f"cannot read {show_path(root)}: {exc.strerror}") from None
    if not stat.S_ISDIR(root_st.st_mode):
        raise ScanError(f"{show_path(root)} is not a folder")
    warn = on_warning or (lambda message: None)
    excluded = Excluder(excludes)
    find_previous = _lookup(None if checksum else previous)
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2,
                              thread_name_prefix="diffimg-hash")
    try:
        yield from _walk(root, root_st, excluded, find_previous, pool, warn, on_progress)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _walk(root, root_st, excluded, find_previous, pool, warn, on_progress):
    root_dev = root_st.st_dev
    hardlinks: dict[tuple[int, int], Entry] = {}   # (dev, ino) -> first member seen
    pending = collections.deque()                 # (entry, batch or leader, index)
    batch = _Batch()
    emitted = hashed_bytes = 0

    def abs_of(rel):
        return root + b"/" + rel if rel else root

    def submit(b):
        b.future = pool.submit(b.run)

    def flush():
        nonlocal batch
        if batch.items:
            submit(batch)
            batch = _Batch()

    def finish(entry, job, index):
        """Resolve one pending entry: True to emit it, False to drop it."""
        if type(job) is _Batch:
            if job.future is None:          # only the batch still being filled is unsubmitted
                flush()
            job.future.result()
            problem = job.problems.get(index)
        elif job is not None:               # a later hardlink member: share the leader's content
            leader = job if job.kind is not None else hardlinks[index]
            if leader.kind is not None:
                entry.link = leader.path
                entry.digest, entry.sparse = leader.digest, leader.sparse
                entry.size, entry.mtime_ns = leader.size, leader.mtime_ns
                return True
            entry.link = None               # every earlier member vanished: this one leads now
            hardlinks[index] = entry
            problem = hash_file(abs_of(entry.path), entry)
        else:
            return True
        if problem is None:
            return True
        severity, message = problem
        if severity == "error":
            raise ScanError(f"cannot read {show_path(abs_of(entry.path))}: {message}")
        warn(f"{show_path(abs_of(entry.path))}: {message}")
        if severity == "vanished":
            entry.kind = None   # marks a dropped entry, so later hardlink members look again
            return False
        return True

    def drain(limit):
        """Emit the entries at the head that are finished; wait while more than limit are held."""
        nonlocal emitted, hashed_bytes
        while pending:
            entry, job, index = pending[0]
            if (type(job) is _Batch and len(pending) <= limit
                    and (job.future is None or not job.future.done())):
                return
            pending.popleft()
            if finish(entry, job, index):
                emitted += 1
                if entry.size:
                    hashed_bytes += entry.size
                if on_progress is not None and emitted % 512 == 0:
                    on_progress(emitted, hashed_bytes)
                yield entry

    def visit(rel, path, st):
        """The Entry for one lstat result, queued with whatever must finish it."""
        entry = entry_from_stat(rel, st)
        kind = entry.kind
        inode = None
        if kind is not Kind.DIR and st.st_nlink > 1:
            inode = (st.st_dev, st.st_ino)
            leader = hardlinks.get(inode)
            if leader is not None:          # same inode: same xattrs, target and content
                entry.xattrs = leader.xattrs
                entry.target = leader.target
                pending.append((entry, leader, inode))
                return
        entry.xattrs = read_xattrs(path)
        if kind is Kind.SYMLINK:
            entry.target = os.readlink(path)
        if inode is not None:
            hardlinks[inode] = entry
        if kind is Kind.FILE:
            if st.st_size == 0:
                entry.digest, entry.sparse = EMPTY_DIGEST, False
            else:
                known = find_previous(rel.split(b"/"), st.st_size, st.st_mtime_ns)
                if known is not None:
                    entry.digest, entry.sparse = known
                else:
                    if st.st_size >= BATCH_BYTES:
                        big = _Batch()
                        big.items.append((path, entry))
                        submit(big)
                        pending.append((entry, big, 0))
                        return
                    pending.append((entry, batch, len(batch.items)))
                    batch.items.append((path, entry))
                    batch.bytes += st.st_size
                    if len(batch.items) >= BATCH_FILES or batch.bytes >= BATCH_BYTES:
                        flush()
                    return
        pending.append((entry, None, 0))

    root_entry = entry_from_stat(b"", root_st)
    root_entry.xattrs = read_xattrs(root)
    pending.append((root_entry, None, 0))
    stack = [(b"", root, iter(_list(root)))]
    while stack:
        rel_dir, abs_dir, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        rel = rel_dir + b"/" + name if rel_dir else name
        if excluded and excluded(rel, name):
            continue
        path = abs_dir + b"/" + name
        try:
            st = os.lstat(path)
            if st.st_dev != root_dev:
                if not stat.S_ISDIR(st.st_mode):
                    warn(f"{show_path(path)}: skipped, on another filesystem")
                    continue
                warn(f"{show_path(path)}: mount point, recorded as an empty folder")
                visit(rel, path, st)
            else:
                visit(rel, path, st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((rel, path, iter(_list(path))))
        except FileNotFoundError:
            warn(f"{show_path(path)}: vanished while being scanned")
            continue
        except OSError as exc:
            raise ScanError(f"cannot read {show_path(path)}: {exc.strerror}") from None
        yield from drain(WINDOW)
    flush()
    yield from drain(0)
    if on_progress is not None:
        on_progress(emitted, hashed_bytes)


def _list(path: bytes) -> list[bytes]:
    names = os.listdir(path)
    names.sort()
    return names
