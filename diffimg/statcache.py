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

from . import codec
from .errors import ManifestError, show_path
from .fsmeta import mount_of

ROW = struct.Struct(">Qq")                   # ino, ctime_ns: one row per manifest record
FOOTER = struct.Struct(">QQ8s")              # records end, stat frame length, magic
FOOTER_MAGIC = b"\x89DISTAT\n"
RACY_MARGIN_NS = 2_000_000_000               # file times lag the clock by up to a 2 s granule
# filesystems whose ctime is no change time (FAT keeps a creation time there) or whose times
# come from another machine's clock: their files are always hashed
UNTRUSTED_FSTYPES = frozenset({"vfat", "msdos", "exfat", "fat", "nfs", "nfs4", "cifs", "smb3",
                               "9p", "fuse.sshfs", "afs", "ceph"})
MAX_ROWS_BYTES = 1 << 34


def identity(where) -> dict | None:
    """The identity of the filesystem holding where (a path, or an open fd), or None when its
    ctimes prove nothing (or it cannot be read: the scan that follows says why)."""
    try:
        st = os.fstat(where) if isinstance(where, int) else os.lstat(where)
        fsid = os.statvfs(where).f_fsid
    except OSError:
        return None
    mount = mount_of(st.st_dev)
    if mount.get("fstype") in UNTRUSTED_FSTYPES:
        return None
    return {"fsid": fsid, "dev": st.st_dev, "source": mount.get("device", "")}


@dataclass
class StatSection:
    """A stat section as read: rows[i] is (ino, ctime_ns) of the manifest's record i."""
    tree_id: bytes
    filesystem: dict | None
    trusted_before_ns: int
    rows: bytes

    def proofs(self, filesystem: dict | None):
        """Per record, (ino, ctime_ns) where it proves content on filesystem, else None: all
        None when the section was taken on another filesystem."""
        if filesystem is None or self.filesystem != filesystem:
            return None
        return _proofs(self.rows, self.trusted_before_ns)


def _proofs(rows: bytes, bound: int):
    for ino, ctime_ns in ROW.iter_unpack(rows):
        yield (ino, ctime_ns) if ino and ctime_ns < bound else None


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
        frame = codec.pack_compressed({
            "tree_id": tree_id, "entries": len(self._rows) // ROW.size,
            "trusted_before_ns": self.trusted_before_ns, "filesystem": self.filesystem,
            "rows": bytes(self._rows)})
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
    """The stat section of the manifest at path[start:end], None when it has none;
    ManifestError when it is damaged. The reader of the records checks it against the trailer
    (check_against)."""
    def fail(what):
        raise ManifestError(f"{show_path(path)}: stat section {what}")
    with open(path, "rb") as f:
        footer = _footer(f, start, end)
        if footer is None:
            return None
        records, length = footer
        if records < 12 or records + length + FOOTER.size != end - start:
            fail("out of bounds")
        f.seek(start + records)
        data = f.read(length)
    try:
        doc = codec.unpack_compressed(data, max_size=MAX_ROWS_BYTES)
        fs, bound, rows, tree_id = (doc["filesystem"], doc["trusted_before_ns"], doc["rows"],
                                    doc["tree_id"])
        ok = (type(rows) is bytes and len(rows) == doc["entries"] * ROW.size
              and type(bound) is int and type(tree_id) is bytes and (fs is None or type(fs) is dict))
    except (*codec.DecodeErrors, KeyError, TypeError):
        ok = False
    if not ok:
        fail("is corrupt")
    return StatSection(tree_id, fs, bound, rows)


def check_against(section: StatSection | None, trailer: dict, path):
    """The section must be of the manifest whose records were read: same tree ID and count."""
    if section is not None and (section.tree_id != trailer["tree_id"]
                                or len(section.rows) != trailer["entries"] * ROW.size):
        raise ManifestError(f"{show_path(path)}: stat section belongs to another manifest")
