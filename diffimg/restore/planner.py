"""Decide, before anything is written, every action that makes a target equal to a tree.

Two ways in, one Plan out:
- plan_restore() merge-joins a scan of the target with the final manifest, in one pass: it
  classifies each path, gives every folder whose content changes its metadata back at the end,
  and finds each written file's content (in the target itself first, then in the newest layer).
- plan_delta() turns a diff's delta records into the plan that changes its parent tree, reading
  nothing but the records.
A bad manifest or a content no layer holds is refused here, before the target is touched.
"""

import dataclasses
from dataclasses import dataclass, field

from ..entry import Entry, Kind, path_key, same_meta
from ..errors import ImageError, Refused, show_path
from ..image.chain import BaseContents, Stored
from ..system import spill
from ..system.safefs import split
from ..system.spill import SpillList
from ..tree.delta import COPY, DELETE, LINK, META, NEW, STORE
from ..tree.merge import merge_join_pruned
from .writer import From


@dataclass(slots=True)
class Source:
    origin: From
    path: bytes | None = None     # TARGET: its path in the target; LAYER: in the container
    layer: int | None = None      # LAYER: the layer's number in the chain (0: the first)


@dataclass(slots=True)
class Write:
    """A file to write, and where its content comes from (None until sources are assigned)."""
    entry: Entry
    source: Source | None = None


@dataclass
class Plan:
    deletes: list = field(default_factory=list)      # topmost target paths to remove
    dirs: list = field(default_factory=list)         # folders to make (canonical order)
    writes: list = field(default_factory=list)       # Write: files to write
    specials: list = field(default_factory=list)     # symlinks, devices, FIFOs, sockets to make
    links: list = field(default_factory=list)        # later hardlink members to (re)link
    metas: list = field(default_factory=list)        # existing non-folders with other metadata
    dir_metas: list = field(default_factory=list)    # folders (new or not) to give their metadata
    rescues: dict = field(default_factory=dict)      # digest -> target path going away, kept aside
    kept: list = field(default_factory=list)         # target paths left as they are (--keep)
    unchanged: int = 0
    times_only: int = 0       # unchanged folders in dir_metas only to get their times set back
    # per final entry, in order: its content is the target's, taken on size and mtime alone
    unverified: bytearray = field(default_factory=bytearray)
    unverified_writes: set = field(default_factory=set)   # writes of target content so taken
    renewed: set = field(default_factory=set)    # plan_delta: meta records given a new inode
    stream_layers: dict = field(default_factory=dict)   # digest -> layer storing a large stream
    no_replace: bool = False     # extract: never give a name that appeared meanwhile

    def needs(self) -> int:
        """Bytes the writes take beyond what they move: content copied from the images (a
        sparse file counted as nothing: its holes take no room)."""
        return sum(w.entry.size for w in self.writes
                   if w.source.origin is From.LAYER and not w.entry.sparse)

    def counts(self) -> dict:
        written = from_target = from_images = 0
        for w in self.writes:               # once: a spilled list is read back from disk
            written += w.entry.size
            origin = w.source.origin
            from_target += origin is From.TARGET or origin is From.RESCUE
            from_images += origin is From.LAYER
        return {"deleted": len(self.deletes), "folders_made": len(self.dirs),
                "files_written": len(self.writes), "bytes_written": written,
                "from_target": from_target, "from_images": from_images,
                "specials_made": len(self.specials), "hardlinks": len(self.links),
                "metadata_only": len(self.metas) + len(self.dir_metas) - len(self.dirs) - self.times_only,
                "unchanged": self.unchanged, "kept": len(self.kept)}

    def changes_nothing(self) -> bool:
        return not (self.deletes or self.dirs or self.writes or self.specials or self.links
                    or self.metas or self.dir_metas)

    def layers_read(self) -> set[int]:
        """The layers whose containers the writes read (large streams too)."""
        return {w.source.layer for w in self.writes if w.source.origin is From.LAYER} | set(
            self.stream_layers.values())


def plan_restore(target_entries, final_entries, index, kept=None, holes_seen: bool = True) -> Plan:
    """The plan that makes the target (a scan of it) equal to the final entries; index: where
    the chain stores each content (a ChainIndex, or any mapping of digest to chain.Stored). kept
    (keep.Kept): target paths left as they are, which the scan left out; the folders holding
    them stay even where the chain lacks them (Refused where the chain has another kind there).
    holes_seen False: the target's scan cannot see a file's holes (ntfs-3g's mount has no
    SEEK_HOLE), so a file of the right content is not written again for its holes.
    The plan's long lists are SpillLists: its memory does not grow with the tree."""
    p = Plan(dirs=spill.entries(), specials=spill.entries(), links=spill.entries(),
             metas=spill.entries())
    target_files = SpillList()            # (digest, path, taken unverified) of each target file
    going: set[bytes] = set()             # target paths removed (with subtrees) or overwritten
    final_dirs: dict[bytes, Entry] = {}   # every folder of the final tree
    writes = spill.entries()              # the final files to write, sources not yet known
    classify = _PlanClassifier(p, going, writes, holes_seen)
    stays = kept.holds if kept else None
    # every target file can give its content, also one below a folder that is removed
    for t, f in merge_join_pruned(_noting_files(target_entries, target_files), final_entries,
                                  stays):
        if f is not None:
            # the target's content kept here was taken on size and mtime alone, unchecked
            p.unverified.append(t is not None and t.kind is Kind.FILE and t.ino is None)
        if stays is not None:
            if kept.covers((t or f).path):
                continue                  # the chain's entry at (or below) a kept path
            if t is not None and stays(t.path) and (f is None or f.kind is not Kind.DIR):
                if f is None:
                    continue              # a folder the chain lacks, left for what it holds
                raise Refused(f"the chain has a {f.kind.name.lower()} at {show_path(f.path)}, "
                              "where the target has a folder holding kept paths; nothing was "
                              "changed")
            if f is not None and f.link is not None and kept.covers(f.link):
                f = dataclasses.replace(f, link=None)   # never linked to a kept file: a copy
        if f is not None and f.kind is Kind.DIR:
            final_dirs[f.path] = f
        classify(t, f)
    p.kept = _in_order(kept)
    _restore_folder_metas(p, final_dirs, writes)
    in_target, unverified_content = _target_contents(target_files, writes)
    target_files.close()
    p.writes = _assign_sources(p, writes, in_target, going, index)
    writes.close()
    # a write from the target's own content carries it over unread when it takes its inode
    p.unverified_writes = {w.entry.path for w in p.writes if w.entry.digest in unverified_content
                           and w.source.origin in (From.TARGET, From.RESCUE)}
    return p


def _noting_files(entries, files: SpillList):
    """Pass entries through, noting each file with a content: (digest, path, whether its
    content was taken on size and mtime alone)."""
    for e in entries:
        if e.kind is Kind.FILE and e.digest is not None:
            files.append((e.digest, e.path, e.ino is None))
        yield e


def _target_contents(target_files: SpillList, writes: SpillList):
    """(digest -> the first target path holding it, the digests of those taken on size and
    mtime alone), for the contents the writes need (only those: a target of a million files
    would give a map of them all)."""
    in_target: dict[bytes, bytes] = {}
    unverified: set[bytes] = set()
    if not target_files:
        return in_target, unverified
    needed = {f.digest for f in writes if f.size}
    for digest, path, taken_unverified in target_files:
        if digest in needed and digest not in in_target:
            in_target[digest] = path
            if taken_unverified:
                unverified.add(digest)
    return in_target, unverified


def _shared(t: Entry) -> bool:
    """The target's inode has other links (in the tree or outside it): changing its metadata in
    place would change theirs, so it is replaced by a new inode instead."""
    return t.nlink is not None and t.nlink > 1


class _PlanClassifier:
    """Sorts each (target entry, final entry) pair into the plan's lists."""

    def __init__(self, p: Plan, going: set[bytes], writes: SpillList, holes_seen: bool = True):
        self.p = p
        self.holes_seen = holes_seen
        self.going = going
        self.writes = writes                 # final files to write (plan_restore: no sources)
        # final paths whose inode will be new, where the target's has other links: only there
        # can a later member of the same group (t.link == f.link) find its group changed
        self.rewritten: set[bytes] = set()
        self.linked_here = False             # the current target entry has other links

    def __call__(self, t: Entry | None, f: Entry | None):
        p = self.p
        self.linked_here = t is not None and t.nlink != 1
        if f is None or (t is not None and t.kind != f.kind):
            p.deletes.append(t.path)
            self.going.add(t.path)
            if f is None:
                return
            t = None
        if t is None:
            self._create(f)
        elif f.kind is Kind.DIR:
            self._count(same_meta(t, f), p.dir_metas, f)
        elif f.link is not None:
            if t.link == f.link and f.link not in self.rewritten and same_meta(t, f):
                p.unchanged += 1
            else:
                p.links.append(f)
        elif f.kind is Kind.FILE:
            same = same_meta(t, f)
            if t.digest == f.digest and t.size == f.size and t.link is None \
                    and (bool(t.sparse) == bool(f.sparse) or not self.holes_seen) \
                    and (same or not _shared(t)):
                self._count(same, p.metas, f)
            else:
                self._write(f)              # (a shared inode gets its new metadata on a copy)
                self.going.add(t.path)
        elif t.target != f.target or t.rdev != f.rdev or t.link is not None \
                or (not same_meta(t, f) and (_shared(t) or f.kind is Kind.SYMLINK)):
            self._special(f)         # (a symlink's attributes are set only on one made anew)
        else:
            self._count(same_meta(t, f), p.metas, f)

    def _count(self, same: bool, metas: list, f: Entry):
        if same:
            self.p.unchanged += 1
        else:
            metas.append(f)

    def _create(self, f: Entry):
        if f.kind is Kind.DIR:
            self.p.dirs.append(f)
            self.p.dir_metas.append(f)
        elif f.link is not None:
            self.p.links.append(f)
        elif f.kind is Kind.FILE:
            self._write(f)
        else:
            self._special(f)

    def _write(self, f: Entry):
        self.writes.append(f)
        if self.linked_here:
            self.rewritten.add(f.path)

    def _special(self, f: Entry):
        self.p.specials.append(f)
        if self.linked_here:
            self.rewritten.add(f.path)


def _restore_folder_metas(p: Plan, final_dirs: dict[bytes, Entry], writes):
    """Every folder whose content the plan changes gets its metadata back at the end: creating,
    renaming or deleting inside a folder changes its mtime. writes: the files written."""
    touched = {split(path)[0] for path in p.deletes}
    for group in (p.dirs, p.specials, p.links, writes):
        touched.update(split(e.path)[0] for e in group if e.path)
    if touched:
        touched.add(b"")   # the root: the rescue folder may come and go there
    planned = {e.path for e in p.dir_metas}
    times_back = [final_dirs[path] for path in touched - planned if path in final_dirs]
    p.dir_metas += times_back
    p.dir_metas.sort(key=lambda e: path_key(e.path))
    p.times_only = len(times_back)


def _writes() -> SpillList:
    """A SpillList of Writes."""
    def encode(w: Write) -> tuple:
        s = w.source
        return spill.entry_fields(w.entry), s and (s.origin.value, s.path, s.layer)

    def decode(fields: tuple) -> Write:
        s = fields[1]
        return Write(spill.entry_of(fields[0]), s and Source(From(s[0]), s[1], s[2]))
    return SpillList(encode, decode)


def _assign_sources(p: Plan, writes: SpillList, in_target: dict, going: set[bytes],
                    index) -> SpillList:
    """Each write with its content's source: nothing for an empty file, else the target's own
    copy (kept aside first when its path goes away), else the newest layer storing it."""
    base = BaseContents(getattr(index, "base", None))
    out = _writes()
    missing: set[bytes] = set()          # contents found only by a second look at the base
    for f in writes:
        if not f.size:
            source = Source(From.EMPTY)
        elif f.digest in in_target:
            source = _from_target(p, in_target[f.digest], f, going)
        else:
            source = _in_layer(index.get(f.digest) or base.at_path(f))
            if source is None:
                missing.add(f.digest)
        out.append(Write(f, source))
    if not missing:
        return out
    found = base.find(missing)
    placed = _writes()
    for write in out:
        if write.source is None:
            write.source = _in_layer(found.get(write.entry.digest))
            if write.source is None:
                raise ImageError("no image of the chain holds the content of "
                                 f"{show_path(write.entry.path)}")
        placed.append(write)
    out.close()
    return placed


def _in_layer(stored: Stored | None) -> Source | None:
    return None if stored is None else Source(From.LAYER, stored.path, stored.layer)


def _from_target(p: Plan, path: bytes, f: Entry, going: set[bytes]) -> Source:
    """Content at path in the target: read in place, or kept aside when path is going away
    (or is the very path being rewritten)."""
    if going_away(path, going) or path == f.path:
        p.rescues.setdefault(f.digest, path)
        return Source(From.RESCUE)
    return Source(From.TARGET, path)


def _in_order(kept) -> list:
    return sorted(kept.paths, key=path_key) if kept else []


def going_away(path: bytes, going: set[bytes]) -> bool:
    """path, or a folder above it, is in going: removed or replaced."""
    while path:
        if path in going:
            return True
        path = path.rpartition(b"/")[0]
    return False


def plan_delta(changes, entries: int, shared=frozenset(), kept=None) -> Plan:
    """The plan that turns the parent tree into the diff's tree. entries: the diff's tree size.
    shared: paths of meta records whose target inode has other links: they get a new inode
    (a file its own content, copied) instead of metadata changed in place, as symlinks do.
    kept: the target paths left as they are (the changes hold none of them)."""
    p = Plan(kept=_in_order(kept))
    going: set[bytes] = set()          # paths whose entry is removed or replaced (with subtree)
    for c in changes:
        if c.action == DELETE or c.replaces:
            p.deletes.append(c.path)
        if c.action == DELETE:
            going.add(c.path)
            continue
        f = c.after
        if c.action == META and (c.path in shared or f.kind is Kind.SYMLINK):
            going.add(c.path)
            p.renewed.add(c.path)
            if f.kind is Kind.FILE:
                source = Source(From.TARGET, c.path) if f.size else Source(From.EMPTY)
                p.writes.append(Write(f, source))
            else:
                p.specials.append(f)
            continue
        if c.action == META:
            (p.dir_metas if f.kind is Kind.DIR else p.metas).append(f)
            continue
        going.add(c.path)
        if f.kind is Kind.DIR:
            p.dirs.append(f)
            p.dir_metas.append(f)
        elif c.action == NEW:
            p.specials.append(f)
        elif c.action == LINK:
            p.links.append(f)
        else:
            p.writes.append(Write(f, _delta_source(c)))
    for write in p.writes:
        if write.source.origin is From.TARGET:
            write.source = _from_target(p, write.source.path, write.entry, going)
    # a folder's record that only sets its times back is no change of its own
    p.unchanged = entries - sum(1 for c in changes
                                if c.action != DELETE and not (c.action == META and c.before == c.after))
    return p


def _delta_source(c) -> Source:
    """Where a delta record's file content is: the diff's own container (layer 0 of a chain of
    one), or the parent tree in the target."""
    if not c.after.size:
        return Source(From.EMPTY)
    if c.action == STORE:
        return Source(From.LAYER, c.path, 0)
    if c.action == COPY:
        return Source(From.LAYER, c.source, 0)
    return Source(From.TARGET, c.source)
