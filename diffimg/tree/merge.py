"""Merge-join two entry streams that are both in canonical order."""

from ..entry import Kind, path_key


def merge_join(a, b):
    """Yield (entry_a, entry_b) pairs matched by path; a side is None where the path is missing."""
    a, b = iter(a), iter(b)
    ea, eb = next(a, None), next(b, None)
    ka = path_key(ea.path) if ea is not None else None
    kb = path_key(eb.path) if eb is not None else None
    while ea is not None or eb is not None:
        if eb is None or (ea is not None and ka < kb):
            yield ea, None
            ea = next(a, None)
            ka = path_key(ea.path) if ea is not None else None
        elif ea is None or kb < ka:
            yield None, eb
            eb = next(b, None)
            kb = path_key(eb.path) if eb is not None else None
        else:
            yield ea, eb
            ea, eb = next(a, None), next(b, None)
            ka = path_key(ea.path) if ea is not None else None
            kb = path_key(eb.path) if eb is not None else None


def merge_join_pruned(old, new, stays=None):
    """merge_join(old, new) without the old side's entries below a folder that is gone from new
    or replaced there by another kind: removing the folder removes them, so they need no action
    of their own. stays(path): true for an old folder that is not removed (it holds kept paths),
    whose entries are all passed on."""
    removed = None          # b"folder/" whose old subtree is left out
    for a, b in merge_join(old, new):
        if removed is not None:
            if (a or b).path.startswith(removed):
                if b is None:
                    continue
            else:
                removed = None
        if a is not None and a.kind is Kind.DIR and (b is None or b.kind is not Kind.DIR) \
                and not (stays is not None and stays(a.path)):
            removed = a.path + b"/"
        yield a, b


class PathLookup:
    """Items of a canonical-order stream (each with a .path) looked up by path, the paths asked
    in canonical order too: one pass over the stream, whatever its length."""

    def __init__(self, items):
        self._items = iter(items)
        self._advance()

    def _advance(self):
        self._cur = next(self._items, None)
        self._key = path_key(self._cur.path) if self._cur is not None else None

    def get(self, path: bytes):
        """The item at path, or None (then no earlier path may be asked any more)."""
        key = path_key(path)
        while self._cur is not None and self._key < key:
            self._advance()
        return self._cur if self._cur is not None and self._key == key else None

    def close(self):
        """Close the stream (a generator's own cleanup runs now)."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()
