"""Named streams (alternate data streams) of NTFS files and folders, of any size.

ntfs-3g's default interface (streams_interface=xattr) shows a stream NAME as the xattr
user.NAME, which the kernel caps at 64 KiB. With streams_interface=windows (how diffimg mounts
an NTFS partition itself, partition.py) a stream is the file FILE:NAME, of any size, and the
xattr ntfs.streams.list, asked for by name, lists them (NUL-separated).

In a manifest a stream of up to INLINE_MAX bytes is the xattr user.NAME, its value the
stream's bytes, whichever interface it was read through; a larger one is the xattr
diffimg.stream.NAME, its value the stream's size (8 bytes, big-endian) and xxh3-128 digest
(spec/manifest.md). The content of a large stream is stored once per image, in its container at
STORE_DIR/<digest in hex> (spec/image.md): a full image stores every large stream of its tree, a
diff those of its records that are new at their path (stored_by).
"""

import contextlib
import errno
import os
import stat
import struct

import xxhash

from ..entry import Kind
from ..errors import ScanError, show_path

LIST = b"ntfs.streams.list"
INLINE = b"user."                  # a stream of up to INLINE_MAX bytes: its bytes
REF = b"diffimg.stream."           # a larger one: its size and digest
INLINE_MAX = 65536                 # the kernel's limit on an xattr value
STORE_DIR = b".diffimg/streams"
_REF_VALUE = struct.Struct(">Q16s")
_CHUNK = 1 << 20
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_NOT_WINDOWS = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


def store_path(digest: bytes) -> bytes:
    """Where a container holds a large stream's content."""
    return STORE_DIR + b"/" + digest.hex().encode()


def listed(target, follow: bool = True) -> list[bytes] | None:
    """The names of target's streams (an fd, or a path); None when its volume does not serve
    them as files (not ntfs-3g with streams_interface=windows)."""
    try:
        value = os.getxattr(target, LIST, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in _NOT_WINDOWS:
            return None
        raise
    return [name for name in value.split(b"\0") if name]


def windows_interface(where) -> bool:
    """Whether where (a path or fd) is on an ntfs-3g volume that serves streams as files."""
    try:
        return listed(where) is not None
    except OSError:
        return False


def reference(size: int, digest: bytes) -> bytes:
    return _REF_VALUE.pack(size, digest)


def referenced(value: bytes) -> tuple[int, bytes]:
    """(size, digest) of a large stream's xattr value."""
    return _REF_VALUE.unpack(value)


def is_stream_name(name: bytes) -> bool:
    """Whether name is a stream name ntfs-3g serves (a non-empty name without ':', '/' or NUL,
    of at most 255 UTF-16 units)."""
    try:
        units = len(name.decode("utf-8").encode("utf-16-le")) // 2
    except UnicodeDecodeError:
        return False
    return 0 < units <= 255 and not any(c in name for c in b":/\0")


def value_problem(name: bytes, value: bytes, kind, xattrs: dict) -> str | None:
    """What is wrong with a large stream's record (a reader refuses it); None if nothing."""
    stream = name[len(REF):]
    if not is_stream_name(stream):
        return "an invalid stream name"
    if kind is not Kind.FILE and kind is not Kind.DIR and not (
            kind is Kind.SYMLINK and b"system.ntfs_reparse_data" in xattrs):   # (ntfs.REPARSE)
        return f"a {kind.name.lower()} with a named stream"
    if len(value) != _REF_VALUE.size or referenced(value)[0] <= INLINE_MAX:
        return "a large stream's record is not a size over 64 KiB and a digest"
    if INLINE + stream in xattrs:
        return "a stream recorded twice"
    return None


def large(xattrs: dict | None):
    """(stream name, size, digest) of each large stream in xattrs."""
    for name, value in (xattrs or {}).items():
        if name.startswith(REF):
            size, digest = referenced(value)
            yield name[len(REF):], size, digest


def is_stream(name: bytes) -> bool:
    """Whether an xattr name is a stream on a volume that serves them as files."""
    return name.startswith(INLINE) or name.startswith(REF)


def read(root: bytes, entry):
    """Replace the list ntfs-3g gave for entry (in its xattrs, under LIST) by its streams:
    each one read from ROOT/PATH:NAME, the same inode as the entry. ScanError for a name
    that is no stream name (one with '/' would reach outside the volume), or a stream that
    changed while it was read."""
    names = entry.xattrs.pop(LIST, None) if entry.xattrs else None
    if not entry.xattrs:
        entry.xattrs = None
    if not names or (entry.kind is not Kind.FILE and entry.kind is not Kind.DIR):
        return
    found = dict(entry.xattrs or {})
    base = os.path.join(root, entry.path)
    for name in names.split(b"\0"):
        if not name:
            continue
        where = show_path(os.path.join(root, entry.path))
        if not is_stream_name(name):
            raise ScanError(f"{where}: a named stream diffimg refuses to read ({show_path(name)!r}: "
                            "not a name Windows gives a stream)")
        try:
            fd = os.open(base + b":" + name, _READ)
        except OSError as exc:
            raise ScanError(f"{where}: cannot read its stream {show_path(name)!r}: {exc.strerror}; "
                            "if it changed, run the command again") from None
        try:
            st = os.fstat(fd)
            if entry.ino is not None and st.st_ino != entry.ino:
                raise ScanError(f"{where} was replaced while being scanned; run the command again")
            if st.st_size <= INLINE_MAX:
                found[INLINE + name] = _read_all(fd)
            else:
                size, digest = _hash(fd)
                found[REF + name] = reference(size, digest)
        finally:
            os.close(fd)
    entry.xattrs = dict(sorted(found.items())) or None


def sync(at: tuple[int, bytes], fd: int, xattrs: dict | None, sources: dict) -> bool:
    """Make the streams of the file or folder open as fd, named at = (dir_fd, name) (name b""
    for the folder dir_fd itself), exactly those in xattrs, when its volume serves them as
    files: False (nothing done) when it does not. sources: digest -> the container tree that
    stores a large stream's content. A stream that differs is made anew in place (NAME:STREAM
    cannot be renamed into place; ntfs-3g lets a folder's be written only when made), checked
    against its digest: a re-run after a crash makes again the one cut short."""
    have = listed(fd)
    if have is None:
        return False
    dir_fd, name = at
    ino = os.fstat(fd).st_ino
    wanted = {k[len(INLINE):]: v for k, v in (xattrs or {}).items() if k.startswith(INLINE)}
    big = {stream: (size, digest) for stream, size, digest in large(xattrs)}
    # every name becomes one path component NAME:STREAM: one with '/' would leave the volume
    for stream in [*have, *wanted, *big]:
        if not is_stream_name(stream):
            raise OSError(errno.EINVAL, f"a named stream diffimg will not touch ({show_path(stream)!r})",
                          name)
    for stream in set(have) - wanted.keys() - big.keys():
        os.unlink(name + b":" + stream, dir_fd=dir_fd)
    for stream, value in wanted.items():
        path = name + b":" + stream
        if stream not in have or _read(dir_fd, path, ino, _read_all) != value:
            _make(dir_fd, path, ino, stream in have, lambda out, value=value: _write(out, [value]))
    for stream, (size, digest) in big.items():
        path = name + b":" + stream
        if stream not in have or _read(dir_fd, path, ino, _hash) != (size, digest):
            _make(dir_fd, path, ino, stream in have,
                  lambda out, size=size, digest=digest: _write_stored(out, sources, size, digest))
    return True


def _read(dir_fd: int, path: bytes, ino: int, how):
    fd = _open_of(dir_fd, path, os.O_RDONLY, ino)
    try:
        return how(fd)
    finally:
        os.close(fd)


def _make(dir_fd: int, path: bytes, ino: int, exists: bool, fill):
    """The stream at path made anew, filled by fill(fd); removed again if fill fails."""
    if exists:
        os.unlink(path, dir_fd=dir_fd)
    fd = _open_of(dir_fd, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ino)
    try:
        fill(fd)
    except BaseException:
        os.close(fd)
        fd = None
        os.unlink(path, dir_fd=dir_fd)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _open_of(dir_fd: int, path: bytes, flags: int, ino: int) -> int:
    """A stream opened with flags, of the inode ino only (else OSError, the stream closed,
    and removed again if this call made it)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    if os.fstat(fd).st_ino != ino:
        os.close(fd)
        if flags & os.O_EXCL:
            with contextlib.suppress(OSError):
                os.unlink(path, dir_fd=dir_fd)
        raise OSError(errno.ESTALE, "replaced while being restored", path)
    return fd


def _write_stored(out: int, sources: dict, size: int, digest: bytes):
    root = sources.get(digest)
    if root is None:
        raise OSError(errno.ENOENT, f"no layer stores its stream {digest.hex()} (a damaged image?)")
    src = _open_stored(root, digest)
    try:
        hasher = xxhash.xxh3_128()

        def chunks():
            while chunk := os.read(src, _CHUNK):
                hasher.update(chunk)
                yield chunk
        written = _write(out, chunks())
    finally:
        os.close(src)
    if (written, hasher.digest()) != (size, digest):
        raise OSError(errno.EIO, f"the stored stream {digest.hex()} does not match its digest "
                      "(a damaged image?)")


def _open_stored(root: bytes, digest: bytes) -> int:
    """The stored content of a large stream in a container's tree, each folder opened without
    following a symlink, only if it is a regular file."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in STORE_DIR.split(b"/"):
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=fd)
            os.close(fd)
            fd = child
        pin = os.open(digest.hex().encode(), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    try:                    # pinned first: a device or FIFO is never opened
        if not stat.S_ISREG(os.fstat(pin).st_mode):
            raise OSError(errno.EINVAL, "a stored stream that is not a regular file")
        return os.open(b"/proc/self/fd/%d" % pin, _READ & ~os.O_NOFOLLOW)
    finally:
        os.close(pin)


def _write(fd: int, chunks) -> int:
    offset = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    return offset


def _read_all(fd: int) -> bytes:
    parts, offset = [], 0
    while chunk := os.pread(fd, _CHUNK, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _hash(fd: int) -> tuple[int, bytes]:
    hasher, offset = xxhash.xxh3_128(), 0
    while chunk := os.pread(fd, _CHUNK, offset):
        hasher.update(chunk)
        offset += len(chunk)
    return offset, hasher.digest()


def stored_by(change) -> list[tuple[bytes, int, bytes]]:
    """The large streams (name, size, digest) a diff stores for one delta record: all those of
    its new entry (apply then takes none from the target)."""
    after = change.after
    if after is None or not after.xattrs or after.link is not None:
        return []           # (a later hardlink member has its first member's streams)
    # all of them, a metadata change too: apply may give the entry a new inode (one whose
    # other links went), which takes its streams from the diff alone
    return list(large(after.xattrs))


def stored_items(streams) -> list[tuple[bytes, bytes, int, bytes]]:
    """(container path, digest, size, the first stream's path in the tree, as PATH:NAME) for
    each content among streams, (path, name, size, digest) items, once."""
    items, seen = [], set()
    for path, name, size, digest in streams:
        if digest not in seen:
            seen.add(digest)
            items.append((store_path(digest), digest, size, path + b":" + name))
    return items


def of_entries(entries):
    """(path, name, size, digest) of every large stream of entries (a full image's tree)."""
    for e in entries:
        if e.xattrs and e.link is None:
            for name, size, digest in large(e.xattrs):
                yield e.path, name, size, digest


def of_changes(changes):
    """(path, name, size, digest) of the large streams a diff stores for changes."""
    for c in changes:
        for name, size, digest in stored_by(c):
            yield c.path, name, size, digest


def layers_storing(layers, wanted: set[bytes]) -> dict[bytes, int]:
    """digest -> the number of the newest of layers (a chain) that stores it, for each large
    stream among wanted that one stores."""
    found = {}
    for number, layer in enumerate(layers if wanted else ()):
        stored = of_entries(layer.entries()) if layer.kind == "full" else of_changes(layer.delta())
        found.update((digest, number) for _, _, _, digest in stored if digest in wanted)
    return found
