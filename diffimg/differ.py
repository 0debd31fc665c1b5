"""Classify the changes from a parent tree to a new one (both manifests) into a delta.

Pass 1 merge-joins the two canonical entry streams. Files whose content is new at their path
wait for a source; pass 2 reads the parent's files once more, keeping only paths whose digest is
wanted, so memory grows with the change, not with the tree. Pass 3 gives each waiting file its
source: the parent tree (a move or copy costs no bytes), an earlier file of this delta (identical
new contents are stored once), or this image (stored).
"""

from .delta import COPY, DELETE, LINK, META, NEW, PARENT, STORE, Change
from .entry import Kind
from .merge import merge_join


def _same_object(p, n) -> bool:
    """Same kind and what defines the object (not its metadata): target, device number."""
    return p.target == n.target and p.rdev == n.rdev


def diff_trees(parent_entries, new_entries, parent_hints) -> list[Change]:
    """The delta from parent to new. parent_hints: a fresh iterable of the parent's file hints
    (path, size, mtime_ns, digest, sparse), read in pass 2."""
    changes: list[Change] = []
    waiting: list[Change] = []          # files whose content needs a source
    removed = None                      # a parent folder gone or replaced: skip its subtree

    def content(n, replaces):
        change = Change(n.path, "", replaces=replaces, digest=n.digest)
        changes.append(change)
        waiting.append(change)

    for p, n in merge_join(parent_entries, new_entries):
        if removed is not None:
            path = (p or n).path
            if path.startswith(removed) and p is not None and n is None:
                continue
            if not path.startswith(removed):
                removed = None
        if n is None:
            changes.append(Change(p.path, DELETE))
            if p.kind is Kind.DIR:
                removed = p.path + b"/"
            continue
        replaces = p is not None and p.kind != n.kind
        if replaces and p.kind is Kind.DIR:
            removed = p.path + b"/"
        if p is not None and p == n:
            continue
        if n.kind is Kind.FILE:
            if n.link is not None:
                changes.append(Change(n.path, LINK, n.link, replaces, n.digest))
            elif p is None or replaces or p.digest != n.digest:
                content(n, replaces)
            elif p.link is not None:        # was a hardlink member, now a file of its own
                changes.append(Change(n.path, PARENT, p.path, False, n.digest))
            else:
                changes.append(Change(n.path, META, digest=n.digest))
        elif p is None or replaces or not _same_object(p, n):
            changes.append(Change(n.path, NEW, replaces=replaces))
        else:
            changes.append(Change(n.path, META))

    wanted = {c.digest for c in waiting}
    in_parent: dict[bytes, bytes] = {}
    if wanted:
        for path, _size, _mtime, digest, _sparse in parent_hints:
            if digest in wanted and digest not in in_parent:
                in_parent[digest] = path
    stored: dict[bytes, bytes] = {}
    for change in waiting:
        if change.digest in in_parent:
            change.action, change.source = PARENT, in_parent[change.digest]
        elif change.digest in stored:
            change.action, change.source = COPY, stored[change.digest]
        else:
            change.action = STORE
            stored[change.digest] = change.path
    return changes
