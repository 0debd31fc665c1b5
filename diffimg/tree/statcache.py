"""The stat cache: what proves a file untouched since it was read, kept beside a manifest.

ctime cannot be set from user space: a write, chmod, chown, xattr change or rename moves it. So a
file whose size, mtime, inode number and ctime all equal those recorded when it was read, on the
same filesystem, still holds the content recorded then, and needs no hashing. The cache is a
section after a manifest's records (spec/manifest.md, "Stat section"), outside the tree ID:
equal trees keep equal IDs on any machine.

A change made within the timestamp granularity of the read (the racy case, as git's index has
it) could keep the ctime recorded; so a record is trusted only when its ctime and mtime are older
than the section's trusted_before_ns, a time before the reading began.
"""

import os
import struct
import time
from dataclasses import dataclass

from .. import codec
from ..errors import ManifestError, show_path
from ..system.fsmeta import mount_of, probe

ROW = struct.Struct(">Qq")                   # ino, ctime_ns: one row per manifest record
FOOTER = struct.Struct(">QQ8s")              # records end, stat frame length, magic
FOOTER_MAGIC = b"\x89DISTAT\n"
RACY_MARGIN_NS = 2_000_000_000               # file times lag the clock by up to a 2 s granule
# filesystems whose ctime is no change time (FAT keeps a creation time there) or whose times
# come from another machine's clock: their files are always hashed
UNTRUSTED_FSTYPES = frozenset({"vfat", "msdos", "exfat", "fat", "nfs", "nfs4", "cifs", "smb3",
                               "9p", "fuse.sshfs", "afs", "ceph"})


# filesystems whose f_fsid is made from their UUID (and, btrfs, the subvolume): it then also
# tells one subvolume from another; elsewhere (xfs, FUSE) it is the device number, or 0
_FSID_FROM_UUID = frozenset({"ext2", "ext3", "ext4", "btrfs"})


def identity(where) -> dict | None:
    """The identity of the filesystem holding where (a path, or an open fd), or None when its
    ctimes prove nothing (or it cannot be read: the scan that follows says why).

    A filesystem is named by what it is, not where it is attached: its type and UUID (a
    partition file lands on whatever loop device is free, disks renumber), so its stat rows
    keep proving content across remounts. Inode numbers and ctimes belong to the filesystem
    itself, so they stay true wherever it is mounted. Where no UUID can be read (tmpfs,
    overlay, a device a normal user cannot read), the mount itself: f_fsid, st_dev, source."""
    try:
        st = os.fstat(where) if isinstance(where, int) else os.lstat(where)
        fsid = os.statvfs(where).f_fsid
    except OSError:
        return None
    mount = mount_of(st.st_dev)
    fstype = mount.get("fstype", "")
    if fstype in UNTRUSTED_FSTYPES:
        return None
    source = mount.get("device", "")
    found = probe(source) if source.startswith("/") else {}
    if found.get("uuid") and found.get("type") not in UNTRUSTED_FSTYPES:
        # the driver too (ntfs-3g or the kernel's ntfs3 may number and time files apart)
        driver = "fuse" if fstype.startswith("fuse") else fstype
        return {"type": found["type"], "uuid": found["uuid"], "driver": driver,
                "fsid": fsid if fstype in _FSID_FROM_UUID else 0}
    return {"fsid": fsid, "dev": st.st_dev, "source": source}


HEADER_LEN = struct.Struct(">I")
MAX_HEADER_BYTES = 1 << 16
ROWS_READ = ROW.size * 4096


@dataclass
class StatSection:
    """A stat section's header, as read; its rows are streamed from the frame (proofs)."""
    path: bytes
    frame: tuple[int, int]          # where the stat frame lies in path: offset, length
    tree_id: bytes
    entries: int
    filesystem: dict | None
    trusted_before_ns: int

    def proofs(self, filesystem: dict | None):
        """Per record, (ino, ctime_ns) where it proves content on filesystem, else None: None
        (no iterator) when the section was taken on another filesystem. Rows are read as they
        are asked for, so memory stays flat whatever the frame claims; a frame holding other
        than `entries` rows is corrupt (ManifestError, at its end)."""
        if filesystem is None or self.filesystem != filesystem:
            return None
        return self._proofs()

    def check_rows(self):
        """Read every row: ManifestError unless the frame holds exactly `entries` rows (counted
        in bytes, not unpacked: every reader of a manifest checks this)."""
        with _frame_reader(self.path, *self.frame) as stream:
            _read_header(stream, self.path)
            left = self.entries * ROW.size
            while left:
                left -= len(_read_rows(stream, min(left, 1 << 20), self.path))
            if stream.read(1):
                _fail(self.path, "holds more rows than it says")

    def _proofs(self):
        bound = self.trusted_before_ns
        with _frame_reader(self.path, *self.frame) as stream:
            _read_header(stream, self.path)
            left = self.entries * ROW.size
            while left:
                chunk = _read_rows(stream, min(left, ROWS_READ), self.path)
                left -= len(chunk)
                for ino, ctime_ns in ROW.iter_unpack(chunk):
                    yield (ino, ctime_ns) if ino and ctime_ns < bound else None
            if stream.read(1):
                _fail(self.path, "holds more rows than it says")


def _fail(path, what):
    raise ManifestError(f"{show_path(path)}: stat section {what}")


class _frame_reader:
    """The stat frame's decompressed bytes, as a stream (zstd errors become ManifestError)."""

    def __init__(self, path, offset: int, length: int):
        self._path = path
        self._file = open(path, "rb")  # noqa: SIM115  (closed by __exit__)
        self._file.seek(offset)
        self._stream = codec.decompressing_reader(codec.Window(self._file, length))

    def read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except codec.DecodeErrors as exc:
            _fail(self._path, f"is corrupt ({exc})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def _read_rows(stream, n: int, path) -> bytes:
    data = b""
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            _fail(path, "holds fewer rows than it says")
        data += more
    return data


def _read_header(stream, path) -> dict:
    size = HEADER_LEN.unpack(_read_rows(stream, HEADER_LEN.size, path))[0]
    if size > MAX_HEADER_BYTES:
        _fail(path, "is corrupt (header too large)")
    stream.header_end = HEADER_LEN.size + size
    try:
        doc = codec.unpack(_read_rows(stream, size, path))
    except codec.DecodeErrors:
        doc = None
    return doc


class StatRecorder:
    """Collects one row per entry written to a manifest (entry.ino, entry.ctime_ns; 0 when not
    known), and writes the section after the records."""

    def __init__(self, filesystem: dict | None, trusted_before_ns: int):
        self.filesystem = filesystem
        self.trusted_before_ns = trusted_before_ns
        self._rows = bytearray()
        self._pack = ROW.pack

    @classmethod
    def for_scan(cls, tree) -> "StatRecorder":
        """For a scan starting now: anything touched from RACY_MARGIN_NS before is not trusted."""
        return cls(identity(tree), time.time_ns() - RACY_MARGIN_NS)

    def add(self, entry):
        ino, ctime_ns = entry.ino, entry.ctime_ns
        if ino is None or ctime_ns is None or entry.mtime_ns >= self.trusted_before_ns:
            ino = ctime_ns = 0
        self._rows += self._pack(ino, ctime_ns)

    def write(self, f, records_end: int, tree_id: bytes):
        """Append the section to f, positioned at records_end."""
        header = codec.pack({"tree_id": tree_id, "entries": len(self._rows) // ROW.size,
                             "trusted_before_ns": self.trusted_before_ns,
                             "filesystem": self.filesystem})
        frame = codec.compress(HEADER_LEN.pack(len(header)) + header + self._rows)
        f.write(frame)
        f.write(FOOTER.pack(records_end, len(frame), FOOTER_MAGIC))


def records_end(f, start: int, end: int) -> int:
    """Where the records of the manifest in f[start:end] end: before its stat section, if any."""
    footer = _footer(f, start, end)
    return end if footer is None else start + footer[0]


def _footer(f, start: int, end: int):
    if end - start < FOOTER.size + 12:
        return None
    f.seek(end - FOOTER.size)
    records, length, magic = FOOTER.unpack(f.read(FOOTER.size))
    if magic != FOOTER_MAGIC:
        return None
    return records, length


def read_section(path, start: int, end: int) -> StatSection | None:
    """The stat section of the manifest at path[start:end] (its header; rows are streamed),
    None when it has none; ManifestError when it is damaged. The reader of the records checks
    it against the trailer (check_against)."""
    with open(path, "rb") as f:
        footer = _footer(f, start, end)
    if footer is None:
        return None
    records, length = footer
    if records < 12 or records + length + FOOTER.size != end - start:
        _fail(path, "out of bounds")
    frame = (start + records, length)
    with _frame_reader(path, *frame) as stream:
        doc = _read_header(stream, path)
    try:
        fs, bound, tree_id, entries = (doc["filesystem"], doc["trusted_before_ns"], doc["tree_id"],
                                       doc["entries"])
        ok = (type(bound) is int and type(tree_id) is bytes and len(tree_id) == 16
              and type(entries) is int and entries >= 0 and (fs is None or _is_identity(fs)))
    except (KeyError, TypeError):
        ok = False
    if not ok or _content_size(path, *frame) not in (None, stream.header_end + entries * ROW.size):
        _fail(path, "is corrupt")
    return StatSection(path, frame, tree_id, entries, fs, bound)


_IDENTITY_FIELDS = ({"type": str, "uuid": str, "driver": str, "fsid": int},    # by what it is
                    {"fsid": int, "dev": int, "source": str})                 # by where it is


def _is_identity(fs) -> bool:
    """Whether fs is a filesystem identity as identity() makes one (spec/manifest.md)."""
    return type(fs) is dict and any(
        fs.keys() == fields.keys() and all(type(fs[k]) is t for k, t in fields.items())
        for fields in _IDENTITY_FIELDS)


def _content_size(path, offset: int, length: int) -> int | None:
    """The frame's content size, as its header declares it (None when it does not)."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(min(length, 18))
    try:
        size = codec.frame_content_size(head)
    except codec.DecodeErrors:
        _fail(path, "is corrupt")
    return None if size < 0 else size


def check_against(section: StatSection | None, trailer: dict, path):
    """The section must be of the manifest whose records were read: same tree ID and count."""
    if section is not None and (section.tree_id != trailer["tree_id"]
                                or section.entries != trailer["entries"]):
        raise ManifestError(f"{show_path(path)}: stat section belongs to another manifest")
