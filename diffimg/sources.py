"""Turn a command-line path (a tree, a manifest or an image) into a stream of entries."""

import itertools
import os

from .errors import InputNotFound, ManifestError, show_path
from .image import Image, is_image
from .manifest import ManifestReader, is_manifest
from .scanner import hints_of, scan


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


class Recorded:
    """The entries of a manifest or an image (its tree), with the count and the tree ID its
    reader verified, known once the stream has been read to its end."""

    def __init__(self, path, kind):
        self.path, self.kind = path, kind
        self.entries = 0
        self.tree_id: bytes | None = None

    def _reader(self):
        return Image(self.path).manifest_reader() if self.kind == "image" else ManifestReader(self.path)

    def __iter__(self):
        with self._reader() as m:
            for entry in m.entries():
                self.entries += 1
                yield entry
            self.tree_id = m.trailer["tree_id"]

    def hints(self):
        with self._reader() as m:
            yield from m.file_hints()


def compare_streams(a, b, *, checksum=False, excludes=(), on_progress=None, on_warning=None):
    """Entry streams for both sides of a comparison, sharing digests where a quick check allows.

    An image stands for the tree it produces (its manifest); such a side is a Recorded. A tree
    scanned against a manifest (or an image) reuses the manifest's digests for files whose size
    and mtime_ns match; of two trees, the first is hashed and the second reuses its digests.
    With checksum every tree side hashes all its content.
    """
    kinds = kind_of(a), kind_of(b)

    def tree(path, previous):
        return scan(path, previous=previous, checksum=checksum, excludes=excludes,
                    on_progress=on_progress, on_warning=on_warning)

    if "tree" not in kinds:
        return Recorded(a, kinds[0]), Recorded(b, kinds[1])
    if kinds[1] != "tree":
        recorded = Recorded(b, kinds[1])
        return tree(a, recorded.hints()), recorded
    if kinds[0] != "tree":
        recorded = Recorded(a, kinds[0])
        return recorded, tree(b, recorded.hints())
    first, for_second = itertools.tee(tree(a, None))
    return first, tree(b, hints_of(for_second))
