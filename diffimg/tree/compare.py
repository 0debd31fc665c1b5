"""Compare two entry streams and itemize every difference."""

from dataclasses import dataclass, field

from ..entry import ACL_ACCESS, ACL_DEFAULT, Entry, Kind
from .merge import merge_join

ADDED, REMOVED, CHANGED = "added", "removed", "changed"


@dataclass
class Difference:
    path: bytes
    change: str                                     # added (only in B), removed (only in A), changed
    fields: dict[str, tuple] = field(default_factory=dict)   # name -> (value in A, value in B)


def xattr_label(name: bytes) -> str:
    if name == ACL_ACCESS:
        return "acl"
    if name == ACL_DEFAULT:
        return "default_acl"
    return "xattr:" + name.decode("utf-8", "backslashreplace")


def is_xattr_label(name: str) -> bool:
    """True for the field names entry_differences gives xattrs and ACLs."""
    return name.startswith(("xattr:", "acl", "default_acl"))


def entry_differences(a: Entry, b: Entry) -> dict[str, tuple]:
    """Fields in which two entries at the same path differ. A kind change is reported alone."""
    if a.kind != b.kind:
        return {"kind": (a.kind.name.lower(), b.kind.name.lower())}
    out = {}
    if a.size != b.size:            # of any kind: a size recorded on a non-file matches no entry
        out["size"] = (a.size, b.size)
    if a.kind is Kind.FILE:
        if a.digest is not None and b.digest is not None and a.digest != b.digest:
            out["content"] = (a.digest, b.digest)
        if bool(a.sparse) != bool(b.sparse):
            out["sparse"] = (bool(a.sparse), bool(b.sparse))
    for name in ("mode", "uid", "gid", "mtime_ns", "target", "rdev"):
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            out[name] = (va, vb)
    if a.link != b.link:
        out["hardlink"] = (a.link, b.link)
    xa, xb = a.xattrs or {}, b.xattrs or {}
    if xa != xb:
        for name in sorted(xa.keys() | xb.keys()):
            if xa.get(name) != xb.get(name):
                out[xattr_label(name)] = (xa.get(name), xb.get(name))
    return out


def compare(a, b):
    """Yield a Difference for each path where the entry streams a and b differ."""
    for ea, eb in merge_join(a, b):
        if eb is None:
            yield Difference(ea.path, REMOVED)
        elif ea is None:
            yield Difference(eb.path, ADDED)
        else:
            fields = entry_differences(ea, eb)
            if fields:
                yield Difference(ea.path, CHANGED, fields)
