"""NTFS metadata, through ntfs-3g's xattrs: what a Windows partition holds beyond POSIX.

On a volume mounted with ntfs-3g each file and folder has, besides its content and its named
streams (user.* xattrs with streams_interface=xattr, ntfs-3g's default), a security descriptor,
DOS attributes, a creation time, a DOS short name and reparse data (junctions, symlinks). ntfs-3g
gives them as system.ntfs_* xattrs that it never lists: they are asked for by name (NAMES), and
recorded in the entry's xattrs with the others, so they count in the tree ID and a change to any
of them is a change (spec/manifest.md). system.ntfs_times_be is not recorded: it holds the last
access time, which a read changes; the last write time is the entry's mtime.

Restore sets them after everything else of an entry (SET_ORDER): chown and chmod rewrite the
security descriptor, utime the times, and the read-only attribute blocks writes on Windows.
"""

import ctypes
import errno
import functools
import operator
import os
import struct

import xxhash

from ..entry import Kind
from ..errors import Refused, show_path
from . import streams

ACL = b"system.ntfs_acl"                     # the security descriptor, self-relative
ATTRIB = b"system.ntfs_attrib_be"            # DOS attributes, 32 bits big-endian
CRTIME = b"system.ntfs_crtime_be"            # creation time, NTFS units big-endian
DOS_NAME = b"system.ntfs_dos_name"           # the 8.3 short name, when it has one
REPARSE = b"system.ntfs_reparse_data"        # reparse data, raw (a junction keeps C:\...)
OBJECT_ID = b"system.ntfs_object_id"         # the object ID (16 bytes), and its birth IDs (64)
EA = b"system.ntfs_ea"                       # extended attributes: the $EA attribute, raw

NAMES = (ACL, ATTRIB, CRTIME, DOS_NAME, REPARSE, OBJECT_ID, EA)
# a reparse point's unnamed data when it is nothing but holes (a file Windows compressed, WOF:
# its content lies in the named stream WofCompressedData): its size, 8 bytes big-endian; read
# through libntfs-3g only (ntfs-3g's mount shows a reparse point as a bare symlink)
HOLES = b"diffimg.ntfs.holes"
HOLES_MAX = 1 << 53           # 8 PiB: the largest file Windows' NTFS makes (2 MiB clusters)
# the reparse data comes first: it is set when the entry is made (make_reparse_point); the
# short name and the object ID are set apart, once every entry has its own (give_once), as
# another entry may hold them until then
SET_ORDER = (REPARSE, EA, ACL, CRTIME, ATTRIB)
# what an entry without it in its record must not keep either (the others every NTFS entry has,
# or are given apart)
REMOVED_WHEN_ABSENT = (EA,)

FILE_ATTRIBUTE_DIRECTORY = 0x10
# the POSIX modes an NTFS entry is recorded with, by kind (Volume.fit); others: 0o644
MODES = {Kind.DIR: 0o755, Kind.SYMLINK: 0o777}
XATTR_SIZE_MAX = 65536

_LIBC = ctypes.CDLL(None, use_errno=True)


def get_xattr(target, name: bytes, follow: bool = False) -> bytes:
    """The xattr name of target (an fd, or a path followed only if follow), read with a buffer
    of the largest size Linux allows: ntfs-3g answers EIO, not ERANGE, to a buffer too small,
    and os.getxattr starts with 128 bytes."""
    buffer = ctypes.create_string_buffer(XATTR_SIZE_MAX)
    if isinstance(target, int):
        n = _LIBC.fgetxattr(target, name, buffer, XATTR_SIZE_MAX)
    else:
        call = _LIBC.getxattr if follow else _LIBC.lgetxattr
        n = call(os.fsencode(target), name, buffer, XATTR_SIZE_MAX)
    if n < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), None if isinstance(target, int) else target)
    return buffer.raw[:n]


TIMES = b"system.ntfs_times_be"              # creation, last write, access, change: 4 x 8 bytes
_NTFS_EPOCH = 116444736000000000             # 1970-01-01 in NTFS units (100 ns since 1601)


def ns_of(ntfs_time: int) -> int:
    """An NTFS time (100 ns units since 1601) in ns since 1970, exact, before 1970 too."""
    return (ntfs_time - _NTFS_EPOCH) * 100


def ntfs_time_of(ns: int) -> int:
    """A time in ns since 1970 as NTFS keeps it (100 ns units since 1601), before 1970 too."""
    return ns // 100 + _NTFS_EPOCH


def exact_mtime(path, shown: int) -> int:
    """The last write time of the entry at path (not followed) to the 100 ns, read raw, for an
    mtime before 1970, which ntfs-3g's stat shows rounded to the second (towards 1970); shown
    when it cannot be read. Asked only for such times: one more round trip through FUSE."""
    try:
        value = get_xattr(path, TIMES)
    except OSError:
        return shown
    if len(value) < 16:
        return shown
    return ns_of(struct.unpack_from(">q", value, 8)[0])


def is_ntfs(path) -> bool:
    """Whether path is on a volume that ntfs-3g serves (it answers for system.ntfs_attrib_be)."""
    try:
        return len(get_xattr(path, ATTRIB)) == 4
    except OSError:
        return False


def read_from_ntfs(source) -> bool:
    """Whether a recorded tree's source (its manifest header's or image info's) was an NTFS
    volume, read with its NTFS attributes: a tree compared with it, or restored to it, is
    read with them only then."""
    return type(source) is dict and source.get("fstype") == "ntfs"


class Volume:
    """How a tree's entries are read where it lies: on an ntfs-3g volume, the NTFS names are
    asked for (asked) and the entries recorded as fit() says; where ntfs-3g serves streams as
    files, their list is asked for too and each stream read (streams.py)."""

    def __init__(self, asked: tuple = (), streams_root: bytes | None = None):
        self.asked = asked
        self.streams_root = streams_root

    @classmethod
    def of(cls, where, wanted: bool = True) -> "Volume":
        """where: a path or fd on the volume (its tree's root). wanted False: read it as any
        other filesystem (a restore of an image that holds no NTFS attributes), streams
        aside, which are what xattrs are there."""
        root = b"/proc/self/fd/%d" % where if isinstance(where, int) else os.fsencode(where)
        on_windows = streams.windows_interface(where)
        asked = NAMES if wanted and is_ntfs(where) else ()
        return cls(asked + (streams.LIST,) if on_windows else asked,
                   root if on_windows else None)

    def fit(self, entry):
        """The entry (with its xattrs and target read) as it is recorded from this volume:
        - its streams, read as streams.read says, where ntfs-3g serves them as files;
        - NTFS keeps no POSIX mode or owner (ntfs-3g shows those of its mount options; the
          security descriptor is the truth): fixed ones (MODES, owner root), whatever the mount;
        - a symlink with reparse data (a junction, a Windows symlink) gets a target made from
          that data (reparse_target), not the one ntfs-3g shows, which depends on where and how
          the volume was mounted; a reparse point ntfs-3g shows as a file or folder
          (deduplicated, cloud or compressed files) is recorded as what it shows;
        - DOS attributes that ntfs-3g can neither set on a file nor show back are left out
          (UNKEPT_FILE_ATTRIBUTES)."""
        if self.streams_root is not None:
            streams.read(self.streams_root, entry)
        if ATTRIB not in self.asked:
            return entry
        entry.mode = MODES.get(entry.kind, 0o644)
        entry.uid = entry.gid = 0
        xattrs = entry.xattrs
        if not xattrs:
            return entry
        if entry.target is not None:
            if REPARSE in xattrs:
                entry.target = reparse_target(xattrs[REPARSE])
        elif REPARSE in xattrs:
            xattrs = entry.xattrs = without_reparse(xattrs)
        value = xattrs.get(ATTRIB) if xattrs else None
        if value is not None and len(value) == 4:
            bits = struct.unpack(">I", value)[0]
            kept = bits & kept_attributes(entry.kind)
            if kept != bits:
                xattrs[ATTRIB] = struct.pack(">I", kept)
        return entry


# the DOS attributes ntfs-3g gives back, by kind (read-only, hidden, system, archive, normal,
# temporary, offline, not indexed; on a folder, the folder bit and compressed; on a reparse
# point, the folder and reparse bits, which it makes itself): it drops the others (sparse,
# compressed and encrypted files, pinned and the like) or cannot give them to what it writes
_FILE_KEPT = 0x0001 | 0x0002 | 0x0004 | 0x0020 | 0x0080 | 0x0100 | 0x1000 | 0x2000
_KEPT = {Kind.DIR: (_FILE_KEPT & ~0x0080) | 0x0010 | 0x0800,
         Kind.SYMLINK: _FILE_KEPT | 0x0010 | 0x0400}


def kept_attributes(kind) -> int:
    """The mask of DOS attributes an entry of kind is recorded with (Volume.fit)."""
    return _KEPT.get(kind, _FILE_KEPT)
_JUNCTION, _SYMLINK = 0xA0000003, 0xA000000C


def reparse_target(data: bytes) -> bytes:
    """The symlink target a reparse point is recorded with: for a junction or a Windows
    symlink, its Windows path as ntfs-3g names one it cannot resolve (C:\\Users ->
    /.NTFS-3G/C:/Users; a relative symlink's path with slashes); for any other tag,
    /.NTFS-3G/reparse-TAG. The reparse data itself, recorded too, is what a restore uses."""
    tag = struct.unpack_from("<I", data)[0] if len(data) >= 4 else 0
    fallback = b"/.NTFS-3G/reparse-%08x" % tag
    try:
        if tag not in (_JUNCTION, _SYMLINK):
            return fallback
        sub_at, sub_len, print_at, print_len = struct.unpack_from("<HHHH", data, 8)
        relative = tag == _SYMLINK and struct.unpack_from("<I", data, 16)[0] & 1
        names = data[16 if tag == _JUNCTION else 20:]
        at, length = (print_at, print_len) if print_len else (sub_at, sub_len)
        path = names[at:at + length].decode("utf-16-le")
    except (struct.error, UnicodeDecodeError):
        return fallback
    if path.startswith("\\??\\"):
        path = path[4:]
    path = path.replace("\\", "/")
    if not path or "\0" in path:
        return fallback
    shown = path.encode("utf-8", "surrogateescape")
    return shown if relative else b"/.NTFS-3G/" + shown.lstrip(b"/")


def is_ntfs_name(name: bytes) -> bool:
    return name in NAMES


LEFT_OUT = ("the image holds NTFS attributes (security descriptors, DOS attributes, creation "
            "times, short names, reparse data, object IDs, extended attributes, streams over "
            "64 KiB) that the target's filesystem "
            "cannot hold: they are left out (restore onto an NTFS partition given as itself, or "
            "mounted with ntfs-3g -o streams_interface=windows, to keep them)")
LEFT_OUT_STREAMS = ("the image holds named streams over 64 KiB, which ntfs-3g serves only with "
                    "-o streams_interface=windows: they are left out (give the partition itself, "
                    "or mount it that way, to keep them)")


def fit_for_target(entries, where, warn):
    """The entries without what the target at where (a path or fd; None: an NTFS volume
    written through libntfs-3g, which holds streams as ntfs-3g serving them as files does)
    cannot hold (fitter)."""
    fit = fitter(where, warn)
    return (fit(e) for e in entries)


NOT_A_STREAM = ("the image holds user.* xattrs whose names are no NTFS stream names (a '/' or "
                "':' in them): ntfs-3g serving streams as files cannot hold them, and they are "
                "left out")


REPARSE_DATA_LEFT_OUT = (
    "the image holds reparse points with data or named streams (files Windows compressed, WOF, "
    "among them), which only libntfs-3g writes: they are restored without them (restore onto a "
    "new NTFS partition given as itself, written through libntfs-3g, to keep them)")


def _reparse_data(name: bytes) -> bool:
    """Whether the xattr name is data of a reparse point (a stream, its holes)."""
    return name == HOLES or name.startswith(streams.INLINE) or name.startswith(streams.REF)


def _has_reparse_data(e) -> bool:
    return e.kind is Kind.SYMLINK and bool(e.xattrs) and any(map(_reparse_data, e.xattrs))


def _drop_reparse_data(e):
    e.xattrs = {k: v for k, v in e.xattrs.items() if not _reparse_data(k)} or None


def without_reparse_data(entries, seen: dict | None = None):
    """A target's entries as a restore through ntfs-3g's mount compares them with the image's
    (fitter): without a reparse point's streams and holes, which it cannot write. So a file
    Windows compressed that the target holds is left as it is, never made anew without them.
    seen: noted as note_reparse_data notes."""
    for e in entries:
        if _has_reparse_data(e):
            if seen is not None:
                note_reparse_data(e, seen)
            _drop_reparse_data(e)
        yield e


def note_reparse_data(e, seen: dict):
    """e (None passes), a digest of its streams and holes noted in seen by path when it is a
    reparse point holding some."""
    if e is not None and _has_reparse_data(e):
        h = xxhash.xxh3_128()
        for name, value in sorted((k, v) for k, v in e.xattrs.items() if _reparse_data(k)):
            h.update(struct.pack(">II", len(name), len(value)) + name + value)
        seen[e.path] = h.digest()
    return e


def left_as_they_are(wanted: dict, held: dict) -> str | None:
    """The warning for the reparse points whose data (wanted, held: path -> digest) a restore
    through ntfs-3g's mount could not write, or None."""
    differing = sorted(path for path, digest in wanted.items() if held.get(path) != digest)
    if not differing:
        return None
    return (f"{len(differing):,} reparse points (files Windows compressed among them) hold other "
            f"data or streams in the image than on the target (e.g. {show_path(differing[0])}), "
            "which only libntfs-3g writes: left as they are, or made without them where the "
            "target lacks them; restore onto a new partition given as itself to write them")


def fitter(where, warn):
    """fit(entry): the entry (None passes) with its xattrs changed in place to what the target
    at where (a path or fd) can hold: on a volume that is not NTFS, no NTFS xattrs or large
    streams; on NTFS through ntfs-3g's default streams interface, no large streams; on NTFS
    serving streams as files, no user.* xattr that can be no stream name, and a name with ':'
    refused (it would be taken for a stream). warn once, at the first entry that had some."""
    as_files = where is None or streams.windows_interface(where)
    if as_files:
        message = NOT_A_STREAM

        def dropped(k):
            return k.startswith(streams.INLINE) and not streams.is_stream_name(k[len(streams.INLINE):])
    elif is_ntfs(where):                 # (per xattr of every entry: called from C)
        message, dropped = LEFT_OUT_STREAMS, operator.methodcaller("startswith", streams.REF)
    else:
        message = LEFT_OUT

        def dropped(k):
            return k.startswith(streams.REF) or k in NAMES
    warned, warned_data = [], []
    library = where is None

    def fit(e):
        if e is None:
            return e
        if not library and _has_reparse_data(e):
            _drop_reparse_data(e)
            if not warned_data:
                warn(REPARSE_DATA_LEFT_OUT)
                warned_data.append(True)
        if as_files and b":" in e.name:
            raise Refused(f"{show_path(e.path)}: a name with ':', which an NTFS volume serving "
                          "named streams as files (a partition given as itself) cannot hold; "
                          "mount it with ntfs-3g's default options and give that folder; nothing "
                          "was changed")
        if e.xattrs and any(map(dropped, e.xattrs)):
            e.xattrs = {k: v for k, v in e.xattrs.items() if not dropped(k)} or None
            if not warned:
                warn(message)
                warned.append(True)
        return e
    return fit


def without_reparse(xattrs: dict) -> dict | None:
    kept = {k: v for k, v in xattrs.items() if k != REPARSE}
    return kept or None


def has_descriptor(xattrs: dict | None) -> bool:
    return bool(xattrs) and ACL in xattrs


def is_reparse_point(xattrs: dict | None) -> bool:
    return bool(xattrs) and REPARSE in xattrs


def is_directory(xattrs: dict) -> bool:
    """Whether the NTFS attributes say folder (a junction is a folder, ntfs-3g shows a symlink)."""
    value = xattrs.get(ATTRIB)
    return value is not None and len(value) == 4 and bool(
        struct.unpack(">I", value)[0] & FILE_ATTRIBUTE_DIRECTORY)


FILE_ATTRIBUTE_ARCHIVE = 0x20


def keep_unarchived(dir_fd: int, name: bytes, xattrs: dict | None):
    """Set again the DOS attributes of the entry name in dir_fd (not followed) when they lack
    ARCHIVE: ntfs-3g sets that bit on an inode given a name (a rename into place, a link, a
    short name), after its attributes were set."""
    value = xattrs.get(ATTRIB) if xattrs else None
    if value is not None and len(value) == 4 and \
            not struct.unpack(">I", value)[0] & FILE_ATTRIBUTE_ARCHIVE:
        os.setxattr(b"/proc/self/fd/%d/%s" % (dir_fd, name), ATTRIB, value, follow_symlinks=False)


def set_in_order(target, xattrs: dict | None, follow: bool = True):
    """Set the NTFS xattrs among xattrs on target (an fd or a path), in SET_ORDER; the reparse
    data only when the entry does not have it already (it is set when the entry is made). An
    NTFS entry (one with DOS attributes) loses what REMOVED_WHEN_ABSENT names and it lacks."""
    if not xattrs:
        return
    for name in SET_ORDER:
        value = xattrs.get(name)
        if value is None:
            if name in REMOVED_WHEN_ABSENT and ATTRIB in xattrs and \
                    _current(target, name, follow) is not None:
                os.removexattr(target, name, follow_symlinks=follow)
            continue
        if name == REPARSE and _current(target, name, follow) == value:
            continue
        os.setxattr(target, name, value, follow_symlinks=follow)


# what a DOS 8.3 name may hold besides letters and digits (no space, no dot but the one)
_SHORT_NAME_SYMBOLS = frozenset(b"!#$%&'()-@^_`{}~")


def is_short_name(name: bytes) -> bool:
    """Whether name is a valid 8.3 short name: upper-case ASCII letters, digits and the symbols
    DOS allows, at most 8 of them, then optionally a dot and at most 3 more."""
    base, dot, ext = name.partition(b".")
    allowed = all(c in _SHORT_NAME_SYMBOLS or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A
                  for c in base + ext)
    return (allowed and 1 <= len(base) <= 8 and len(ext) <= 3 and (not dot or len(ext) >= 1)
            and base not in _DEVICE_NAMES)


_DEVICE_NAMES = frozenset([b"CON", b"PRN", b"AUX", b"NUL"] + [b"COM%d" % i for i in range(1, 10)]
                          + [b"LPT%d" % i for i in range(1, 10)])
_MAX_REPARSE = 16 * 1024        # NTFS's limit on reparse data


def value_problem(name: bytes, value: bytes, kind) -> str | None:
    """What is wrong with an NTFS value of an entry of kind, as a manifest holds it (a reader
    refuses it: ntfs-3g would refuse it at restore, or never show it back); None if nothing."""
    if name == ATTRIB:
        if len(value) != 4:
            return "NTFS attributes are not 4 bytes"
        is_dir = bool(struct.unpack(">I", value)[0] & FILE_ATTRIBUTE_DIRECTORY)
        if (kind is Kind.DIR and not is_dir) or (kind is not Kind.DIR and kind is not Kind.SYMLINK
                                                 and is_dir):
            return "NTFS attributes disagree with the entry's kind"
        bits = struct.unpack(">I", value)[0]
        if bits & ~kept_attributes(kind):
            return "NTFS attributes ntfs-3g cannot give back (sparse, compressed, encrypted...)"
        if kind is not Kind.DIR and (bits == 0 or (bits & 0x80 and bits != 0x80)):
            return "NTFS attributes with 'normal' not alone, or none"
    elif name == CRTIME:
        if len(value) != 8:
            return "an NTFS creation time is not 8 bytes"
    elif name == DOS_NAME:
        if not is_short_name(value):
            return "not a valid 8.3 short name"
    elif name == REPARSE:
        # (as ntfs-3g checks it: the tag, a length that agrees, and for a tag not Microsoft's
        # the GUID of its owner after the header)
        tag = struct.unpack_from("<I", value)[0] if len(value) >= 8 else 0
        header = 8 if tag & 0x80000000 else 24
        if not tag or not header <= len(value) <= 8 + _MAX_REPARSE or \
                struct.unpack_from("<H", value, 4)[0] != len(value) - header:
            return "malformed NTFS reparse data"
        if tag in (_JUNCTION, _SYMLINK) and not _names_fit(value, tag):
            return "NTFS junction or symlink data whose names lie outside it"
    elif name == ACL and not _valid_descriptor(value):
        return "malformed NTFS security descriptor"
    elif name == OBJECT_ID:
        if len(value) not in (16, 64):
            return "an NTFS object ID is not 16 or 64 bytes"
    elif name == EA and not _valid_eas(value):
        return "malformed NTFS extended attributes"
    return None


def _valid_eas(value: bytes) -> bool:
    """Whether value is a list of extended attributes ntfs-3g takes (its own checks): each
    entry (next offset 4, flags 1, name length 1, value length 2, name, NUL, value) aligned
    on 4 bytes, a name of at least a byte, ending where the next begins; at most 64 KiB."""
    if not 0 < len(value) <= 65536:
        return False
    at = 0
    while at < len(value):
        if at + 8 > len(value):
            return False
        following, _flags, name_length, value_length = struct.unpack_from("<IBBH", value, at)
        end = at + 8 + name_length + 1 + value_length
        nxt = at + following
        if not (at < nxt <= len(value) and nxt % 4 == 0 and name_length
                and nxt - 3 <= end <= nxt and value[at + 8 + name_length] == 0):
            return False
        at = nxt
    return True


def symlink_attributes_fit(value: bytes, reparse: bool) -> bool:
    """Whether a symlink's DOS attributes are ones ntfs-3g shows: a reparse point's have the
    reparse bit; one of ntfs-3g's own symlinks (no reparse data) is a system file, no folder."""
    bits = struct.unpack(">I", value)[0]
    if reparse:
        return bool(bits & 0x400)
    return bool(bits & 0x4) and not bits & 0x410


def is_junction(data: bytes) -> bool:
    return len(data) >= 4 and struct.unpack_from("<I", data)[0] == _JUNCTION


def _names_fit(data: bytes, tag: int) -> bool:
    """Whether a junction's or symlink's substitute and print names lie within its data."""
    names_at = 16 if tag == _JUNCTION else 20
    if len(data) < names_at:
        return False
    sub_at, sub_len, print_at, print_len = struct.unpack_from("<HHHH", data, 8)
    room = len(data) - names_at
    return sub_at + sub_len <= room and print_at + print_len <= room and sub_len > 0


@functools.lru_cache(maxsize=4096)     # a volume has a few hundred distinct descriptors
def _valid_descriptor(sd: bytes) -> bool:
    """A self-relative security descriptor as ntfs-3g takes one (its ntfs_valid_descr): revision
    1, an owner and a group, a DACL and a SACL each present or not (a NULL or missing DACL is
    Windows' "everyone may"), offsets aligned on 4 bytes, each part well formed and lying within
    it, and nothing after them."""
    if len(sd) < 20 or sd[0] != 1:
        return False
    control, owner, group, sacl, dacl = struct.unpack_from("<HIIII", sd, 2)
    if not (owner and group) or (owner | group | sacl | dacl) & 3:
        return False
    ends = []
    for at in (owner, group):
        if not _valid_sid(sd, at):
            return False
        ends.append(at + 8 + 4 * sd[at + 1])
    for at, present in ((sacl, control & 0x0010), (dacl, control & 0x0004)):
        if at:
            if not present or not _valid_acl(sd, at):
                return False
            ends.append(at + struct.unpack_from("<H", sd, at + 2)[0])
    return max(ends) == len(sd)


def _valid_sid(sd: bytes, at: int) -> bool:
    return (20 <= at <= len(sd) - 8 and sd[at] == 1 and sd[at + 1] <= 15
            and at + 8 + 4 * sd[at + 1] <= len(sd))


def _valid_acl(sd: bytes, at: int) -> bool:
    if not 20 <= at <= len(sd) - 8:
        return False
    revision, size, count = sd[at], *struct.unpack_from("<HH", sd, at + 2)
    if revision not in (2, 4) or size < 8 or at + size > len(sd):
        return False
    ace = at + 8
    for _ in range(count):
        if ace + 4 > at + size:
            return False
        ace_size = struct.unpack_from("<H", sd, ace + 2)[0]
        if ace_size < 8 or ace + ace_size > at + size:
            return False
        ace += ace_size
    return True


# the values of which a volume lets one entry hold each (a short name in its folder, an object
# ID in the volume): given once every entry this run changes has let go of the one it must not
# keep (let_go_of, give)
GIVEN_ONCE = (DOS_NAME, OBJECT_ID)


def give(path: bytes, name: bytes, wanted: bytes):
    """Give the entry at path (not followed) the value wanted of name (GIVEN_ONCE). OSError
    EEXIST when another entry holds it (of the folder, for a short name, which belongs to a
    link, not to the inode; of the volume, for an object ID)."""
    if _current(path, name, False) != wanted:
        os.setxattr(path, name, wanted, follow_symlinks=False)


def let_go_of(path: bytes, name: bytes, wanted: bytes | None):
    """Remove the value of name of the entry at path (not followed) if it has one other than
    wanted (None: any), so that another entry may take it."""
    current = _current(path, name, False)
    if current is not None and current != wanted:
        os.removexattr(path, name, follow_symlinks=False)


def make_reparse_point(dir_fd: int, name: bytes, xattrs: dict):
    """A new reparse point named name in dir_fd: an empty folder or file (as its attributes
    say) given the reparse data, which ntfs-3g then shows as a symlink."""
    if is_directory(xattrs):
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    else:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd))
    os.setxattr(b"/proc/self/fd/%d/%s" % (dir_fd, name), REPARSE, xattrs[REPARSE],
                follow_symlinks=False)
    # the kernel still holds it as a folder or file: its first lookup fails (EIO) and drops
    # that inode, and the next finds the symlink
    try:
        os.lstat(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise


def _current(target, name, follow):
    try:
        return get_xattr(target, name, follow)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            return None
        raise
