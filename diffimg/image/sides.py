"""Turn a command-line path (a tree, a manifest or an image) into a stream of entries."""

import itertools
import os

from ..errors import InputNotFound, ManifestError, show_path
from ..scan import leftout
from ..scan.scanner import hints_of, scan
from ..target.quickcheck import tree_hints
from ..tree.manifest import ManifestReader, TreeId, is_manifest
from ..windows import ntfs
from .chain import is_image, open_image


def kind_of(path) -> str:
    """'image', 'tree' (a folder) or 'manifest'; InputNotFound or ManifestError otherwise."""
    if is_image(path):
        return "image"
    if os.path.isdir(path):
        return "tree"
    if not os.path.lexists(path):
        raise InputNotFound(f"no such file or folder: {show_path(path)}")
    if is_manifest(path):
        return "manifest"
    raise ManifestError(f"{show_path(path)} is neither a folder, a manifest nor an image")


class Side:
    """One side of a comparison: a tree, a manifest or an image (the tree it produces), as a
    stream of entries; once the stream has been read to its end, their count and tree ID. A
    recorded side has both from its verified reader; a scanned tree's records are encoded as
    they pass to learn them."""

    def __init__(self, path, kind: str, scanned=None):
        self.path, self.kind = path, kind
        self._scanned = scanned      # a tree's scan (entries), None for a recorded side
        self.entries = 0
        self.tree_id: bytes | None = None

    def _reader(self):
        return open_image(self.path).manifest_reader() if self.kind == "image" else ManifestReader(self.path)

    def __iter__(self):
        if self._scanned is not None:
            ids = TreeId()
            for entry in self._scanned:
                ids.add(entry)
                yield entry
            self.entries, self.tree_id = ids.entries, ids.digest()
            return
        with self._reader() as m:
            for entry in m.entries():
                self.entries += 1
                yield entry
            self.tree_id = m.trailer["tree_id"]

    def windows_defaults(self) -> bool | None:
        """Whether this recorded image left a Windows tree's defaults out (None: a manifest,
        which does not say)."""
        return open_image(self.path).info.get("windows_defaults") is True if self.kind == "image" \
            else None

    def from_ntfs(self) -> bool:
        """Whether this recorded tree was read from NTFS with its NTFS attributes: a tree it is
        compared with is read with them only then (restore.holds_ntfs)."""
        with self._reader() as m:
            return ntfs.read_from_ntfs(m.header.get("source"))

    def tree_hints(self, tree, trust_mtime: bool):
        """What a scan of tree may trust of this recorded side (quickcheck.tree_hints)."""
        tree_id = open_image(self.path).tree_id if self.kind == "image" else None
        return tree_hints(tree, self._reader, tree_id, trust_mtime)


def compare_sides(a, b, *, checksum=False, trust_mtime=False, excludes=(), on_progress=None,
                  on_warning=None, windows_files=False):
    """The two Sides of a comparison, sharing digests where a quick check allows.

    A tree scanned against a manifest (or an image) reuses its digests where a stat proof
    allows (quickcheck.py); with trust_mtime, for files whose size and mtime_ns match, and of
    two trees the second reuses the first's digests that way. Without it, both trees are hashed.
    With checksum every tree side hashes all its content.
    """
    kinds = kind_of(a), kind_of(b)

    def scanned(path, previous, trust=False, ntfs_attributes=True, leave_out=frozenset(),
                whole=windows_files):
        return scan(path, previous=previous, checksum=checksum, trust_mtime=trust,
                    excludes=excludes, on_progress=on_progress, on_warning=on_warning,
                    windows_files=whole, ntfs_attributes=ntfs_attributes, leave_out=leave_out)

    def tree(path, recorded):
        # read as the recorded tree was: with NTFS values only if it has them; without what
        # Windows makes again only if it left that out (as restore does)
        how = {"ntfs_attributes": recorded.from_ntfs()}
        defaults = recorded.windows_defaults()
        if defaults is not None and not windows_files:
            how["whole"] = True
            how["leave_out"] = frozenset(leftout.present_in(path)) if defaults else frozenset()
        if checksum:
            return Side(path, "tree", scanned(path, None, **how))
        return Side(path, "tree", scanned(path, *recorded.tree_hints(path, trust_mtime), **how))

    if "tree" not in kinds:
        return Side(a, kinds[0]), Side(b, kinds[1])
    if kinds[1] != "tree":
        recorded = Side(b, kinds[1])
        return tree(a, recorded), recorded
    if kinds[0] != "tree":
        recorded = Side(a, kinds[0])
        return recorded, tree(b, recorded)
    if not trust_mtime:
        return Side(a, "tree", scanned(a, None)), Side(b, "tree", scanned(b, None))
    first, for_second = itertools.tee(scanned(a, None))
    return Side(a, "tree", first), Side(b, "tree", scanned(b, hints_of(for_second), True))
