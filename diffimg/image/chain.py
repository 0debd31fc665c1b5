"""A chain of images: a full image and the diffs made on it, in order. Opens a chain (local
paths or http(s) URLs) and checks its order, and indexes where its layers store each content.
"""

import os
from typing import NamedTuple

from ..entry import Entry, Kind
from ..errors import ChainError, ImageError, show_path
from ..system.http import is_url
from ..system.safefs import open_file
from ..tree.delta import STORE
from ..tree.manifest import unsafe_path
from ..tree.merge import PathLookup
from .format import FOOTER, MAGIC, Image, ImageKind, meta_path_of
from .remote import RemoteImage


class Stored(NamedTuple):
    """Where a layer of the chain stores a content: a path in its container."""
    path: bytes
    layer: int        # the layer's number in the chain (0: the first)


def is_image(path) -> bool:
    """Whether path is an image (an http(s) URL is taken for one: opening it tells)."""
    if is_url(path):
        return True
    meta = meta_path_of(path)
    if meta is None:
        return False
    try:
        with open_file(meta) as f:
            f.seek(-FOOTER.size, os.SEEK_END)
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_image(path) -> Image:
    """An Image for a local path; for an http(s) URL, a remote.RemoteImage."""
    if is_url(path):
        key = os.fsdecode(path)
        if key not in _remote_images:          # (read once per run: its metadata is fetched)
            _remote_images[key] = RemoteImage(path)
        return _remote_images[key]
    return Image(path)


_remote_images: dict = {}


def open_chain(paths) -> list[Image]:
    """Open a base image and its diffs; check that each diff's parent is the layer before it."""
    layers = [open_image(p) for p in paths]
    if layers and layers[0].kind != ImageKind.FULL:
        raise ChainError(f"{show_path(layers[0].path)} is a differential image, not a base; "
                         "give the full image first")
    for before, layer in zip(layers, layers[1:]):
        if layer.kind != ImageKind.DIFF:
            raise ChainError(f"{show_path(layer.path)} is a full image, not a diff")
        if layer.parent_id != before.tree_id:
            raise ChainError(misplaced(layers, before, layer))
    return layers


def misplaced(layers, before, layer) -> str:
    """Why layer cannot follow before in the chain layers, naming files (never tree IDs): the
    layer it was made on when it is given, and the order that makes a chain when there is one."""
    made_on = next((other for other in layers if other.tree_id == layer.parent_id), None)
    said = f"{show_path(layer.path)} was not made on {show_path(before.path)}"
    if made_on is None:
        return (f"{said}, nor on any other image given: give its parent, the layer it was made "
                "on, before it (the chain from its base, in the order the images were made)")
    order = _chain_order(layers)
    return (f"{said} but on {show_path(made_on.path)}: the images are out of order"
            + (f"; give them as: {' '.join(show_path(x.path) for x in order)}" if order else ""))


def _chain_order(layers) -> list | None:
    """The layers in an order where each diff follows its parent, when one exists."""
    bases = [x for x in layers if x.kind == ImageKind.FULL]
    if len(bases) != 1:
        return None
    children = {}
    for x in layers:
        if x.kind == ImageKind.DIFF:
            children.setdefault(x.parent_id, []).append(x)
    order = bases
    while len(order) < len(layers):
        following = children.get(order[-1].tree_id, [])
        if len(following) != 1:
            return None
        order = order + following
    return order


class ChainIndex:
    """What restore needs to know of a chain's layers before it scans the target: where each
    content is stored in the diffs (get), the full image under them (base), and the paths a
    quick check cannot tell (ambiguous, below)."""

    def __init__(self, base=None):
        self.stored: dict[bytes, Stored] = {}    # the diffs' stored content, the newest wins
        self.ambiguous: set[bytes] = set()
        self.base = base                          # the full image, layer 0: see BaseContents

    def get(self, digest: bytes) -> Stored | None:
        """Where the newest diff storing this content holds it; None when none does."""
        return self.stored.get(digest)

    def sources(self, digests) -> dict[bytes, Stored]:
        """Where the chain holds each of digests it holds: the newest diff storing it, else the
        full image (its manifest read once, only for what the diffs lack)."""
        found = {d: self.stored[d] for d in digests if d in self.stored}
        missing = set(digests) - found.keys()
        if missing:
            found.update(_base_sources(self.base, missing))
        return found


class BaseContents:
    """Where the full image holds the contents the writes need, without a map of all of them:
    the writes come in canonical order, and so do the image's files, so most are found at their
    own path in one merge (at_path); what moved is looked up in a second pass (find)."""

    def __init__(self, base):
        self._base = base
        self._files = PathLookup(self._leaders() if base is not None else ())

    def _leaders(self):
        """The hints of the files whose content the container holds: a file's first path (a
        later hardlink member is not in the container)."""
        return self._base.file_hints(leaders_only=True)

    def at_path(self, f: Entry) -> Stored | None:
        """The image's file at f's own path, when it holds f's content."""
        hint = self._files.get(f.path)
        if hint is not None and hint.digest == f.digest:
            return self._source(f.path)
        return None

    def find(self, digests: set[bytes]) -> dict[bytes, Stored]:
        """Where the image holds each of digests (the first path with it)."""
        return _base_sources(self._base, digests)

    def _source(self, path: bytes) -> Stored:
        return _base_source(self._base, path)


def _base_sources(base, digests: set[bytes]) -> dict[bytes, Stored]:
    """Where the full image base holds each of digests (the first path with it)."""
    found: dict[bytes, Stored] = {}
    if base is not None:
        for hint in base.file_hints(leaders_only=True):   # the files its container holds
            if hint.digest in digests and hint.digest not in found:
                found[hint.digest] = _base_source(base, hint.path)
    return found


def _base_source(base, path: bytes) -> Stored:
    if unsafe_path(path):                         # it names a file to read in the container
        raise ImageError(f"{show_path(base.path)}: unsafe path {show_path(path)!r}")
    return Stored(path, 0)


def index_chain(layers) -> ChainIndex:
    """Where each content is stored in the chain's containers (the newest layer storing it
    wins; the full image's manifest is read only if a content is in no diff), and the paths at
    which the chain holds two contents with the same size and mtime: a target file there may
    hold either, so its size and mtime prove nothing and it is hashed. Every content a path
    ever had in the chain is in a delta record (before or after)."""
    chain = ChainIndex(layers[0] if layers and layers[0].kind == ImageKind.FULL else None)
    seen: dict[tuple, bytes] = {}       # (path, size, mtime_ns) -> a digest found there
    for number, layer in enumerate(layers):
        if layer.kind == ImageKind.FULL:
            continue
        for change in layer.delta():
            if change.action == STORE:
                if unsafe_path(change.path) or change.digest is None:
                    raise ImageError(f"{show_path(layer.path)}: bad delta record "
                                     f"{show_path(change.path)!r}")
                chain.stored[change.digest] = Stored(change.path, number)
            for e in (change.before, change.after):
                if e is None or e.kind is not Kind.FILE or e.digest is None:
                    continue
                if seen.setdefault((e.path, e.size, e.mtime_ns), e.digest) != e.digest:
                    chain.ambiguous.add(e.path)
    return chain
