"""Read and write manifests (spec/manifest.md), and compute tree IDs.

A manifest file is MAGIC, a 2-byte major and a 2-byte minor version, then one zstd frame holding
msgpack objects: a header map, one array per entry in canonical order, a trailer map.
"""

import contextlib
import os
import socket
import stat
import struct
import time

import xxhash

from .. import __version__, codec
from ..entry import Entry, Hint, Kind, inode_fields
from ..errors import InputNotFound, ManifestError, OutputError, UnsupportedVersion, show_path
from ..system import runs
from ..system.safefs import open_file
from ..windows import ntfs, streams
from . import statcache

MAGIC = b"\x89DIFFIMG"
VERSION = (1, 1)
_PREAMBLE = struct.Struct(">8sHH")
HASH_NAME = "xxh3-128"
_EMPTY_DIGEST = xxhash.xxh3_128_digest(b"")

def to_record(e: Entry) -> list:
    """The entry's record: its fields by position (spec/manifest.md). A later minor version may
    append positions; readers ignore them."""
    return [e.path, int(e.kind), e.mode, e.uid, e.gid, e.mtime_ns, e.size, e.digest, e.target,
            e.rdev, e.xattrs, e.link, e.sparse]


_KINDS = {int(k): k for k in Kind}
_DEVICES = (Kind.CHAR, Kind.BLOCK)
_U32 = 1 << 32
_I64 = 1 << 63
MAX_TARGET = 4095          # a symlink's target: PATH_MAX less its NUL


def _int(value, low: int, high: int) -> bool:
    """value is an int in [low, high)."""
    return type(value) is int and low <= value < high


def from_record(rec) -> Entry:
    """An Entry from a decoded record, checking every field (spec/manifest.md, "Field rules"):
    its type and range, nil exactly where the kind has no such field, and the path's safety."""
    if type(rec) is not list or len(rec) < 13:
        raise ValueError("record is not an array of at least 13 fields")
    (path, kind, mode, uid, gid, mtime_ns, size, digest, target, rdev, xattrs, link,
     sparse) = rec[:13]
    if type(path) is not bytes:
        raise ValueError("path is not bytes")
    kind = _KINDS.get(kind) if type(kind) is int else None
    if kind is None:
        raise ValueError(f"unknown kind {rec[1]!r}")
    # (2^32 - 1 is "no owner" to chown, which would leave the owner as it is)
    if not (type(mode) is int and 0 <= mode < 0o10000 and type(uid) is int and 0 <= uid < _U32 - 1
            and type(gid) is int and 0 <= gid < _U32 - 1 and type(mtime_ns) is int
            and -_I64 <= mtime_ns < _I64):
        raise ValueError("mode, uid, gid or mtime_ns is not an integer in its range")
    is_file = kind is Kind.FILE
    if is_file:
        if not _int(size, 0, _I64) or type(digest) is not bytes or len(digest) != 16 \
                or type(sparse) is not bool:
            raise ValueError("file without a valid size, digest or sparse flag")
        if size == 0 and digest != _EMPTY_DIGEST:   # restored as empty, whatever it says
            raise ValueError("an empty file whose digest is not that of no bytes")
    elif size is not None or digest is not None or sparse is not None:
        raise ValueError(f"a {kind.name.lower()} with a size, digest or sparse flag")
    if kind is Kind.SYMLINK:
        if type(target) is not bytes or not 0 < len(target) <= MAX_TARGET or b"\0" in target:
            raise ValueError("symlink without a valid target")
        if mode != 0o777:       # Linux gives every symlink 0777, and no way to set another
            raise ValueError("a symlink whose mode is not 0777")
    elif target is not None:
        raise ValueError(f"a {kind.name.lower()} with a symlink target")
    if kind in _DEVICES:
        # Linux's device numbers are 32 bits (12-bit major, 20-bit minor; mknod refuses more)
        if not _int(rdev, 0, 1 << 32):
            raise ValueError("device without a valid rdev (a device number Linux can make)")
    elif rdev is not None:
        raise ValueError(f"a {kind.name.lower()} with a device number")
    if xattrs is not None:
        if type(xattrs) is not dict or not xattrs:
            raise ValueError("xattrs is not a non-empty map")
        last = b""
        for name, value in xattrs.items():
            if type(name) is not bytes or type(value) is not bytes or not name > last \
                    or b"\0" in name:
                raise ValueError("xattrs is not a map of names (sorted, without NUL) to bytes")
            last = name
        if kind is not Kind.SYMLINK and ntfs.REPARSE in xattrs:
            # a restorer gives reparse data only to the empty entry it makes for it
            raise ValueError(f"a {kind.name.lower()} with NTFS reparse data")
        for name in ntfs.NAMES:
            problem = name in xattrs and ntfs.value_problem(name, xattrs[name], kind)
            if problem:
                raise ValueError(problem)
        for name in xattrs:
            problem = name.startswith(streams.REF) and streams.value_problem(name, xattrs[name],
                                                                             kind, xattrs)
            if problem:
                raise ValueError(problem)
        if ntfs.HOLES in xattrs and (kind is not Kind.SYMLINK or ntfs.REPARSE not in xattrs
                                     or len(xattrs[ntfs.HOLES]) != 8
                                     or not 0 < int.from_bytes(xattrs[ntfs.HOLES]) <= ntfs.HOLES_MAX):
            raise ValueError("an NTFS reparse point's holes that are not a size on a reparse "
                             "point")
        if ntfs.DOS_NAME in xattrs and (not path or link is not None):
            # ntfs-3g gives none to the root, nor to an inode with other links
            raise ValueError("an NTFS short name on the root or on a hardlink")
        if ntfs.REPARSE in xattrs and target != ntfs.reparse_target(xattrs[ntfs.REPARSE]):
            raise ValueError("a symlink whose target is not the one its reparse data makes")
        if ntfs.REPARSE in xattrs and ntfs.ATTRIB in xattrs and ntfs.is_junction(
                xattrs[ntfs.REPARSE]) and not ntfs.is_directory(xattrs):
            raise ValueError("a junction whose NTFS attributes say file")
        if kind is Kind.SYMLINK and ntfs.ATTRIB in xattrs and not ntfs.symlink_attributes_fit(
                xattrs[ntfs.ATTRIB], ntfs.REPARSE in xattrs):
            raise ValueError("a symlink whose NTFS attributes ntfs-3g would not show")
    if link is not None and (type(link) is not bytes or kind is Kind.DIR or unsafe_path(link)):
        raise ValueError("invalid hardlink reference")
    return Entry(path, kind, mode, uid, gid, mtime_ns, size, digest, target, rdev, xattrs, link,
                 sparse)


STATE_DIR = b".diffimg"     # diffimg's own folder at a tree's root, never part of a tree


def _unsafe_key(key: list[bytes], path: bytes) -> bool:
    return (b"" in key or b"." in key or b".." in key or b"\0" in path
            or (key and key[0] == STATE_DIR))


def unsafe_path(path: bytes) -> bool:
    """True for a path that could leave a tree (absolute, empty, '.' or '..' parts, NUL) or
    lies in diffimg's own folder at its root."""
    # most paths have no component starting with '.', no empty one and no NUL: four searches
    # in C tell them apart; only the rest are split
    if path and not path.startswith((b".", b"/")) and not path.endswith(b"/") \
            and b"/." not in path and b"//" not in path and b"\0" not in path:
        return False
    return not path or _unsafe_key(path.split(b"/"), path)


class TreeId:
    """The tree ID: xxh3-128 over the canonical encodings of the entry records, in order."""

    def __init__(self):
        self._h = xxhash.xxh3_128()
        self.entries = 0
        self.files = 0
        self.bytes = 0

    def add(self, entry: Entry) -> bytes:
        """Add entry; return the canonical encoding of its record."""
        data = codec.pack(to_record(entry))
        self._h.update(data)
        self.count(entry)
        return data

    def update(self, records: bytes):
        """Add the encodings of records as read from a stream (counted one by one with count)."""
        self._h.update(records)

    def count(self, entry: Entry):
        self.entries += 1
        if entry.kind is Kind.FILE:
            self.files += 1
            self.bytes += entry.size

    def digest(self) -> bytes:
        return self._h.digest()

    def trailer(self) -> dict:
        return {"entries": self.entries, "files": self.files, "bytes": self.bytes,
                "tree_id": self.digest()}


def make_header(source: dict | None = None) -> dict:
    return {
        "format": list(VERSION),
        "hash": HASH_NAME,
        "created_ns": _now_ns(),
        "tool": f"diffimg {__version__}",
        "host": socket.gethostname(),
        "source": source or {},
    }


def _now_ns() -> int:
    """Now, or SOURCE_DATE_EPOCH (seconds) when set to a whole number: the reproducible-builds
    convention, so that two scans of one tree give byte-identical manifests."""
    fixed = os.environ.get("SOURCE_DATE_EPOCH", "")
    if fixed.isdigit() and int(fixed) < 2**63 // 10**9:
        return int(fixed) * 10**9
    return time.time_ns()


class ManifestWriter:
    """Write a manifest entry by entry; the file appears under its name only when complete
    (temp name, fsync, rename), and not at all when the writing fails.

    with ManifestWriter(path, source) as w:
        w.add(entry) ...            (or: for e in w.recording(entries): ...)
    w.trailer
    """

    BATCH = 512      # records per compressor call

    def __init__(self, path, source: dict | None = None, stats: "statcache.StatRecorder | None" = None):
        """stats: collects each entry's stat row; the section is written after the records."""
        self.path = os.fsencode(path)
        self._stats = stats
        directory = os.path.dirname(self.path) or b"."
        # a new name no one can foresee, made here (never through a symlink planted for it)
        # (the name cut short: the random part makes it unique, and it must fit in NAME_MAX)
        self._tmp = os.path.join(directory, b".%s.tmp-%d-%s" % (
            os.path.basename(self.path)[:100], os.getpid(), os.urandom(6).hex().encode()))
        runs.current().made(self._tmp)          # a later run removes it if this one is killed
        self._ids = TreeId()
        self._pack = codec.packer().pack
        self._pending: list[bytes] = []
        self.trailer: dict | None = None
        _replaceable(self.path)
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
            self._raw = open(fd, "wb")  # noqa: SIM115  (closed by close() or abort())
            self._raw.write(_PREAMBLE.pack(MAGIC, *VERSION))
            self._z = codec.compressing_writer(self._raw)
            self._z.write(codec.pack(make_header(source)))
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write manifest {show_path(self.path)}: {exc.strerror}") from None
        except BaseException:               # Ctrl-C, SIGTERM: nothing is left behind either
            self.abort()
            raise

    def add(self, entry: Entry):
        # TreeId.add, unrolled: this runs once per entry of every scan
        self._pending.append(self._pack(to_record(entry)))
        if self._stats is not None:
            self._stats.add(entry)
        ids = self._ids
        ids.entries += 1
        if entry.kind is Kind.FILE:
            ids.files += 1
            ids.bytes += entry.size
        if len(self._pending) >= self.BATCH:
            self._flush()

    def recording(self, entries):
        """Pass entries through, writing each one."""
        for entry in entries:
            self.add(entry)
            yield entry

    def _flush(self):
        records = b"".join(self._pending)
        self._ids.update(records)
        try:
            self._z.write(records)
        except OSError as exc:
            raise OutputError(f"cannot write manifest {show_path(self.path)}: {exc.strerror}") from None
        self._pending.clear()

    def close(self) -> dict:
        try:
            self._flush()
            self._z.write(codec.pack(self._ids.trailer()))
            self._z.close()
            if self._stats is not None:
                self._stats.write(self._raw, self._raw.tell(), self._ids.digest())
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            _replaceable(self.path)
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write manifest {show_path(self.path)}: {exc.strerror}") from None
        except BaseException:
            self.abort()
            raise
        self.trailer = self._ids.trailer()
        return self.trailer

    def abort(self):
        raw = getattr(self, "_raw", None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.close()
        _remove_quietly(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _replaceable(path: bytes):
    """OutputError unless path is absent or a regular file (a manifest written before): a
    device, a folder, a FIFO or a symlink there is never replaced by the manifest."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot write manifest {show_path(path)}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{show_path(path)} exists and is not a file: a manifest never "
                          "replaces it; give another name")


def write_manifest(path, entries, source: dict | None = None, stats=None) -> dict:
    """Write entries to a manifest file at path atomically; return the trailer."""
    with ManifestWriter(path, source, stats) as writer:
        for entry in entries:
            writer.add(entry)
    return writer.trailer


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def is_manifest(path) -> bool:
    try:
        with open_file(path) as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class ManifestReader:
    """Stream a manifest's entries, validating order, paths and the trailer as it goes.

    with ManifestReader(path) as m:
        m.header; for e in m.entries(): ...; m.trailer
    """

    def __init__(self, path, offset: int = 0, length: int | None = None, error=ManifestError):
        """The manifest in the file at path, or in its bytes [offset, offset + length). error:
        the class of the errors it raises (an image's manifest is a bad image: ImageError)."""
        self.error = error
        with self._errors_as_own():
            self._start(path, offset, length)

    @contextlib.contextmanager
    def _errors_as_own(self):
        try:
            yield
        except ManifestError as exc:
            if self.error is ManifestError or isinstance(exc, UnsupportedVersion):
                raise
            raise self.error(exc.message) from None

    def _own_errors(self, stream):
        with self._errors_as_own():
            yield from stream

    def _start(self, path, offset, length):
        self.path = path
        self.header: dict = {}
        self.trailer: dict | None = None
        try:
            self._file = open_file(path)      # (closed by close())
            end = self._file.seek(0, os.SEEK_END) if length is None else offset + length
            self._span = (offset, end)
            # the records end where the stat section (if any) begins
            records_end = statcache.records_end(self._file, offset, end)
            self._file.seek(offset + _PREAMBLE.size)
            self._frame_head = self._file.read(18)
            self._file.seek(offset)
            self._file = codec.Window(self._file, records_end - offset)
        except FileNotFoundError:
            raise InputNotFound(f"no such file: {show_path(path)}") from None
        except OSError as exc:
            raise ManifestError(f"cannot read {show_path(path)}: {exc.strerror}") from None
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _fail(self, what: str):
        raise self.error(f"{show_path(self.path)}: {what}")

    def _open(self):
        pre = self._file.read(_PREAMBLE.size)
        if len(pre) < _PREAMBLE.size or pre[:len(MAGIC)] != MAGIC:
            self._fail("not a diffimg manifest")
        _, major, minor = _PREAMBLE.unpack(pre)
        if major != VERSION[0]:
            raise UnsupportedVersion(
                f"{show_path(self.path)}: manifest format {major}.{minor} is not supported "
                f"(this diffimg reads format {VERSION[0]}.x)")
        self.version = (major, minor)
        try:
            codec.check_frame(self._frame_head)
        except ValueError as exc:
            self._fail(f"corrupt ({exc})")
        self._reader = codec.ObjectReader(self._file)
        self._objects = iter(self._reader)
        header, self._records_start = self._next_object()
        if type(header) is not dict:
            self._fail("no header")
        if header.get("format") != [major, minor] or header.get("hash") != HASH_NAME:
            self._fail("header's format or hash does not match the manifest's")
        self.header = header

    def _next_object(self):
        try:
            return next(self._objects)
        except StopIteration:
            self._fail("truncated (no trailer)")
        except codec.DecodeErrors as exc:
            self._fail(f"corrupt ({exc})")

    def _records(self, ids: "TreeId", canonical: bool = True):
        """Yield the raw records; digest them as written and check the trailer at the end; with
        canonical, check that they are written in their canonical encoding.

        The caller counts each record into ids (ids.count) before asking for the next."""
        hashed = end = self._records_start   # records are digested up to 'hashed'
        held = []                            # the records since then
        while True:
            rec, next_end = self._next_object()
            if type(rec) is dict:
                if ids.entries == 0:
                    self._fail("no root folder record")
                raw = self._reader.take(hashed, end)
                ids.update(self._canonical(held, raw) if canonical else raw)
                self._check_trailer(rec, ids)
                return
            end = next_end
            if canonical:
                held.append(rec)
            if end - hashed >= 1 << 16:    # digest in large pieces, and forget what is digested
                raw = self._reader.take(hashed, end)
                ids.update(self._canonical(held, raw) if canonical else raw)
                self._reader.release(end)
                hashed = end
                held = []
            yield rec

    def _canonical(self, records: list, raw: bytes) -> bytes:
        """raw, when it is exactly the canonical encoding of records (else one tree could have
        two tree IDs): each int, string and array in its smallest form."""
        packed = codec.pack(records)          # one call: an array header, then each record
        header = 1 if len(records) < 16 else 3 if len(records) < 1 << 16 else 5
        if packed[header:] != raw:
            self._fail("a record is not in its canonical encoding")
        return raw

    def entries(self):
        """Yield the entries, fully checked; ManifestError as soon as anything is wrong."""
        ids = TreeId()
        stack: list[list[bytes]] = []     # keys of the folders that enclose the current entry
        last_key = None
        # a hash of each possible hardlink leader's path and inode fields (process-salted: not
        # foreseeable), so a later member's link is checked to name one, in little memory
        leaders: set[int] = set()
        object_ids: set[bytes] = set()    # a volume holds each once (few files have one)
        short_names: list[set] = []       # those given in each folder of the stack (one each)
        for rec in self._records(ids):
            try:
                entry = from_record(rec)
            except ValueError as exc:
                named = f" ({show_path(rec[0])})" if type(rec) is list and rec \
                    and type(rec[0]) is bytes else ""
                self._fail(f"bad record {ids.entries + 1}{named}: {exc}")
            path = entry.path
            key = path.split(b"/") if path else []
            if _unsafe_key(key, path):
                self._fail(f"unsafe path {show_path(path)!r}")
            if last_key is None:
                if path != b"" or entry.kind is not Kind.DIR:
                    self._fail("first record is not the root folder")
            else:
                if key <= last_key:
                    self._fail(f"records out of order at {show_path(path)}")
                parent = key[:-1]
                while stack[-1] != parent:
                    stack.pop()
                    short_names.pop()
                    if not stack:
                        self._fail(f"{show_path(path)} has no parent folder before it")
                if entry.xattrs and ntfs.DOS_NAME in entry.xattrs:
                    # (NTFS compares them without case; they are upper-case ASCII: as they are)
                    if entry.xattrs[ntfs.DOS_NAME] in short_names[-1]:
                        self._fail(f"{show_path(path)}: an NTFS short name another entry of its "
                                   "folder has")
                    short_names[-1].add(entry.xattrs[ntfs.DOS_NAME])
                if entry.link is not None and hash((entry.link, inode_fields(entry))) not in leaders:
                    self._fail(f"{show_path(path)}: its hardlink does not name an earlier entry "
                               "of the same kind and inode metadata")
            if entry.link is None and entry.kind is not Kind.DIR:
                leaders.add(hash((path, inode_fields(entry))))
            if entry.link is None and entry.xattrs and ntfs.OBJECT_ID in entry.xattrs:
                object_id = entry.xattrs[ntfs.OBJECT_ID][:16]
                if object_id in object_ids:
                    self._fail(f"{show_path(path)}: an NTFS object ID another entry has")
                object_ids.add(object_id)
            if entry.kind is Kind.DIR:
                stack.append(key)
                short_names.append(set())
            last_key = key
            ids.count(entry)
            yield entry
        # a manifest is whole or corrupt: its stat section too, whoever reads it (spec)
        self.check_stat_section()

    def check_stat_section(self):
        """Read the whole stat section, if any; ManifestError unless it is whole and belongs to
        these records (call once the entries were read to their end)."""
        with self._errors_as_own():
            section = self.stat_section()
            if section is not None:
                statcache.check_against(section, self.trailer, self.path)   # first: a count to trust
                section.check_rows()

    def stat_section(self) -> "statcache.StatSection | None":
        """The manifest's stat section (statcache.py), None when it has none."""
        return statcache.read_section(self.path, *self._span)

    def file_hints(self, filesystem: dict | None = None, leaders_only: bool = False):
        """Yield a Hint for each file, in canonical order, for a quick check; with the identity
        of the filesystem being scanned, hints carry the stat section's proofs taken on it. Only
        what a hint needs is checked per record; the whole stream's integrity (frame checksum,
        counts, tree ID, the stat section's match) is still checked at its end. leaders_only:
        leave out the later members of hardlink groups (what a container holds)."""
        ids = TreeId()
        file_kind = int(Kind.FILE)
        new = tuple.__new__     # Hint(...) without NamedTuple's Python-level __new__: per file
        with self._errors_as_own():
            section = self.stat_section() if filesystem is not None else None
        proofs = section.proofs(filesystem) if section is not None else None
        if proofs is not None:
            proofs = self._own_errors(proofs)
        proof = None
        for rec in self._records(ids, canonical=False):   # (entries() checks the encoding)
            ids.entries += 1
            if proofs is not None:
                proof = next(proofs, None)
            try:
                if rec[1] != file_kind:
                    continue
                path, size, mtime_ns, digest, sparse = rec[0], rec[6], rec[5], rec[7], rec[12]
            except (TypeError, IndexError):
                self._fail(f"bad record {ids.entries}")
            # (a hint's path is checked for safety where it names content in a container:
            # chain.BaseContents; here it is only compared with the paths of a scan)
            if (type(path) is not bytes or type(size) is not int or size < 0
                    or type(mtime_ns) is not int or type(digest) is not bytes or len(digest) != 16
                    or (sparse is not None and type(sparse) is not bool)):
                self._fail(f"bad record {ids.entries}")
            ids.files += 1
            ids.bytes += size
            if leaders_only and rec[11] is not None:
                continue
            yield new(Hint, (path, size, mtime_ns, digest, sparse, *(proof or (None, None))))
        with self._errors_as_own():
            statcache.check_against(section, self.trailer, self.path)
        if proofs is not None:
            for _ in proofs:          # to its end, where the rows' count is checked
                pass

    def _check_trailer(self, trailer: dict, ids: TreeId):
        expected = ids.trailer()
        for name in ("entries", "files", "bytes", "tree_id"):
            if trailer.get(name) != expected[name]:
                self._fail(f"trailer {name} does not match the records (corrupt)")
        try:
            at_end = self._reader.at_end()
        except codec.DecodeErrors as exc:
            self._fail(f"corrupt after trailer ({exc})")
        if not at_end:
            self._fail("data after the trailer")
        self.trailer = trailer

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_entries(path, offset: int = 0, length: int | None = None, error=ManifestError):
    """Yield the entries of the manifest at path (see ManifestReader), closing it at the end."""
    with ManifestReader(path, offset, length, error) as m:
        yield from m.entries()


def read_file_hints(path, offset: int = 0, length: int | None = None, filesystem=None,
                    error=ManifestError, leaders_only: bool = False):
    """Yield the quick-check hints of the manifest at path (see ManifestReader.file_hints)."""
    with ManifestReader(path, offset, length, error) as m:
        yield from m.file_hints(filesystem, leaders_only)
