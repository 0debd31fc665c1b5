"""Classify the changes from a parent tree to a new one (both manifests) into a delta.

Pass 1 merge-joins the two canonical entry streams. Files whose content is new at their path
wait for a source; pass 2 reads the parent's files once more, keeping only paths whose digest is
wanted, so memory grows with the change, not with the tree. Pass 3 gives each waiting file its
source: the parent tree (a move or copy costs no bytes), an earlier file of this delta (identical
new contents are stored once), or this image (stored).

Every folder in which an entry is added, removed or replaced has a record too (META, even when its
own attributes are unchanged), and so does the root when any has: applying the delta changes those
folders' times (apply keeps content that moves in a folder at the root), and apply sets them back
from the records without reading the manifest.
"""

from .delta import COPY, DELETE, LINK, META, NEW, PARENT, STORE, Change
from .entry import Kind, path_key
from .merge import merge_join

# actions that add, remove or replace a name in its folder (META changes the entry in place)
_RENAMING = {DELETE, STORE, COPY, PARENT, NEW, LINK}


def _same_object(p, n) -> bool:
    """Same kind and what defines the object (not its metadata): target, device number, and
    the hardlink group it belongs to (a symlink, FIFO or device can be hardlinked too)."""
    return p.target == n.target and p.rdev == n.rdev and p.link == n.link


def diff_trees(parent_entries, new_entries, parent_hints) -> list[Change]:
    """The delta from parent to new. parent_hints: a fresh iterable of the parent's file hints
    (path, size, mtime_ns, digest, sparse), read in pass 2."""
    changes: list[Change] = []
    waiting: list[Change] = []          # files whose content needs a source
    removed = None                      # a parent folder gone or replaced: skip its subtree
    unchanged_dirs: list = []           # unchanged folders along the current path:
                                        # [entry, recorded, prefix of the paths below it]
    folder_records: list[Change] = []   # records for unchanged folders whose entries change

    renames = False

    def add(change):
        nonlocal renames
        changes.append(change)
        if change.action in _RENAMING or change.replaces or not change.action:  # "": content()
            renames = True
            parent = change.path.rpartition(b"/")[0]
            if change.path and unchanged_dirs and unchanged_dirs[-1][0].path == parent \
                    and not unchanged_dirs[-1][1]:
                unchanged_dirs[-1][1] = True
                folder = unchanged_dirs[-1][0]
                folder_records.append(Change(parent, META, before=folder, after=folder))

    def content(p, n, replaces):
        change = Change(n.path, "", replaces=replaces, digest=n.digest, before=p, after=n)
        add(change)
        waiting.append(change)

    for p, n in merge_join(parent_entries, new_entries):
        path = (p or n).path
        while unchanged_dirs and not path.startswith(unchanged_dirs[-1][2]):
            unchanged_dirs.pop()
        if removed is not None:
            if path.startswith(removed) and p is not None and n is None:
                continue
            if not path.startswith(removed):
                removed = None
        if n is None:
            add(Change(p.path, DELETE, before=p))
            if p.kind is Kind.DIR:
                removed = p.path + b"/"
            continue
        replaces = p is not None and p.kind != n.kind
        if replaces and p.kind is Kind.DIR:
            removed = p.path + b"/"
        if p is not None and p == n:
            if n.kind is Kind.DIR:
                unchanged_dirs.append([n, False, n.path + b"/" if n.path else b""])
            continue
        if n.link is not None:              # a later hardlink member, of any kind
            add(Change(n.path, LINK, n.link, replaces, n.digest, p, n))
        elif n.kind is Kind.FILE:
            if p is None or replaces or p.digest != n.digest or bool(p.sparse) != bool(n.sparse):
                content(p, n, replaces)     # (the same bytes with other holes are rewritten)
            elif p.link is not None:        # was a hardlink member, now a file of its own
                add(Change(n.path, PARENT, p.path, False, n.digest, p, n))
            else:
                add(Change(n.path, META, digest=n.digest, before=p, after=n))
        elif p is None or replaces or not _same_object(p, n):
            add(Change(n.path, NEW, replaces=replaces, before=p, after=n))
        else:
            add(Change(n.path, META, before=p, after=n))
    root = unchanged_dirs[0] if unchanged_dirs and unchanged_dirs[0][0].path == b"" else None
    if renames and root is not None and not root[1]:   # apply may keep moving content there
        folder_records.append(Change(b"", META, before=root[0], after=root[0]))
    if folder_records:
        changes += folder_records
        changes.sort(key=lambda c: path_key(c.path))

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

