"""Walk an NTFS partition given as itself through libntfs-3g (windows/_ntfsvol.c), not through
ntfs-3g's FUSE mount: the same Entries the scanner makes of that mount (ntfs.Volume.fit), in
canonical order, with no round trip through the kernel per value.

Each folder is listed by the library with every child's values read raw (times, DOS
attributes, security descriptor, reparse data, short name, named streams); content is hashed
in C as it is read. The entries are those ntfs-3g shows: the same kinds (an Interix FIFO,
socket, device or symlink as what it is; a reparse point as a symlink), names (UTF-8),
values and streams, so a tree ID does not depend on which reader read it. What the library
sees better, the entries say: a file's holes (sparse), an mtime before 1970 to the 100 ns.

A file's stat proof (statcache.py) is the same as through the mount: its MFT record number
(ntfs-3g's inode number) and the MFT change time of $STANDARD_INFORMATION (its ctime).
"""

import errno
import stat
import struct
from typing import NamedTuple

from ..entry import Entry, Kind, follow, path_key
from ..errors import ScanError, show_path
from ..system.partition import ntfs_volume_of
from ..tree.manifest import STATE_DIR
from ..windows import ntfs, streams
from .hashing import EMPTY_DIGEST

_KINDS = {"d": Kind.DIR, "f": Kind.FILE, "l": Kind.SYMLINK, "p": Kind.FIFO, "s": Kind.SOCKET,
          "c": Kind.CHAR, "b": Kind.BLOCK}
_TIME_LOW, _TIME_HIGH = -(1 << 63), (1 << 63) - 1
_WOF_TAG = struct.pack("<I", 0x80000017)     # IO_REPARSE_TAG_WOF: a file Windows compressed
_CHUNK = 1 << 20


class _Stat(NamedTuple):
    """What a quick-check hint is compared with (scanner._lookup), and a state's row is taken
    from (stats_of)."""
    st_size: int
    st_mtime_ns: int
    st_ino: int
    st_ctime_ns: int
    st_mode: int = stat.S_IFREG


_MODES = {"d": stat.S_IFDIR, "f": stat.S_IFREG, "l": stat.S_IFLNK, "p": stat.S_IFIFO,
          "s": stat.S_IFSOCK, "c": stat.S_IFCHR, "b": stat.S_IFBLK}


class StatsOf:
    """stat_of(entry): the stat ntfs-3g's lstat shows of the entry's path on the volume (kind,
    size, mtime, and its stat proof: MFT record number and change time), or None where there
    is none; asked of the entries in canonical order, for a state's rows (target/state.py,
    finish), without a FUSE round trip per entry. Only the listings of the folders above the
    entry at hand are held."""

    def __init__(self, volume):
        self._volume = volume
        self._listings: dict[bytes, dict | None] = {}

    def __call__(self, e) -> _Stat | None:
        if not e.path:
            item = self._volume.stat_root()
        else:
            parent, name = _split(e.path)
            held = self._listing(parent)
            item = held.get(name) if held is not None else None
        if item is None:
            return None
        mft_no, kind, size, mtime, ctime = item[1], item[2], item[4], item[5], item[6]
        return _Stat(size, ntfs.ns_of(mtime), mft_no, ntfs.ns_of(ctime), _MODES[kind])

    def _listing(self, folder: bytes) -> dict | None:
        listings = self._listings
        if folder in listings:
            return listings[folder]
        if folder:
            parent, name = _split(folder)
            above = self._listing(parent)
            item = above.get(name) if above is not None else None
            mft_no = item[1] if item is not None and item[2] == "d" else None
        else:
            mft_no = self._volume.stat_root()[1]
        try:
            found = {item[0]: item for item in self._volume.listdir(mft_no)[0]} \
                if mft_no is not None else None
        except (OSError, ValueError):
            found = None
        for other in [f for f in listings if f and folder != f
                      and not folder.startswith(f + b"/")]:
            del listings[other]              # (a folder the walk has left)
        listings[folder] = found
        return found


def written_stats(tree) -> StatsOf | None:
    """StatsOf the partition mounted at tree, opened anew now that it was written and synced
    (a restore's state), when diffimg mounted it and reads it through libntfs-3g; else None
    (lstat through the mount)."""
    found = ntfs_volume_of(tree, fresh=True)
    return StatsOf(found[1]) if found is not None else None


def _split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.rpartition(b"/")
    return parent, name


def read_all(volume, mft_no: int, stream) -> bytes:
    """The whole of a (small) $DATA attribute."""
    reader = volume.read(mft_no, stream)
    try:
        if reader.size > streams.INLINE_MAX:
            raise OSError(errno.EAGAIN, "it grew while it was read")
        buffer = bytearray(reader.size)
        view, done = memoryview(buffer), 0
        while done < len(buffer):
            n = reader.readinto(view[done:])
            if not n:
                break
            done += n
        return bytes(buffer[:done])
    finally:
        reader.close()


def walk_volume(volume, root: bytes, *, find_previous, excluded, left_out, wanted_sizes, warn,
                on_progress=None):
    """Yield the Entries of the volume in canonical order (the scanner's contract, scan()):
    root is its mount, which messages name (the caller shows it as the partition given);
    find_previous(path key, stat) gives a quick-check hint's (digest, sparse, proved)."""
    fit = ntfs.Volume(ntfs.NAMES).fit
    leaders: dict[int, Entry] = {}          # mft_no -> the first member of a hardlink group
    counts = [0, 0]

    def shown(rel):
        return show_path(root + b"/" + rel if rel else root)

    def listing(mft_no, rel):
        try:
            children, bad_names = volume.listdir(mft_no)
        except OSError as exc:
            name = getattr(exc, "ntfs_name", None)
            where = shown(rel + b"/" + name if rel and name else name or rel)
            raise ScanError(f"cannot read {where}: {why(exc)}") from None
        except ValueError as exc:
            raise ScanError(f"cannot read {shown(rel)}: {exc}") from None
        if bad_names:
            warn(f"{shown(rel)}: {bad_names} names that are no valid UTF-16 (ntfs-3g hides them "
                 "too) are left out")
        children.sort()
        for before, after in zip(children, children[1:]):
            if before[0] == after[0]:        # (an index lists each name once)
                raise ScanError(f"cannot read {shown(rel)}: it lists {show_path(after[0])!r} twice "
                                f"{DAMAGED}")
        return children

    def finished(entry):
        counts[0] += 1
        if entry.size:
            counts[1] += entry.size
        if on_progress is not None and counts[0] % 512 == 0:
            on_progress(*counts)
        return entry

    def entry_of(rel, item) -> Entry | None:
        (_name, mft_no, kind_code, links, size, mtime, ctime, crtime, attrib, acl, reparse,
         object_id, ea, dos, named, extra) = item
        kind = _KINDS[kind_code]
        entry = Entry(rel, kind, 0, 0, 0, _fit_time(ntfs.ns_of(mtime), rel, shown, warn))
        entry.ino, entry.ctime_ns, entry.nlink = mft_no, ntfs.ns_of(ctime), links
        if kind is not Kind.DIR and links > 1:
            leader = leaders.get(mft_no)
            if leader is not None:          # a later link: the group's values and content
                return follow(entry, leader)
            leaders[mft_no] = entry
        xattrs = {ntfs.ATTRIB: struct.pack(">I", attrib), ntfs.CRTIME: struct.pack(">q", crtime)}
        if acl is not None:
            xattrs[ntfs.ACL] = acl
        if reparse is not None:
            xattrs[ntfs.REPARSE] = reparse
        if object_id is not None:
            xattrs[ntfs.OBJECT_ID] = object_id
        if ea is not None:
            xattrs[ntfs.EA] = ea
        if dos is not None and rel:
            xattrs[ntfs.DOS_NAME] = dos
        if named and (kind is Kind.FILE or kind is Kind.DIR or reparse is not None):
            _read_streams(volume, mft_no, named, xattrs, rel, shown)
        if kind is Kind.SYMLINK and reparse is not None and size:
            # a reparse point's data: a WOF file's is all holes, its size kept; other data is
            # not read yet (said once, at the end)
            try:
                holes_only = volume.holes(mft_no, None)[1]
            except OSError as exc:
                raise ScanError(f"cannot read {shown(rel)}: {why(exc)}") from None
            if holes_only:
                xattrs[ntfs.HOLES] = struct.pack(">Q", size)
            else:
                left_data.append((rel, reparse[:4] == _WOF_TAG))
        entry.xattrs = dict(sorted(xattrs.items()))
        if kind is Kind.SYMLINK:
            entry.target = extra if reparse is None else ntfs.reparse_target(reparse)
        elif kind is Kind.CHAR or kind is Kind.BLOCK:
            entry.rdev = extra
        elif kind is Kind.FILE:
            entry.size = size
            if size == 0:
                entry.digest, entry.sparse = EMPTY_DIGEST, False
            else:
                known = find_previous(path_key(rel), _Stat(size, entry.mtime_ns, mft_no,
                                                           entry.ctime_ns))
                if known is not None and not known[2]:
                    # taken on size and mtime alone (scanner._Walker does the same): no stat
                    # row vouches for it, nor for its holes, which are the file's own
                    try:
                        known = (known[0], volume.holes(mft_no, None)[0], False)
                    except OSError as exc:
                        raise ScanError(f"cannot read {shown(rel)}: {why(exc)}") from None
                    entry.ino = entry.ctime_ns = None
                if known is not None:
                    entry.digest, entry.sparse = known[0], known[1]
                elif wanted_sizes is not None and size not in wanted_sizes:
                    pass                    # content of no use: left unread (scan())
                else:
                    _hash_into(volume, entry, mft_no, shown)
        fit(entry)
        return entry

    left_data = []        # (path, WOF) of reparse points whose data is not read
    try:
        root_item = volume.stat_root()
    except OSError as exc:
        raise ScanError(f"cannot read {shown(b'')}: {why(exc)}") from None
    yield finished(entry_of(b"", root_item))
    folders = {root_item[1]: b""}          # mft_no -> path of each folder walked
    stack = [(b"", iter(listing(root_item[1], b"")))]
    while stack:
        rel_dir, children = stack[-1]
        item = next(children, None)
        if item is None:
            stack.pop()
            continue
        name = item[0]
        if not rel_dir and name == STATE_DIR:
            continue
        rel = rel_dir + b"/" + name if rel_dir else name
        if (excluded is not None and excluded(rel, name)) or rel in left_out:
            continue
        entry = entry_of(rel, item)
        yield finished(entry)
        if entry.kind is Kind.DIR:
            if item[1] in folders:      # NTFS has no folder links: a damaged or crafted index
                raise ScanError(f"{shown(rel)}: the same folder as {shown(folders[item[1]])} "
                                "(the volume's folders form a loop: it is damaged; run chkdsk on it)")
            folders[item[1]] = rel
            stack.append((rel, iter(listing(item[1], rel))))
    if on_progress is not None:
        on_progress(*counts)
    if left_data and wanted_sizes is None:       # (read for itself, not as a restore's target)
        wof = sum(1 for _, is_wof in left_data if is_wof)
        warn(f"{len(left_data):,} reparse points of {shown(b'')} hold data that diffimg does "
             f"not read yet (e.g. {show_path(left_data[0][0])}"
             + (f"; {wof:,} of them files Windows compressed (WOF, Compact OS)" if wof else "")
             + "): the record has none, and a restore gives them none"
             + (": Windows may not start from such a restore" if wof else ""))


def _hash_into(volume, entry, mft_no, shown):
    try:
        size, digest, holes = volume.hash(mft_no, None)
    except OSError as exc:
        raise ScanError(f"cannot read {shown(entry.path)}: {why(exc)}") from None
    entry.size, entry.digest, entry.sparse = size, digest, holes


def _read_streams(volume, mft_no, named, xattrs, rel, shown):
    """The named streams as a manifest holds them (streams.py): the bytes of a small one, the
    size and digest of a larger one."""
    for name, size in named:
        if not streams.is_stream_name(name):
            raise ScanError(f"{shown(rel)}: a named stream diffimg refuses to read "
                            f"({show_path(name)!r}: not a name Windows gives a stream)")
        try:
            if size <= streams.INLINE_MAX:
                xattrs[streams.INLINE + name] = read_all(volume, mft_no, name)
            else:
                size, digest, _ = volume.hash(mft_no, name)
                xattrs[streams.REF + name] = streams.reference(size, digest)
        except OSError as exc:
            raise ScanError(f"{shown(rel)}: cannot read its stream {show_path(name)!r}: "
                            f"{why(exc)}") from None


DAMAGED = "(the volume is damaged: run chkdsk on it, or ntfsfix, then try again)"
# what libntfs-3g answers for a record, index or run it finds inconsistent
_DAMAGE = frozenset((errno.EIO, errno.EUCLEAN, errno.ESPIPE, errno.EINVAL, errno.ENOENT,
                     errno.EOVERFLOW, errno.ERANGE, errno.EFBIG, errno.ENOTDIR, errno.EILSEQ))


def why(exc: OSError) -> str:
    """What an error of the library says, and what to do where it means a damaged volume."""
    text = exc.strerror or str(exc)
    return f"{text} {DAMAGED}" if exc.errno in _DAMAGE else text


def _fit_time(mtime_ns: int, rel, shown, warn) -> int:
    """An mtime a manifest cannot hold (int64 ns: 1677 to 2262; NTFS goes to 30828) is
    recorded as the nearest it can, with a warning (as the scanner does)."""
    if _TIME_LOW <= mtime_ns <= _TIME_HIGH:
        return mtime_ns
    fitted = min(max(mtime_ns, _TIME_LOW), _TIME_HIGH)
    warn(f"{shown(rel)}: modification time out of the manifest's range, recorded as {fitted} ns")
    return fitted


def open_content(volume, path: bytes, stream: bytes | None = None):
    """A reader (readinto, close) of the content at path in the volume: its file's, or its
    named stream's. OSError when it is not there."""
    return volume.read(volume.lookup(b"/" + path), stream)
