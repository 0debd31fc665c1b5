"""Walk one filesystem and yield its Entries in canonical order.

The walk runs in the calling thread; file content is hashed by worker processes in batches
(workers.WorkerPool). Entries leave in order through a bounded window, so memory does not grow with
the tree, only with the hardlink map.
"""

import collections
import errno
import fnmatch
import os
import re
import stat

from ..entry import Entry, Hint, Kind, entry_from_stat, follow, path_key
from ..errors import InputNotFound, ScanError, show_path
from ..system.fsmeta import mount_points_below, read_xattrs
from ..system.partition import ntfs_volume_of
from ..system.safefs import DIR_FLAGS, fd_path, names_in, open_dir, proc_path, split
from ..system.workers import WorkerPool
from ..tree.manifest import STATE_DIR
from ..windows import ntfs
from . import leftout
from .hashing import EMPTY_DIGEST, Hashed, Problem, hash_batch, hash_file, holes_at
from .ntfswalk import walk_volume

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
    __slots__ = ("answers", "bytes", "future", "paths")

    def __init__(self):
        self.paths: list[bytes] = []
        self.bytes = 0
        self.future = None
        self.answers = None     # the future's result, once taken: asking the future takes a lock


class _Hashing:
    """An entry in the window whose file a batch is hashing: batch.future.result()[slot]."""
    __slots__ = ("batch", "entry", "slot")

    def __init__(self, entry: Entry, batch: _Batch, slot: int):
        self.entry = entry
        self.batch = batch
        self.slot = slot


class _LinkMember:
    """A later member of a hardlink group in the window: it takes the content of the group's
    leader, hardlinks[inode] (the first member seen, unless that one vanished or was found
    replaced)."""
    __slots__ = ("entry", "inode")

    def __init__(self, entry: Entry, inode: tuple[int, int]):
        self.entry = entry
        self.inode = inode              # (st_dev, st_ino)


def hints_of(entries):
    """Quick-check hints from a stream of Entries (without stat proofs)."""
    for e in entries:
        if e.kind is Kind.FILE and e.digest is not None:
            yield Hint(e.path, e.size, e.mtime_ns, e.digest, e.sparse)


def _lookup(hints, trust_mtime: bool):
    """A function (path key, lstat result) -> (digest, sparse, proved) or None, merge-joining
    the hints (canonical order) with the walk (also canonical): one pass, constant memory.

    A hint answers for a file with its size and mtime and, unless trust_mtime, its stat proof:
    the same inode number and ctime (statcache.py); a hint without a proof answers for nothing.
    proved: the stat proof held (with trust_mtime a file may be taken without one)."""
    if hints is None:
        return lambda key, st: None
    it = iter(hints)
    cur = next(it, None)
    cur_key = path_key(cur[0]) if cur is not None else None

    def find(key, st):
        nonlocal cur, cur_key
        while cur is not None and cur_key < key:
            cur = next(it, None)
            cur_key = path_key(cur[0]) if cur is not None else None
        if cur is not None and cur_key == key:
            _path, size, mtime_ns, digest, sparse, ino, ctime_ns = cur
            if size == st.st_size and mtime_ns == st.st_mtime_ns:
                proved = ino == st.st_ino and ctime_ns == st.st_ctime_ns
                if proved or trust_mtime:
                    return digest, sparse, proved
        return None

    def drain():
        """Read the hints to their end: their source checks itself there (trailer, tree ID)."""
        for _ in it:
            pass
    find.drain = drain
    return find


def scan(root, *, previous=None, checksum: bool = False, trust_mtime: bool = False, excludes=(),
         leave_out=frozenset(), wanted_sizes=None, workers: int | None = None, on_progress=None,
         on_warning=None, on_skip=None, windows_files: bool = False, ntfs_attributes: bool = True):
    """Yield the Entries of the tree at root in canonical order, leaving out STATE_DIR at its
    root. Each entry carries the ino and ctime_ns its record was read with (a stat cache's row).

    previous: quick-check hints of an earlier scan, entry.Hint of its files in canonical order
    (ManifestReader.file_hints, hints_of); a file whose size, mtime_ns and stat proof (inode
    and ctime, see statcache.py) are unchanged takes its digest from there; with trust_mtime,
    size and mtime_ns alone are enough (for copies of a tree; a change that kept both is
    missed). checksum: hash every file. leave_out: paths left out with their subtrees (kept
    paths of a target, keep.py). wanted_sizes: when given, a file of a size not in it is not
    read (its digest is None): a restore's target files can only give content of those sizes,
    and an extra sparse file of terabytes is not worth reading before it is deleted.
    on_progress(entries, bytes): called now and then. on_warning(message): vanished files,
    skipped mount points, files that changed while read. on_skip(path): called for each entry
    left out or emptied because it is on another filesystem (after its warning). A Windows
    tree's paths leftout.py leaves out by default are left out too, unless windows_files. On
    an ntfs-3g volume, the NTFS attributes are recorded (ntfs.py) unless ntfs_attributes is
    False (a restore of an image that holds none, onto NTFS).
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
    if not windows_files:
        leave_out = frozenset(leave_out) | leftout.left_out_in(root)
    if leave_out:
        by_pattern = excluded if excluded else None
        excluded = lambda rel, name: rel in leave_out or (  # noqa: E731
            by_pattern is not None and by_pattern(rel, name))
    find_previous = _lookup(None if checksum else previous, trust_mtime)
    volume = ntfs_volume_of(root) if ntfs_attributes else None
    if volume is not None:      # an NTFS partition given as itself: read through libntfs-3g
        yield from walk_volume(volume[1], root, find_previous=find_previous,
                               excluded=excluded if excluded else None, left_out=leave_out,
                               wanted_sizes=wanted_sizes, warn=warn, on_progress=on_progress)
        if previous is not None and not checksum:
            find_previous.drain()
        return
    pool = WorkerPool(workers)
    try:
        walker = _Walker(root, root_st, excluded, find_previous, pool, warn, skip, on_progress,
                         mount_points_below(root), wanted_sizes, leave_out, bool(excludes),
                         ntfs.Volume.of(root, ntfs_attributes))
        yield from walker.walk()
        if previous is not None and not checksum:
            find_previous.drain()
    finally:
        pool.close()


class _Walker:
    """One scan's walk. Each entry is lstat'ed depth first in canonical order and queued in the
    window (pending) with whatever must finish it; drain passes finished entries on from the
    window's head, so they leave in the order they were walked."""

    __slots__ = ("root", "root_st", "excluded", "find_previous", "pool", "warn", "skip",
                 "on_progress", "mounts", "wanted_sizes", "hardlinks", "pending", "batch",
                 "emitted", "emitted_bytes", "left_out", "ahead", "excluded_by_pattern",
                 "root_fd", "volume", "asked")

    def __init__(self, root, root_st, excluded, find_previous, pool, warn, skip, on_progress,
                 mounts, wanted_sizes, left_out, excluded_by_pattern, volume):
        self.root = root
        self.volume = volume                # on NTFS: xattrs asked for by name (ntfs.py)
        self.asked = volume.asked
        self.root_st = root_st
        self.excluded = excluded
        self.find_previous = find_previous
        self.pool = pool
        self.warn = warn
        self.skip = skip
        self.on_progress = on_progress
        self.mounts = mounts                # relative paths something is mounted on
        self.wanted_sizes = wanted_sizes
        self.hardlinks: dict[tuple[int, int], Entry] = {}   # (dev, ino) -> the group's leader
        # the window: ready Entries, and a _Hashing or _LinkMember for each one not yet ready
        self.pending = collections.deque()
        self.batch = _Batch()               # being filled; flush() hands it to the pool
        self.emitted = 0                    # entries passed on, and their files' bytes
        self.emitted_bytes = 0
        self.left_out = left_out            # paths never walked into (kept paths)
        self.excluded_by_pattern = excluded_by_pattern
        self.ahead = None                   # the compiled read-ahead walk, when there is one
        self.root_fd = None                 # the tree's root, open while it is walked

    def walk(self):
        """Yield the tree's Entries in canonical order: depth first, each folder's names sorted."""
        root = self.root
        root_entry = entry_from_stat(b"", self.root_st)
        if not _TIME_LOW <= root_entry.mtime_ns <= _TIME_HIGH:
            self.fit_time(root_entry)
        root_entry.xattrs = read_xattrs(root, self.asked)
        self.volume.fit(root_entry)
        self.pending.append(root_entry)
        # the loop runs once per entry: what it uses is bound to locals
        root_dev, warn, skip, mounts = self.root_st.st_dev, self.warn, self.skip, self.mounts
        excluded = self.excluded if self.excluded else None
        visit, pending, drain = self.visit, self.pending, self.drain
        is_dir = stat.S_ISDIR
        # (relative path, the path to reach it by, its names to visit, its fd or None); a
        # folder whose path grows past LONG_PATH is reached through its fd (/proc/self/fd/N):
        # a tree of any depth is walked, paths handed to the kernel stay below PATH_MAX
        fd = self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        stack = []
        try:
            if ReadAhead is not None and not self.excluded_by_pattern:
                # it walks from its own copy of fd; it knows no patterns, and would read what
                # they leave out: with patterns, each folder is read when the walk reaches it
                self.ahead = ReadAhead(fd, root_dev, self.mounts | set(self.left_out), self.asked)
                listing = self.take(b"")
            else:
                listing = read_folder(fd, fd_path(fd), self.asked)
            stack.append((b"", root, iter([i for i in listing if i[0] != STATE_DIR]), None))
            yield from self._walk(stack, root_dev, warn, skip, mounts, excluded, visit, pending,
                                  drain, is_dir)
            self.flush()
            yield from drain(0)         # (files hashed again through the tree need root_fd)
        finally:
            for *_, dir_fd in stack:
                if dir_fd is not None:
                    os.close(dir_fd)
            if self.ahead is not None:
                self.ahead.close()
            os.close(fd)
        if self.on_progress is not None:
            self.on_progress(self.emitted, self.emitted_bytes)

    def _walk(self, stack, root_dev, warn, skip, mounts, excluded, visit, pending, drain, is_dir):
        while stack:
            rel_dir, abs_dir, listing, _ = stack[-1]
            item = next(listing, None)
            if item is None:
                _, _, _, fd = stack.pop()
                if fd is not None:
                    os.close(fd)
                continue
            name, st, xattrs, target, error = item
            rel = rel_dir + b"/" + name if rel_dir else name
            if excluded is not None and excluded(rel, name):
                continue
            path = abs_dir + b"/" + name
            if error:
                if error == errno.ENOENT:
                    warn(f"{show_path(path)}: vanished while being scanned")
                    continue
                if error == errno.E2BIG:        # Linux reads no xattr value over 64 KiB
                    raise ScanError(f"cannot read {show_path(path)}: it has an xattr (on NTFS, a "
                                    "named stream) over 64 KiB, which Linux cannot read as one; "
                                    "give the NTFS partition itself, or mount it with ntfs-3g -o "
                                    "streams_interface=windows")
                raise ScanError(f"cannot read {show_path(path)}: {os.strerror(error)}")
            try:
                if st.st_dev != root_dev or (mounts and rel in mounts):
                    skip(path)
                    if not is_dir(st.st_mode):
                        warn(f"{show_path(path)}: skipped, a mount point")
                        continue
                    warn(f"{show_path(path)}: mount point, recorded as an empty folder")
                    visit(rel, path, st, xattrs, target)
                else:
                    visit(rel, path, st, xattrs, target)
                    if is_dir(st.st_mode):
                        stack.append(self.descend(rel, path, st))
            except FileNotFoundError:
                warn(f"{show_path(path)}: vanished while being scanned")
                continue
            except OSError as exc:
                raise ScanError(f"cannot read {show_path(path)}: {exc.strerror}") from None
            if len(pending) >= DRAIN_EVERY:     # draining after each entry costs a generator each
                yield from drain(WINDOW)

    def descend(self, rel, path, st):
        """The stack frame of the folder rel at path, listed with lstat result st: (rel, the
        path to reach what is in it by, its listing's iterator, its fd or None). A folder that
        is no longer the one listed (swapped for a symlink, a file, or another folder since,
        by itself or a folder above it) is recorded empty, with a warning."""
        try:
            return self._descend(rel, path, st)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            self.warn(f"{show_path(path)}: replaced while being scanned")
            return rel, path, iter(()), None

    def _descend(self, rel, path, st):
        if self.ahead is not None and len(path) <= LONG_PATH:
            return rel, path, iter(self.take(rel)), None
        # by path, so a folder above may have been swapped for a symlink meanwhile: the
        # folder opened must be the one listed (O_NOFOLLOW guards the last name only)
        fd = os.open(path, DIR_FLAGS)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                raise OSError(errno.ENOTDIR, "replaced while being scanned")
            if len(path) > LONG_PATH:                  # reached through its fd from now on
                path = fd_path(fd)
            listing = read_folder(fd, fd_path(fd), self.asked) if self.ahead is None else \
                self.take(rel)
        except BaseException:
            os.close(fd)
            raise
        if not path.startswith(_PROC_FD):
            os.close(fd)
            fd = None
        return rel, path, iter(listing), fd

    def take(self, rel):
        """The listing of the folder rel from the read-ahead walk, which runs the same order
        and passes the same folders over (other filesystems, mount points, kept paths) but not
        those left out by pattern: their listings come first, and are let go."""
        while True:
            got = self.ahead.next()
            if got is None:
                raise ScanError(f"cannot read {show_path(self.abs_path(rel))}: the walk ended "
                                "early (out of memory?)")
            got_rel, listing, error = got
            if got_rel == rel:
                if error:
                    raise OSError(error, os.strerror(error))
                return listing

    def visit(self, rel, path, st, xattrs, target):
        """Queue the Entry for one lstat result (and the xattrs and symlink target read with
        it), with whatever must finish it."""
        entry = entry_from_stat(rel, st)
        if not _TIME_LOW <= entry.mtime_ns <= _TIME_HIGH:
            self.fit_time(entry)
        kind = entry.kind
        inode = None
        if kind is not Kind.DIR and st.st_nlink > 1:
            inode = (st.st_dev, st.st_ino)
            leader = self.hardlinks.get(inode)
            if leader is not None:          # same inode: same xattrs, target and content
                entry.xattrs = leader.xattrs
                entry.target = leader.target
                self.pending.append(_LinkMember(entry, inode))
                return
        entry.xattrs = xattrs
        entry.target = target
        if self.asked:
            self.volume.fit(entry)
            if entry.mtime_ns < 0:
                entry.mtime_ns = ntfs.exact_mtime(path, entry.mtime_ns)
        if inode is not None:
            self.hardlinks[inode] = entry
        if kind is Kind.FILE:
            size = st.st_size
            if size == 0:
                entry.digest, entry.sparse = EMPTY_DIGEST, False
            else:
                known = self.find_previous(path_key(rel), st)
                if known is not None and not known[2]:
                    # taken on size and mtime alone: no stat row vouches for it, nor for its
                    # holes, which are the file's own (a stat proof keeps them)
                    sparse = holes_at(path)
                    known = None if sparse is None else (known[0], sparse, False)
                if known is None and self.wanted_sizes is not None and size not in self.wanted_sizes:
                    self.pending.append(entry)      # content of no use: left unread
                    return
                if known is None and path.startswith(_PROC_FD):
                    # reached through this process's fd: the worker processes cannot open it
                    if self.apply(entry, hash_file(path)) is not None:
                        self.pending.append(entry)
                    return
                if known is None:           # hash it in a batch; inline, as this runs per file
                    batch = self.batch
                    self.pending.append(_Hashing(entry, batch, len(batch.paths)))
                    batch.paths.append(path)
                    batch.bytes += size
                    if len(batch.paths) >= BATCH_FILES or batch.bytes >= BATCH_BYTES:
                        self.flush()
                    return
                entry.digest, entry.sparse, proved = known
                if not proved:
                    entry.ino = entry.ctime_ns = None
        self.pending.append(entry)

    def flush(self):
        """Hand the batch being filled to the hash pool, and start a new one."""
        batch = self.batch
        if batch.paths:
            batch.future = self.pool.submit(hash_batch, batch.paths)
            self.batch = _Batch()

    def drain(self, limit):
        """Pass on the finished entries at the head of the window; wait for a batch only while
        more than limit entries are held."""
        pending, on_progress = self.pending, self.on_progress
        emitted, emitted_bytes = self.emitted, self.emitted_bytes     # locals: once per entry
        try:
            while pending:
                head = pending[0]
                what = type(head)
                if what is _Hashing:
                    batch = head.batch
                    if (batch.answers is None and len(pending) <= limit
                            and (batch.future is None or not batch.future.done())):
                        return
                    pending.popleft()
                    entry = self.finish_hashing(head)
                    if entry is None:
                        continue
                elif what is _LinkMember:
                    pending.popleft()
                    entry = self.finish_member(head)
                    if entry is None:
                        continue
                else:
                    entry = pending.popleft()
                emitted += 1
                if entry.size:
                    emitted_bytes += entry.size
                if on_progress is not None and emitted % 512 == 0:
                    on_progress(emitted, emitted_bytes)
                yield entry
        finally:
            self.emitted, self.emitted_bytes = emitted, emitted_bytes

    def finish_hashing(self, waiting):
        """The entry with its batch's answer applied, or None when its file vanished."""
        batch = waiting.batch
        answers = batch.answers
        if answers is None:
            if batch.future is None:        # only the batch still being filled is unsubmitted
                self.flush()
            answers = batch.answers = batch.future.result()
        return self.apply(waiting.entry, answers[waiting.slot])

    def finish_member(self, member):
        """A later hardlink member with its group's content, or None when it vanished. Its
        leader is ahead in the window, so finished by now."""
        entry = member.entry
        # the group's leader now: the first member, or the one that took its place when it
        # vanished or was found replaced (then it left the group: apply)
        leader = self.hardlinks.get(member.inode)
        if leader is not None and leader.kind is not None:
            return follow(entry, leader)
        entry.link = None                   # no earlier member stands for it: this one leads
        self.hardlinks[member.inode] = entry
        return self.apply(entry, hash_file(self.abs_path(entry.path)))

    def apply(self, entry, hashed, inside=False):
        """Entry with the content a hashing read, or None (and dropped) when its file vanished.
        inside: read through the tree itself (read_inside), whatever inode it found there."""
        problem = hashed.problem
        if problem is not None:
            shown = show_path(self.abs_path(entry.path))
            if problem is Problem.ERROR:
                raise ScanError(f"cannot read {shown}: {hashed.message}")
            self.warn(f"{shown}: {hashed.message}")
            if problem is Problem.VANISHED:
                entry.kind = None   # marks a dropped entry, so later hardlink members look again
                return None
        content = hashed.content
        if not inside and entry.ino is not None and \
                (content.ino, content.dev) != (entry.ino, self.root_st.st_dev):
            # the path led to another file than the one listed: replaced (an atomic rename),
            # or a folder above it swapped for a symlink to outside the tree; what is there now
            # is read again through the tree itself. It is no longer the listed inode: if that
            # one had other links, they are a group without it (finish_member)
            listed = (self.root_st.st_dev, entry.ino)
            if self.hardlinks.get(listed) is entry:
                del self.hardlinks[listed]
            hashed, entry.xattrs = self.read_inside(entry.path)
            return self.apply(entry, hashed, inside=True)
        if inside and content.dev != self.root_st.st_dev:     # something mounted there since
            self.warn(f"{show_path(self.abs_path(entry.path))}: replaced while being scanned")
            entry.kind = None
            return None
        listed_fitted = entry.mtime_ns in (_TIME_LOW, _TIME_HIGH)     # warned about already
        entry.digest, entry.sparse = content.digest, content.sparse
        entry.size, entry.mtime_ns = content.size, content.mtime_ns
        entry.mode, entry.uid, entry.gid = content.mode, content.uid, content.gid
        entry.ino, entry.ctime_ns = content.ino, content.ctime_ns
        if self.asked:
            self.volume.fit(entry)
            if entry.mtime_ns < 0:
                entry.mtime_ns = ntfs.exact_mtime(self.abs_path(entry.path), entry.mtime_ns)
        if not _TIME_LOW <= entry.mtime_ns <= _TIME_HIGH:
            self.fit_time(entry, warn=not listed_fitted)
        return entry

    def read_inside(self, rel):
        """(Hashed, xattrs) of the file at rel reached from the tree's root, each folder opened
        without following a symlink: what is there now, and surely inside the tree."""
        vanished = Hashed(Problem.VANISHED, "vanished while being scanned", None), None
        parent, name = split(rel)
        try:
            dir_fd = open_dir(self.root_fd, parent)
        except OSError:
            return vanished
        try:
            where = proc_path(dir_fd, name)
            hashed = hash_file(where)
            return hashed, read_xattrs(where, self.asked) if hashed.problem is None else None
        except OSError:
            return vanished
        finally:
            os.close(dir_fd)

    def fit_time(self, entry, warn=True):
        """An mtime a manifest cannot hold (int64 nanoseconds: 1677 to 2262; ext4 allows up
        to 2446) is recorded as the nearest it can, with a warning."""
        fitted = min(max(entry.mtime_ns, _TIME_LOW), _TIME_HIGH)
        if warn:
            self.warn(f"{show_path(self.abs_path(entry.path))}: modification time out of the "
                      f"manifest's range, recorded as {fitted} ns")
        entry.mtime_ns = fitted

    def abs_path(self, rel):
        return self.root + b"/" + rel if rel else self.root


LONG_PATH = 3800       # a folder's path beyond this is reached through its fd instead
_TIME_LOW, _TIME_HIGH = -(1 << 63), (1 << 63) - 1     # what a manifest's mtime_ns can hold
_PROC_FD = fd_path(0)[:-1]         # b"/proc/self/fd/": a path reached through this process's fd


def _read_folder_in_python(dir_fd: int, dir_path: bytes, asked=()) -> list:
    """What _folder.read_folder gives, in Python: [(name, st, xattrs, target, error)] of the
    open folder dir_fd (at dir_path), sorted by name; error is 0 or the errno of the first step
    that failed for that name."""
    listing = []
    for name in names_in(dir_fd):
        try:                 # all through dir_fd: a folder above swapped meanwhile is no way out
            st = os.lstat(name, dir_fd=dir_fd)
            xattrs = read_xattrs(proc_path(dir_fd, name), asked)
            target = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None
        except OSError as exc:
            # EINVAL from readlink: no longer a symlink, the one listed is gone from there
            listing.append((name, None, None, None,
                            errno.ENOENT if exc.errno == errno.EINVAL else exc.errno))
            continue
        listing.append((name, st, xattrs, target, 0))
    return listing


def _compiled():
    """The compiled part (built by pip install, see setup.py), unless DIFFIMG_PURE_PYTHON is
    set or it is not built."""
    if os.environ.get("DIFFIMG_PURE_PYTHON"):
        return None
    try:
        from . import _folder
    except ImportError:
        return None
    return _folder


_core = _compiled()
read_folder = _core.read_folder if _core is not None else _read_folder_in_python
ReadAhead = _core.ReadAhead if _core is not None else None
