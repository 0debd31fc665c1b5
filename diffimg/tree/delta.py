"""The delta: what a differential image does to its parent tree (spec/image.md).

One record per changed path, in canonical order: how to obtain the new entry, and both the
parent's entry and the new one, so that apply can check and change a target from the delta alone.
"""

from dataclasses import dataclass

from ..entry import Entry, Kind, same_object
from ..errors import show_path
from ..windows import streams
from .manifest import from_record, to_record, unsafe_path
from .merge import merge_join

DELETE = "delete"    # the path (with its subtree) is gone
STORE = "store"      # file content stored in this image, at the same path
COPY = "copy"        # file content stored in this image at another path (source)
PARENT = "parent"    # file content already in the parent tree, at source
META = "meta"        # same content at the same path; only metadata changed (or, for a folder,
                     # none: its entries change, so its recorded times are set back afterwards)
NEW = "new"          # a non-file entry, new or changed (folder, symlink, device, FIFO, socket)
LINK = "link"        # a later hardlink member of source (its group's first path)

ACTIONS = (DELETE, STORE, COPY, PARENT, META, NEW, LINK)
_ACTIONS = set(ACTIONS)
_SOURCED = {COPY, PARENT, LINK}
_CONTENT = {STORE, COPY, PARENT}        # a file's content, from this image or the parent


@dataclass(slots=True)
class Change:
    path: bytes
    action: str
    source: bytes | None = None     # COPY, PARENT: where the content is; LINK: the first member
    replaces: bool = False          # the parent has another kind of entry here: remove it first
    digest: bytes | None = None     # files: the content (in memory while classifying; recorded)
    before: Entry | None = None     # the parent's entry at path; None when the path is new
    after: Entry | None = None      # the new entry; None for DELETE

    def to_record(self) -> list:
        return [self.path, self.action, self.source, self.replaces, self.digest,
                _entry_record(self.before), _entry_record(self.after)]

    @classmethod
    def from_record(cls, rec) -> "Change":
        if type(rec) is not list or len(rec) < 7 or type(rec[0]) is not bytes \
                or rec[1] not in _ACTIONS or (rec[2] is not None and type(rec[2]) is not bytes) \
                or type(rec[3]) is not bool or (rec[4] is not None and type(rec[4]) is not bytes):
            raise ValueError(f"bad delta record {rec!r:.80}")
        path, action, source = rec[0], rec[1], rec[2]
        # apply acts on the delta alone: a path or source that could leave the target (or the
        # root anywhere but in a meta record) is refused here, as the manifest reader refuses it
        if (unsafe_path(path) and (path != b"" or action != META)) \
                or (action in _SOURCED) != (source is not None) \
                or (source is not None and unsafe_path(source)):
            raise ValueError(f"unsafe or incomplete delta record {rec!r:.80}")
        before, after = _entry(rec[5], path), _entry(rec[6], path)
        if (after is None) != (action == DELETE) or (before is None and (rec[3] or action in (DELETE, META))):
            raise ValueError(f"delta record without the entries its action needs {rec!r:.80}")
        # a later hardlink member is a link record, linked to the very path its record names
        if after is not None and (after.link is not None) != (action == LINK) \
                or (action == LINK and after.link != source):
            raise ValueError(f"delta record whose hardlink is not its source {rec!r:.80}")
        problem = _rule_broken(action, rec[3], rec[4], before, after)
        if problem:
            raise ValueError(f"delta record where {problem} {rec!r:.80}")
        return cls(path, action, source, rec[3], rec[4], before, after)


def stored_contents(changes) -> list[tuple]:
    """(container path, digest, size, ...) of each content a diff with these changes stores:
    its store records' files, and its records' large streams (streams.stored_items), each once."""
    return [(c.path, c.digest, c.after.size) for c in changes if c.action == STORE] + \
        streams.stored_items(streams.of_changes(changes))


def _rule_broken(action: str, replaces: bool, digest, before: Entry | None,
                 after: Entry | None) -> str | None:
    """Which of the rules of spec/image.md ("Delta rules") a record breaks, if any."""
    if replaces != (before is not None and after is not None and before.kind != after.kind):
        return "replaces is not exactly 'the kinds differ'"
    if digest != (after.digest if after is not None and after.kind is Kind.FILE else None):
        return "the digest is not the new file's"
    if action in _CONTENT and after.kind is not Kind.FILE:
        return f"a {action} record is not a file's"
    if action == NEW and after.kind is Kind.FILE:
        return "a new record holds a file"
    if action == META and (before.kind != after.kind or before.link is not None
                           or after.digest != before.digest
                           or bool(after.sparse) != bool(before.sparse)
                           or not same_object(before, after)):
        return "a meta record changes more than metadata"
    return None


def _entry_record(e: Entry | None):
    return None if e is None else to_record(e)


def _entry(rec, path: bytes) -> Entry | None:
    if rec is None:
        return None
    e = from_record(rec)
    if e.path != path:
        raise ValueError(f"delta record for {path!r:.80} holds the entry of {e.path!r:.80}")
    return e


def check_delta(entries, delta) -> list[str]:
    """Problems where a delta record's new entry is not the manifest's (apply acts on the delta
    and records the manifest: at every record they must agree)."""
    bad = []
    for e, change in merge_join(entries, delta):
        if change is None:
            continue
        if (e is None) != (change.action == DELETE) or (e is not None and e != change.after):
            bad.append(f"{show_path(change.path) or '.'}: the delta's record does not match the "
                       "manifest")
    return bad


def check_applied(parent_entries, delta, entries, shown: int = 5) -> list[str]:
    """Problems where the parent's tree changed by the delta is not the diff's manifest (a
    manifest that differs from its parent at a path without a record would be restored by
    restore and never by apply), or a record's `before` is not the parent's entry."""
    bad = []
    for want, have in merge_join(_applied(parent_entries, delta, bad), entries):
        if want != have and len(bad) < shown:
            path = show_path((want or have).path) or "."
            bad.append(f"{path}: the parent's tree changed by the delta is not the manifest here")
    return bad


def _applied(parent_entries, delta, bad: list):
    """The parent's entries changed by the delta, in canonical order; and each `parent`
    record's source must be a file of the parent holding the record's content (apply takes it
    from there: a source of other content would fail half-way, blaming the target)."""
    sources: dict[bytes, set] = {}           # source path -> the digests records take from it
    for c in delta:
        if c.action == PARENT and c.after is not None:
            sources.setdefault(c.source, set()).add(c.after.digest)
    removed = None                  # b"folder/": the parent's subtree a record removes
    for p, c in merge_join(parent_entries, delta):
        path = (p or c).path
        wanted = sources.pop(path, None) if p is not None else None
        if wanted is not None and not (p.kind is Kind.FILE and wanted == {p.digest}):
            bad.append(f"{show_path(path) or '.'}: a record takes content from it that the "
                       "parent's entry there does not hold")
        if removed is not None and not path.startswith(removed):
            removed = None
        if c is None:
            if removed is None:
                yield p
            continue
        if removed is None and c.before != p:
            bad.append(f"{show_path(path) or '.'}: the delta's parent record is not the parent's")
        if (c.action == DELETE or c.replaces) and p is not None and p.kind is Kind.DIR:
            removed = path + b"/"
        if c.after is not None:
            yield c.after
    for path in sources:
        bad.append(f"{show_path(path) or '.'}: a record takes content from it, which the parent "
                   "lacks")
