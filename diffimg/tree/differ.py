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

from ..entry import Entry, Kind, path_key, same_object
from .delta import COPY, DELETE, LINK, META, NEW, PARENT, STORE, Change
from .merge import merge_join_pruned

PENDING = ""   # a file whose content is new at its path, until pass 3 gives it its action
# actions that add, remove or replace a name in its folder (META changes the entry in place)
_RENAMING = {DELETE, STORE, COPY, PARENT, NEW, LINK, PENDING}


def diff_trees(parent_entries, new_entries, parent_hints) -> list[Change]:
    """The delta from parent to new. parent_hints: a fresh iterable of the parent's file hints
    (entry.Hint), read in pass 2."""
    classifier = _DeltaClassifier()
    for p, n in merge_join_pruned(parent_entries, new_entries):
        classifier.add_pair(p, n)
    changes = classifier.changes_with_folder_records()
    assign_sources(classifier.pending, parent_hints)
    return changes


def classify(p: Entry | None, n: Entry) -> Change:
    """The record that turns the parent's entry p (None: a new path) into n, which differs.
    A file whose content is new at its path gets the action PENDING (see assign_sources)."""
    replaces = p is not None and p.kind != n.kind
    if n.link is not None:              # a later hardlink member, of any kind
        return Change(n.path, LINK, n.link, replaces, n.digest, p, n)
    if n.kind is Kind.FILE:
        if p is None or replaces or p.digest != n.digest or bool(p.sparse) != bool(n.sparse):
            # (the same bytes with other holes are rewritten)
            return Change(n.path, PENDING, replaces=replaces, digest=n.digest, before=p, after=n)
        if p.link is not None:          # was a hardlink member, now a file of its own
            return Change(n.path, PARENT, p.path, False, n.digest, p, n)
        return Change(n.path, META, digest=n.digest, before=p, after=n)
    if p is None or replaces or not same_object(p, n):
        return Change(n.path, NEW, replaces=replaces, before=p, after=n)
    return Change(n.path, META, before=p, after=n)


class _Folder:
    """An unchanged folder along the current path."""
    __slots__ = ("entry", "prefix", "recorded")

    def __init__(self, entry: Entry):
        self.entry = entry
        self.prefix = entry.path + b"/" if entry.path else b""   # of the paths below it
        self.recorded = False    # it has a META record already


class _DeltaClassifier:
    """Pass 1: a record for each changed path, and a META record for each unchanged folder in
    which an entry is added, removed or replaced (and for the root when any is)."""

    def __init__(self):
        self.changes: list[Change] = []
        self.pending: list[Change] = []       # files whose content needs a source
        self._unchanged: list[_Folder] = []   # unchanged folders along the current path
        self._folder_records: list[Change] = []
        self._renames = False

    def add_pair(self, p: Entry | None, n: Entry | None):
        path = (p or n).path
        unchanged = self._unchanged
        while unchanged and not path.startswith(unchanged[-1].prefix):
            unchanged.pop()
        if n is None:
            self._add(Change(p.path, DELETE, before=p))
        elif p is None or p != n:
            self._add(classify(p, n))
        elif n.kind is Kind.DIR:
            unchanged.append(_Folder(n))

    def _add(self, change: Change):
        self.changes.append(change)
        if change.action == PENDING:
            self.pending.append(change)
        if change.action in _RENAMING or change.replaces:
            self._renames = True
            folder = self._unchanged[-1] if self._unchanged else None
            if change.path and folder is not None and not folder.recorded \
                    and folder.entry.path == change.path.rpartition(b"/")[0]:
                self._record(folder)

    def _record(self, folder: _Folder):
        folder.recorded = True
        self._folder_records.append(Change(folder.entry.path, META, before=folder.entry,
                                           after=folder.entry))

    def changes_with_folder_records(self) -> list[Change]:
        root = self._unchanged[0] if self._unchanged and not self._unchanged[0].entry.path else None
        if self._renames and root is not None and not root.recorded:
            self._record(root)                # apply may keep moving content there
        if not self._folder_records:
            return self.changes
        return sorted(self.changes + self._folder_records, key=lambda c: path_key(c.path))


def assign_sources(pending: list[Change], parent_hints):
    """Passes 2 and 3: give each pending file its source. The parent's files are read once
    more, keeping only paths whose digest is wanted (memory grows with the change, not with the
    tree); then the content comes from the parent tree (a move or copy costs no bytes), from an
    earlier file of this delta (identical new contents are stored once), or is stored."""
    wanted = {c.digest for c in pending}
    in_parent: dict[bytes, bytes] = {}
    if wanted:
        for hint in parent_hints:
            if hint.digest in wanted and hint.digest not in in_parent:
                in_parent[hint.digest] = hint.path
    stored: dict[bytes, bytes] = {}
    for change in pending:
        if change.digest in in_parent:
            change.action, change.source = PARENT, in_parent[change.digest]
        elif change.digest in stored:
            change.action, change.source = COPY, stored[change.digest]
        else:
            change.action = STORE
            stored[change.digest] = change.path
