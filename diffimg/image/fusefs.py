"""diffimg mount: a chain's tree shown read-only through FUSE (pyfuse3), with the manifest's
metadata (owner, mode, nanosecond times, xattrs, hardlinks) and each file's content taken from
the newest layer that stores it (the layers' containers mounted read-only for as long).

A file's stored content is copied whole, and hashed as it is, into a private unlinked file (in
this run's folder, TMPDIR) when it is opened (in a worker thread: the other requests go on), and
refused (EIO) when it is not what its record says; reads are then served from that copy, which
no one else can change: nothing damaged is ever read as good, even from an image its owner
rewrites meanwhile. A copy lives while a handle of its file is open; after the last release it
is kept in a small cache (at most a quarter of TMPDIR's free room at the mount, 64 MiB, 64
files; the least recently used go first) and dropped at once when a new copy needs the room, so
reading a whole tree needs room for about the files open at once. A file that cannot be copied
for want of room is ENOSPC (EMFILE without descriptors), never the EIO of damaged content.
The tree and where each content lies are read before the mount (never through it), and held in
memory (about 300 bytes an entry).
"""

import collections
import contextlib
import errno
import os
import stat

import pyfuse3
import trio
import xxhash

from ..entry import FMT_OF_KIND, Kind
from ..errors import show_path
from ..system import runs
from ..system.fsmeta import unescape_field
from ..system.safefs import open_regular, pwrite_all, split
from .chain import index_chain, open_chain

_TTL = 300.0          # the tree never changes: the kernel may keep what it was told
_CACHE_BYTES = 64 << 20    # released copies kept for a re-open: at most this (and a quarter
_CACHE_FILES = 64          # of TMPDIR's free room at the mount), and this many descriptors
_RELEASE_WAIT = 1.0        # seconds a copy without room waits for the releases on their way
# a copy that cannot be made for want of room (or descriptors) says so: ENOSPC, EMFILE
_NO_ROOM = {errno.ENOSPC: errno.ENOSPC, errno.EDQUOT: errno.ENOSPC, errno.EFBIG: errno.ENOSPC,
            errno.EMFILE: errno.EMFILE, errno.ENFILE: errno.EMFILE, errno.ENOMEM: errno.ENOMEM}


class _NoRoom(Exception):
    """No room in TMPDIR (or no descriptor) for a private copy: errno, as the reader is told."""

    def __init__(self, code: int):
        super().__init__(code)
        self.errno = _NO_ROOM[code]


class _Copy:
    """A verified private copy: its fd, the room it takes, the handles open on it."""
    __slots__ = ("fd", "room", "users")

    def __init__(self, fd: int):
        self.fd = fd
        self.room = os.fstat(fd).st_blocks * 512
        self.users = 0


class _Pending:
    """A copy being made: who waits for it hears how it ended (errno, when it failed)."""
    __slots__ = ("done", "error")

    def __init__(self):
        self.done = trio.Event()
        self.error = 0


class ChainFS(pyfuse3.Operations):
    """The tree of one chain, read-only. Inode numbers: the root is ROOT_INODE, then each
    entry's position in the manifest; a later hardlink member is its first member's inode."""

    def __init__(self, layers, roots: dict):
        super().__init__()
        # each layer's tree held open from before the mount: a mount point on or inside a
        # container's folder (a dir-format image's tree) then hides nothing from the server,
        # which would otherwise read through its own mount and wait on itself for ever
        self._layers = layers
        self._roots = {n: os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC) for n, root in roots.items()}
        self._entries: dict[int, object] = {}
        self._children: dict[int, dict[bytes, int]] = {}
        self._listings: dict[int, list] = {}
        self._nlink: dict[int, int] = {}
        self._copies: dict[int, _Copy] = {}       # inode -> its copy, open or cached
        self._copying: dict[int, _Pending] = {}
        self._cached: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._cached_room = 0                     # (released copies, least recently used first)
        try:
            room = os.statvfs(runs.current().folder)
            self._budget = min(_CACHE_BYTES, room.f_bavail * room.f_frsize // 4)
        except OSError:
            self._budget = 0
        self._open: dict[int, int | None] = {}    # file handle -> inode (None: empty file)
        self._handles = 0
        self._sources = _sources(layers)          # digest -> where the chain stores it
        inode_of: dict[bytes, int] = {}
        for number, e in enumerate(layers[-1].entries()):
            ino = pyfuse3.ROOT_INODE if not e.path else pyfuse3.ROOT_INODE + number
            if e.link is not None:
                ino = inode_of[e.link]
                self._nlink[ino] = self._nlink.get(ino, 1) + 1
            else:
                self._entries[ino] = e
            inode_of[e.path] = ino
            if e.path:
                parent = inode_of[split(e.path)[0]]
                self._children.setdefault(parent, {})[e.name] = ino
            if e.kind is Kind.DIR:
                self._children.setdefault(ino, {})
        for ino, names in self._children.items():     # a folder's links: '.', its own, subfolders
            self._nlink[ino] = 2 + sum(self._entries[c].kind is Kind.DIR for c in names.values())

    def _entry(self, ino: int):
        e = self._entries.get(ino)
        if e is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return e

    def _attributes(self, ino: int) -> pyfuse3.EntryAttributes:
        e = self._entry(ino)
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.st_mode = FMT_OF_KIND[e.kind] | e.mode
        a.st_nlink = self._nlink.get(ino, 1)
        a.st_uid, a.st_gid = e.uid, e.gid
        a.st_rdev = e.rdev or 0
        a.st_size = e.size if e.size is not None else len(e.target) if e.target is not None else 0
        a.st_blksize = 4096
        a.st_blocks = 0 if e.sparse else (a.st_size + 511) // 512   # (holes: where, unknown)
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = e.mtime_ns
        a.attr_timeout = a.entry_timeout = _TTL
        return a

    async def getattr(self, inode, ctx=None):
        return self._attributes(inode)

    async def lookup(self, parent_inode, name, ctx=None):
        ino = self._children.get(parent_inode, {}).get(bytes(name))
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(ino)

    async def opendir(self, inode, ctx):
        if self._entry(inode).kind is not Kind.DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        names = self._listings.get(fh)
        if names is None:
            names = self._listings[fh] = list(self._children.get(fh, {}).items())
        for index in range(start_id, len(names)):
            name, ino = names[index]
            if not pyfuse3.readdir_reply(token, name, self._attributes(ino), index + 1):
                break

    async def readlink(self, inode, ctx):
        e = self._entry(inode)
        if e.target is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return e.target

    async def listxattr(self, inode, ctx):
        return list((self._entry(inode).xattrs or {}).keys())

    async def getxattr(self, inode, name, ctx):
        value = (self._entry(inode).xattrs or {}).get(bytes(name))
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value

    async def open(self, inode, flags, ctx):
        e = self._entry(inode)
        if e.kind is not Kind.FILE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise pyfuse3.FUSEError(errno.EROFS)
        if e.size:
            await self._use(inode, e)
        self._handles += 1
        self._open[self._handles] = inode if e.size else None
        return pyfuse3.FileInfo(fh=self._handles, keep_cache=True)

    async def _use(self, inode: int, e):
        """Count one more handle on e's verified private copy, made now unless it is open or
        cached (one copy per inode, however many open it at once)."""
        while True:
            copy = self._copies.get(inode)
            if copy is not None:
                if inode in self._cached:        # (a copy just made is in neither)
                    self._cached_room -= copy.room
                    del self._cached[inode]
                copy.users += 1
                return
            pending = self._copying.get(inode)
            if pending is not None:
                await pending.done.wait()
                if pending.error:
                    raise pyfuse3.FUSEError(pending.error)
                continue                 # made (and perhaps already dropped again): look again
            self._copying[inode] = pending = _Pending()
            try:
                self._copies[inode] = await self._made(e)
            except pyfuse3.FUSEError as exc:
                pending.error = exc.errno
                raise
            finally:
                del self._copying[inode]
                pending.done.set()

    async def _made(self, e) -> _Copy:
        """A new verified private copy of e's content; one that finds no room drops the cached
        copies and tries again, then says ENOSPC (not EIO: nothing is damaged)."""
        # in a worker thread: should the layer's path lead into this very mount (a shared bind
        # mount propagates it there), the requests that causes are answered and _stored refuses
        # the foreign filesystem, instead of the loop waiting on itself
        waited = 0.0
        while True:
            try:
                src = await trio.to_thread.run_sync(self._stored, e)
                try:
                    copy = await trio.to_thread.run_sync(_verified_copy, src, e.size, e.digest)
                finally:
                    os.close(src)
            except _NoRoom as exc:
                if self._cached:
                    self._drop_cached(0)
                elif waited < _RELEASE_WAIT and self._copies:     # (all in use: none cached)
                    # the kernel sends a release after close() has returned: a reader's last
                    # file may still hold its room for a moment
                    await trio.sleep(0.05)
                    waited += 0.05
                else:
                    raise pyfuse3.FUSEError(exc.errno) from None
                continue
            if copy is None:
                raise pyfuse3.FUSEError(errno.EIO)          # damaged: never read as good
            return _Copy(copy)

    def _drop_cached(self, room: int, files: int = 0):
        """Drop the least recently used released copies until those left take at most room
        bytes and files descriptors."""
        while self._cached and (self._cached_room > room or len(self._cached) > files):
            inode, _ = self._cached.popitem(last=False)
            copy = self._copies.pop(inode)
            self._cached_room -= copy.room
            os.close(copy.fd)

    def _stored(self, e) -> int:
        """An fd of the stored content of e, in the newest layer that stores it, reached folder
        by folder without following a symlink or leaving the layer's filesystem."""
        try:
            source = self._sources[e.digest]
            root = self._roots[source.layer]
            dev = os.fstat(root).st_dev
            parent, name = split(source.path)
            fd = os.dup(root)
            try:
                for part in parent.split(b"/") if parent else ():
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                    | os.O_CLOEXEC, dir_fd=fd)
                    os.close(fd)
                    fd = child
                    if os.fstat(fd).st_dev != dev:
                        raise OSError(errno.EXDEV, "a mount inside the layer")
                src = open_regular(fd, name, os.O_RDONLY | os.O_CLOEXEC)
            finally:
                os.close(fd)
            if os.fstat(src).st_dev != dev:
                os.close(src)
                raise OSError(errno.EXDEV, "a mount inside the layer")
            return src
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise _NoRoom(exc.errno) from None
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            raise pyfuse3.FUSEError(errno.EIO) from None

    async def read(self, fh, off, size):
        inode = self._open.get(fh)
        return os.pread(self._copies[inode].fd, size, off) if inode is not None else b""

    async def release(self, fh):
        """The last handle of a file released: its copy goes to the cache, whose oldest copies
        go beyond its budget."""
        inode = self._open.pop(fh, None)
        copy = self._copies.get(inode) if inode is not None else None
        if copy is None:
            return
        copy.users -= 1
        if not copy.users:
            self._cached[inode] = None
            self._cached_room += copy.room
            self._drop_cached(self._budget, _CACHE_FILES)

    def close(self):
        for fd in [*self._roots.values(), *(c.fd for c in self._copies.values())]:
            os.close(fd)
        self._roots, self._copies, self._cached = {}, {}, collections.OrderedDict()

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_namemax = 255
        return s


def _verified_copy(src: int, size: int, digest: bytes) -> int | None:
    """An unlinked private copy of src's content (this run's folder), when it is size bytes of
    digest; None otherwise (read no further than size + 1 bytes). _NoRoom when the copy cannot
    be made or written for want of room or descriptors."""
    try:
        copy = os.open(runs.current().folder, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise _NoRoom(exc.errno) from None
        return None
    hasher, offset = xxhash.xxh3_128(), 0
    try:
        while offset <= size and (chunk := os.pread(src, min(1 << 20, size + 1 - offset), offset)):
            hasher.update(chunk)
            if chunk.count(0) != len(chunk):          # zeros stay a hole in the copy
                try:
                    pwrite_all(copy, chunk, offset)
                except OSError as exc:
                    if exc.errno in _NO_ROOM:
                        os.close(copy)
                        raise _NoRoom(exc.errno) from None
                    raise
            offset += len(chunk)
        os.ftruncate(copy, offset)
    except OSError:
        offset = -1
    if (offset, hasher.digest()) != (size, digest):
        os.close(copy)
        return None
    return copy


def _sources(layers) -> dict:
    """digest -> Source of each content of the final tree (read once, before the mount: never
    through it)."""
    return index_chain(layers).sources(
        {e.digest for e in layers[-1].entries() if e.kind is Kind.FILE and e.size})


def serve(images, mountpoint, on_ready=None):
    """Mount the chain's tree at mountpoint and serve it until it is unmounted (or Ctrl-C,
    SIGTERM); the layers' containers are mounted for as long, and everything is undone at the
    end. on_ready() once the tree is mounted."""
    layers = open_chain(images)
    with contextlib.ExitStack() as mounts:
        roots = {n: mounts.enter_context(layer.content()) for n, layer in enumerate(layers)}
        fs = ChainFS(layers, roots)
        pyfuse3.init(fs, os.fsdecode(mountpoint),
                     {"ro", "nodev", "nosuid", "fsname=diffimg-%d" % os.getpid(), "subtype=diffimg",
                      "allow_other", "default_permissions"})
        unmounted = False
        try:
            if on_ready is not None:
                on_ready()
            trio.run(pyfuse3.main)
            unmounted = True
        finally:
            pyfuse3.close(unmount=not unmounted)
            fs.close()


def mount_point_problem(layers, mountpoint) -> str | None:
    """Why mountpoint cannot take the chain's tree: it lies inside an image (a dir-format
    image's folder), where the server would read its layers through its own mount."""
    point = os.path.realpath(os.fsencode(mountpoint))
    for layer in layers:
        image = os.path.realpath(layer.path)
        if point == image or point.startswith(image + b"/"):
            return (f"{show_path(mountpoint)} lies inside the image "
                    f"{show_path(layer.path)}; mount it elsewhere")
    return None


def is_diffimg_mount(mountpoint) -> int | None:
    """The pid serving the diffimg mount at mountpoint, or None when the mount on top there (the
    one umount takes away: the last listed) is not one."""
    wanted = os.path.realpath(os.fsencode(mountpoint))
    top = None
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            if os.fsencode(unescape_field(fields[4])) == wanted:
                top = fields
    if top is None:
        return None
    sep = top.index(b"-")
    if top[sep + 1] == b"fuse.diffimg" and top[sep + 2].startswith(b"diffimg-"):
        with contextlib.suppress(ValueError):
            return int(top[sep + 2][len(b"diffimg-"):])
    return None


def is_folder(path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False
