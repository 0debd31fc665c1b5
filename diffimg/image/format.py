"""Image files: a container with the tree's file content, followed by diffimg's metadata.

    squashfs / btrfs / ext4:  IMAGE = [container][manifest][delta][info][index][footer]
    dir:                      IMAGE/tree/ (content), IMAGE/diffimg.meta = [manifest]...[footer]

The footer (last 52 bytes) locates the index; the index locates and digests each blob. So the
manifest, delta and info of any image are read with plain file reads: no root, no mount.
Byte-level layout: spec/image.md.
"""

import contextlib
import enum
import os
import stat
import struct

import xxhash

from .. import codec
from ..entry import path_key
from ..errors import ImageError, InputNotFound, UnsupportedVersion, show_path
from ..system.safefs import open_file
from ..tree import statcache
from ..tree.delta import COPY, STORE, Change
from ..tree.manifest import ManifestReader, read_entries, read_file_hints
from . import containers

MAGIC = b"\x89DIFFIMG-IMAGE\r\n"
VERSION = (1, 0)
FOOTER = struct.Struct(">16sHHQQ16s")     # magic, major, minor, index offset, index length, digest
ALIGN = 4096
BLOBS = ("manifest", "delta", "info", "ranges")
MAX_DELTA_RECORDS = 1 << 26     # far beyond any tree's changes; a bigger count is junk
MAX_SMALL_BLOB = 16 << 20       # the index and the info are a few hundred bytes


class ImageKind(enum.StrEnum):
    """What an image holds: a whole tree, or the changes to its parent's (info's "kind")."""
    FULL = "full"
    DIFF = "diff"


def blob_digest(data: bytes) -> bytes:
    return xxhash.xxh3_128_digest(data)


def append_metadata(f, container: dict, manifest_path, delta: list[Change] | None, info: dict,
                    ranges: bytes | None = None):
    """Append the metadata section to the open file f (positioned at the end of its content);
    ranges: the ranges blob (squashfs containers, remote.ranges_blob)."""
    index = {"container": container}
    with open(manifest_path, "rb") as m:
        blobs = {"manifest": m.read(),
                 "delta": codec.pack_compressed([c.to_record() for c in delta])
                 if delta is not None else None,
                 "info": codec.pack(info),
                 "ranges": ranges}
    for name in BLOBS:
        data = blobs[name]
        if data is None:
            continue
        index[name] = [f.tell(), len(data), blob_digest(data)]
        f.write(data)
    index_bytes = codec.pack(index)
    index_offset = f.tell()
    f.write(index_bytes)
    f.write(FOOTER.pack(MAGIC, *VERSION, index_offset, len(index_bytes), blob_digest(index_bytes)))


def meta_path_of(path) -> bytes | None:
    """The file holding an image's metadata: the image file itself, or IMAGE/diffimg.meta."""
    path = os.fsencode(path)
    if os.path.isdir(path):
        meta = os.path.join(path, containers.dirfmt.META)
        return meta if os.path.isfile(meta) else None
    return path


class Image:
    """An image opened for reading its metadata (and, with content(), its files)."""

    remote = False          # remote.RemoteImage: on a web server

    def __init__(self, path):
        self.path = os.fsencode(path)
        if not os.path.lexists(self.path):
            raise InputNotFound(f"no such image: {show_path(path)}")
        self.meta_path = meta_path_of(self.path)
        self._manifest_checked = False
        if self.meta_path is None:
            raise ImageError(f"{show_path(path)} is a folder but not a diffimg image")
        try:
            with open_file(self.meta_path) as f:
                self._read_index(f)
                self.info = self._info(f)
        except OSError as exc:
            raise ImageError(f"cannot read {show_path(path)}: {exc.strerror}") from None

    def _fail(self, what: str):
        raise ImageError(f"{show_path(self.path)}: {what}")

    def _read_index(self, f):
        size = f.seek(0, os.SEEK_END)
        if size < FOOTER.size:
            self._fail("not a diffimg image (too short)")
        f.seek(size - FOOTER.size)
        magic, major, minor, offset, length, digest = FOOTER.unpack(f.read(FOOTER.size))
        if magic != MAGIC:
            self._fail("not a diffimg image (no footer; truncated or another file)")
        if major != VERSION[0]:
            raise UnsupportedVersion(f"{show_path(self.path)}: image format {major}.{minor} is "
                                     f"not supported (this diffimg reads {VERSION[0]}.x)")
        if offset + length > size - FOOTER.size:
            self._fail("index out of bounds (truncated)")
        if length > MAX_SMALL_BLOB:
            self._fail("index is corrupt (too large)")
        f.seek(offset)
        data = f.read(length)
        if blob_digest(data) != digest:
            self._fail("index is corrupt")
        try:
            index = codec.unpack(data)
        except codec.DecodeErrors:
            self._fail("index is corrupt")
        container = index.get("container") if type(index) is dict else None
        if type(container) is not dict or container.get("format") not in containers.FORMATS \
                or not _count(container.get("length", 0)) or not _count(container.get("offset", 0)) \
                or "manifest" not in index or "info" not in index:
            self._fail("index is incomplete or malformed")
        self.container, self.format = container, container["format"]
        self.blobs = {}
        for name in BLOBS:
            if name not in index:
                continue
            where = index[name]
            if type(where) is not list or len(where) != 3 or not _count(where[0]) \
                    or not _count(where[1]) or type(where[2]) is not bytes or len(where[2]) != 16:
                self._fail(f"index entry of the {name} is malformed")
            if where[0] + where[1] > offset:
                self._fail(f"{name} out of bounds")
            if name == "info" and where[1] > MAX_SMALL_BLOB:
                self._fail("info is corrupt (too large)")
            self.blobs[name] = tuple(where)
        # the container lies before every blob, from the start of the file
        if container.get("offset", 0) != 0 or any(
                container.get("length", 0) > start for start, _, _ in self.blobs.values()):
            self._fail("container out of bounds")

    def _blob(self, f, name: str, check: bool = True) -> bytes:
        start, length, digest = self.blobs[name]
        f.seek(start)
        data = f.read(length)
        if check and blob_digest(data) != digest:
            self._fail(f"{name} is corrupt")
        return data

    def blob(self, name: str) -> bytes:
        """A blob's bytes, its digest checked (ImageError when absent or damaged)."""
        if name not in self.blobs:
            self._fail(f"it has no {name} blob")
        with open_file(self.meta_path) as f:
            return self._blob(f, name)

    def _info(self, f) -> dict:
        try:
            info = codec.unpack(self._blob(f, "info"))
        except codec.DecodeErrors:
            self._fail("info is corrupt")
        if type(info) is not dict or info.get("kind") not in tuple(ImageKind):
            self._fail("info is incomplete")
        problem = _info_problem(info)
        if problem:
            self._fail(f"info is malformed ({problem})")
        if (info["kind"] == ImageKind.DIFF) != ("delta" in self.blobs):
            self._fail("info's kind does not match the index (a diff, and only a diff, has a delta)")
        return info

    @property
    def kind(self) -> ImageKind:
        return ImageKind(self.info["kind"])

    @property
    def tree_id(self) -> bytes:
        return self.info["tree_id"]

    @property
    def parent_id(self) -> bytes | None:
        return self.info.get("parent_id")

    def manifest_reader(self) -> ManifestReader:
        """The manifest's reader; a damaged manifest is a bad image (ImageError)."""
        return ManifestReader(*self._manifest_span(), ImageError)

    def entries(self):
        return read_entries(*self._manifest_span(), ImageError)

    def file_hints(self, filesystem: dict | None = None, leaders_only: bool = False):
        return read_file_hints(*self._manifest_span(), filesystem, ImageError, leaders_only)

    def _manifest_span(self) -> tuple:
        """(file, offset, length) of the manifest blob, its digest checked on first use."""
        if not self._manifest_checked:
            with open_file(self.meta_path) as f:
                digest = xxhash.xxh3_128()
                for chunk in _blob_chunks(f, *self.blobs["manifest"][:2]):
                    digest.update(chunk)
            if digest.digest() != self.blobs["manifest"][2]:
                self._fail("manifest is corrupt")
            self._manifest_checked = True
        return (self.meta_path, *self.blobs["manifest"][:2])

    def manifest_records(self) -> tuple[int, int]:
        """Where the manifest's records lie in meta_path: the blob less its stat section."""
        start, length, _ = self.blobs["manifest"]
        with open_file(self.meta_path) as f:
            return start, statcache.records_end(f, start, start + length)

    def delta(self) -> list[Change] | None:
        if "delta" not in self.blobs:
            return None
        with open_file(self.meta_path) as f:
            data = self._blob(f, "delta")
        try:
            changes = [Change.from_record(rec)
                       for rec in codec.iter_compressed_array(data, MAX_DELTA_RECORDS)]
        except (*codec.DecodeErrors, TypeError, MemoryError) as exc:
            self._fail(f"delta is corrupt ({exc})")
        keys = [path_key(c.path) for c in changes]
        if any(a >= b for a, b in zip(keys, keys[1:])):
            self._fail("delta is corrupt (records out of order or repeated)")
        stored = {c.path: c.digest for c in changes if c.action == STORE}
        for c in changes:
            if c.action == COPY and stored.get(c.source) != c.digest:
                self._fail(f"delta is corrupt ({show_path(c.path)} copies content this image "
                           "does not store)")
        return changes

    def check_blobs(self) -> list[str]:
        """Problems with the metadata blobs' digests (empty when all are intact)."""
        problems = []
        with open_file(self.meta_path) as f:
            for name in self.blobs:
                try:
                    self._blob(f, name)
                except ImageError as exc:
                    problems.append(exc.message)
        return problems

    def content(self):
        """A context manager yielding the path of the container's tree (see container_tree)."""
        return container_tree(self.path, self.format, self.container.get("length", 0))


def _blob_chunks(f, start: int, length: int):
    f.seek(start)
    while length > 0:
        chunk = f.read(min(length, 1 << 20))
        if not chunk:
            return
        length -= len(chunk)
        yield chunk


def _count(value) -> bool:
    return type(value) is int and value >= 0


def _int64(value) -> bool:
    return type(value) is int and -(1 << 63) <= value < 1 << 63


def _is_id(value) -> bool:
    return type(value) is bytes and len(value) == 16


def _info_problem(info: dict) -> str | None:
    """What is wrong with the fields of an info blob that diffimg reads (spec/image.md)."""
    if not _is_id(info.get("tree_id")):
        return "tree_id is not 16 bytes"
    if info["kind"] == ImageKind.DIFF and not _is_id(info.get("parent_id")):
        return "a diff's parent_id is not 16 bytes"
    if info["kind"] == ImageKind.FULL and info.get("parent_id") is not None:
        return "a full image has a parent_id"
    for name in ("entries", "files", "bytes", "stored_files", "stored_bytes"):
        if not _count(info.get(name)):
            return f"{name} is not a count"
    if info["entries"] < 1:
        return "no entries"
    if type(info.get("format")) is not str or type(info.get("source")) is not dict:
        return "format or source is missing"
    if not _int64(info.get("created_ns")):
        return "created_ns is not a time"
    for name in ("tool", "compression"):
        if name in info and type(info[name]) is not str:
            return f"{name} is not text"
    if "os" in info and (type(info["os"]) is not dict or not all(
            type(k) is str and type(v) is str and len(v) <= 4096 for k, v in info["os"].items())):
        return "os is not a map of texts"
    converted = info.get("converted_from")
    if converted is not None and (type(converted) is not dict or not all(
            type(k) is str and type(v) in (str, int) for k, v in converted.items())):
        return "converted_from is not a map of texts and numbers"
    if info.get("windows_defaults", True) is not True:
        return "windows_defaults is not true"
    left_out = info.get("left_out")
    if left_out is not None and (type(left_out) is not list or not all(
            type(p) is str for p in left_out)):
        return "left_out is not a list of paths"
    if "container_bytes" in info and not _count(info["container_bytes"]):
        return "container_bytes is not a count"
    changes = info.get("changes")
    if changes is not None and (type(changes) is not dict or not all(
            type(k) is str and _count(v) for k, v in changes.items())):
        return "changes is not a map of counts"
    return None


@contextlib.contextmanager
def container_tree(path, fmt: str, length: int):
    """Yield the path of a container's tree: the dir format's folder, or a read-only mount of
    the container's first length bytes (root needed), unmounted afterwards."""
    container = containers.get(fmt)
    folder = container.content_folder(os.fsencode(path))
    if folder is not None:
        try:
            real_folder = stat.S_ISDIR(os.lstat(folder).st_mode)   # not a symlink to elsewhere
        except OSError:
            real_folder = False
        if not real_folder:
            raise ImageError(f"{show_path(path)}: its content folder is missing or not a folder")
        yield folder
        return
    try:
        with open_file(path) as f:
            head = f.read(min(length, containers.SUPERBLOCK_BYTES))
    except OSError as exc:
        raise ImageError(f"cannot read {show_path(path)}: {exc.strerror}") from None
    problem = container.superblock_problem(head, length)
    if not problem and hasattr(container, "tables_problem"):
        problem = _tables_problem(container, path, length)
    if problem:
        raise ImageError(f"{show_path(path)}: its container is damaged ({problem})")
    from ..system.loop import mounted
    with mounted(path, container.fstype, length) as tree:
        yield tree


def _tables_problem(container, path, length: int) -> str | None:
    """What container.tables_problem finds in the container's first length bytes, read through
    a map of the file (it reads only the few blocks the mount would check first)."""
    import mmap
    try:
        with open_file(path) as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as whole:
            view = memoryview(whole)[:length]
            try:
                return container.tables_problem(view, length)
            finally:
                view.release()
    except (OSError, ValueError) as exc:
        return f"cannot be read: {getattr(exc, 'strerror', None) or exc}"
