"""Walk one filesystem and yield its Entries in canonical order.

The walk runs in the calling thread; file content is hashed by worker processes in batches
(hashing.HashPool). Entries leave in order through a bounded window, so memory does not grow with
the tree, only with the hardlink map.
"""

import collections
import fnmatch
import os
import re
import stat

from .entry import Entry, Hint, Kind, entry_from_stat, path_key
from .errors import InputNotFound, ScanError, show_path
from .fsmeta import read_xattrs
from .hashing import EMPTY_DIGEST, HashPool, Problem, hash_file

BATCH_FILES = 256           # small files go to the pool in batches: one task each costs too much
BATCH_BYTES = 16 << 20
WINDOW = 8192               # entries held back waiting for their digests, at most
DRAIN_EVERY = 64            # entries held before the finished ones are passed on


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
    """Files handed to the hash pool together; the future's result[i] answers for paths[i]."""
    __slots__ = ("bytes", "future", "paths")

    def __init__(self):
        self.paths: list[bytes] = []
        self.bytes = 0
        self.future = None


def hints_of(entries):
    """Quick-check hints from a stream of Entries."""
    for e in entries:
        if e.kind is Kind.FILE and e.digest is not None:
            yield Hint(e.path, e.size, e.mtime_ns, e.digest, e.sparse)


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
         on_progress=None, on_warning=None, on_skip=None):
    """Yield the Entries of the tree at root in canonical order.

    previous: quick-check hints of an earlier scan, (path, size, mtime_ns, digest, sparse) of its
    files in canonical order (ManifestReader.file_hints, hints_of); a file whose size and mtime_ns
    are unchanged takes its digest from there, unless checksum is true.
    on_progress(entries, bytes): called now and then. on_warning(message): vanished files,
    skipped mount points, files that changed while read. on_skip(path): called for each entry
    left out or emptied because it is on another filesystem (after its warning).
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
    skip = on_skip or (lambda path: None)
    excluded = Excluder(excludes)
    find_previous = _lookup(None if checksum else previous)
    pool = HashPool(workers)
    try:
        yield from _walk(root, root_st, excluded, find_previous, pool, warn, skip, on_progress)
    finally:
        pool.close()


def _walk(root, root_st, excluded, find_previous, pool, warn, skip, on_progress):
    root_dev = root_st.st_dev
    hardlinks: dict[tuple[int, int], Entry] = {}   # (dev, ino) -> first member seen
    pending = collections.deque()                 # (entry, batch or leader, index)
    batch = _Batch()
    emitted = hashed_bytes = 0

    def abs_of(rel):
        return root + b"/" + rel if rel else root

    def flush():
        nonlocal batch
        if batch.paths:
            batch.future = pool.submit(batch.paths)
            batch = _Batch()

    def finish(entry, job, index):
        """Resolve one pending entry: True to emit it, False to drop it."""
        if type(job) is _Batch:
            if job.future is None:          # only the batch still being filled is unsubmitted
                flush()
            problem, message, content = job.future.result()[index]
        elif job is not None:               # a later hardlink member: share the leader's content
            leader = job if job.kind is not None else hardlinks[index]
            if leader.kind is not None:
                entry.link = leader.path
                entry.digest, entry.sparse = leader.digest, leader.sparse
                entry.size, entry.mtime_ns = leader.size, leader.mtime_ns
                return True
            entry.link = None               # every earlier member vanished: this one leads now
            hardlinks[index] = entry
            problem, message, content = hash_file(abs_of(entry.path))
        else:
            return True
        if problem is Problem.ERROR:
            raise ScanError(f"cannot read {show_path(abs_of(entry.path))}: {message}")
        if problem is not None:
            warn(f"{show_path(abs_of(entry.path))}: {message}")
        if problem is Problem.VANISHED:
            entry.kind = None   # marks a dropped entry, so later hardlink members look again
            return False
        (entry.digest, entry.sparse, entry.size, entry.mtime_ns, entry.mode, entry.uid,
         entry.gid) = content
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
                known = find_previous(path_key(rel), st.st_size, st.st_mtime_ns)
                if known is not None:
                    entry.digest, entry.sparse = known
                else:
                    pending.append((entry, batch, len(batch.paths)))
                    batch.paths.append(path)
                    batch.bytes += st.st_size
                    if len(batch.paths) >= BATCH_FILES or batch.bytes >= BATCH_BYTES:
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
                skip(path)
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
        if len(pending) >= DRAIN_EVERY:     # draining after each entry costs a generator each
            yield from drain(WINDOW)
    flush()
    yield from drain(0)
    if on_progress is not None:
        on_progress(emitted, hashed_bytes)


def _list(path: bytes) -> list[bytes]:
    names = os.listdir(path)
    names.sort()
    return names
