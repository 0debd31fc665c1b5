"""Turn a command-line path (a tree or a manifest) into a stream of entries."""

import itertools
import os

from .errors import InputNotFound, ManifestError, show_path
from .manifest import is_manifest, read_entries, read_file_hints
from .scanner import hints_of, scan


def kind_of(path) -> str:
    """'tree' for a folder, 'manifest' for a manifest file; InputNotFound otherwise."""
    if os.path.isdir(path):
        return "tree"
    if not os.path.lexists(path):
        raise InputNotFound(f"no such file or folder: {show_path(path)}")
    if is_manifest(path):
        return "manifest"
    raise ManifestError(f"{show_path(path)} is neither a folder nor a diffimg manifest")


def compare_streams(a, b, *, checksum=False, excludes=(), on_progress=None, on_warning=None):
    """Entry streams for both sides of a comparison, sharing digests where a quick check allows.

    A tree scanned against a manifest reuses the manifest's digests for files whose size and
    mtime_ns match; of two trees, the first is hashed and the second reuses its digests. With
    checksum every tree side hashes all its content.
    """
    kinds = kind_of(a), kind_of(b)

    def tree(path, previous):
        return scan(path, previous=previous, checksum=checksum, excludes=excludes,
                    on_progress=on_progress, on_warning=on_warning)

    if kinds == ("manifest", "manifest"):
        return read_entries(a), read_entries(b)
    if kinds == ("tree", "manifest"):
        return tree(a, read_file_hints(b)), read_entries(b)
    if kinds == ("manifest", "tree"):
        return read_entries(a), tree(b, read_file_hints(a))
    first, for_second = itertools.tee(tree(a, None))
    return first, tree(b, hints_of(for_second))
