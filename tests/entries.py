"""In-memory entries for the unit tests of the differ and the planner: a tree is a list of
Entries in canonical order, the root folder first, as a manifest has them; and entries (a
manifest's) in the shape of snapshot.snapshot, to compare with a real tree."""

import xxhash

from diffimg.entry import FMT_OF_KIND, Entry, Hint, Kind, path_key

T = 1_700_000_000_123_456_789
UID, GID = 1000, 1000


def digest(content: bytes) -> bytes:
    return xxhash.xxh3_128_digest(content)


def d(path, mode=0o755, mtime=T, **kw):
    return Entry(path, Kind.DIR, mode, UID, GID, mtime, **kw)


def f(path, content=b"", mode=0o644, mtime=T, **kw):
    kw.setdefault("sparse", False)
    return Entry(path, Kind.FILE, mode, UID, GID, mtime, size=len(content), digest=digest(content), **kw)


def sym(path, target, mtime=T):
    return Entry(path, Kind.SYMLINK, 0o777, UID, GID, mtime, target=target)


def fifo(path, **kw):
    return Entry(path, Kind.FIFO, 0o644, UID, GID, T, **kw)


def tree(*entries):
    """Entries in canonical order, the root folder first."""
    return sorted([d(b""), *entries], key=lambda e: path_key(e.path))


def hints(entries):
    """The quick-check hints of a tree's files, as ManifestReader.file_hints gives them."""
    return [Hint(e.path, e.size, e.mtime_ns, e.digest, e.sparse) for e in entries if e.kind is Kind.FILE]


def manifest_view(entries) -> dict:
    """Entries in the shape of tests.snapshot, hardlink members resolved into groups."""
    out, groups = {}, {}
    for e in entries:
        rec = {"type": FMT_OF_KIND[e.kind], "mode": e.mode, "uid": e.uid, "gid": e.gid,
               "mtime_ns": e.mtime_ns, "xattrs": dict(e.xattrs or {})}
        if e.kind is Kind.FILE:
            rec.update(xxh3_128=e.digest, size=e.size, sparse=e.sparse)
        elif e.kind is Kind.SYMLINK:
            rec["target"] = e.target
        elif e.kind in (Kind.CHAR, Kind.BLOCK):
            rec["rdev"] = e.rdev
        if e.link is not None:
            groups.setdefault(e.link, [e.link]).append(e.path)
        out[e.path] = rec
    for group in groups.values():
        for path in group:
            out[path]["hardlinks"] = tuple(sorted(group))
    return out
