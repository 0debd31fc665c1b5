"""Turn a command-line path (a tree, a manifest or an image) into a stream of entries."""

import itertools
import os

from .errors import InputNotFound, ManifestError, show_path
from .image import Image, is_image
from .manifest import is_manifest, read_entries, read_file_hints
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


def _entries(path, kind):
    return Image(path).entries() if kind == "image" else read_entries(path)


def _hints(path, kind):
    return Image(path).file_hints() if kind == "image" else read_file_hints(path)


def compare_streams(a, b, *, checksum=False, excludes=(), on_progress=None, on_warning=None):
    """Entry streams for both sides of a comparison, sharing digests where a quick check allows.

    An image stands for the tree it produces (its manifest). A tree scanned against a manifest
    (or an image) reuses the manifest's digests for files whose size and
    mtime_ns match; of two trees, the first is hashed and the second reuses its digests. With
    checksum every tree side hashes all its content.
    """
    kinds = kind_of(a), kind_of(b)

    def tree(path, previous):
        return scan(path, previous=previous, checksum=checksum, excludes=excludes,
                    on_progress=on_progress, on_warning=on_warning)

    if "tree" not in kinds:
        return _entries(a, kinds[0]), _entries(b, kinds[1])
    if kinds[1] != "tree":
        return tree(a, _hints(b, kinds[1])), _entries(b, kinds[1])
    if kinds[0] != "tree":
        return _entries(a, kinds[0]), tree(b, _hints(a, kinds[0]))
    first, for_second = itertools.tee(tree(a, None))
    return first, tree(b, hints_of(for_second))
