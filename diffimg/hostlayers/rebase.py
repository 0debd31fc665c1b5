"""rebase: carry a machine's own diff (a host layer) onto a new chain of the model's images.

Three trees: P, the tree the host diff was made on (a layer of the new chain); T, the host's
tree; Q, the new chain's tree. What the host changed (P against T) is read from the host diff's
delta: each record's before and after, and P's manifest only below folders the host removed
(the delta has no records there). Per path, in one merge with Q's manifest (canonical order):
- the host did not change it: Q's entry stands;
- the chain did not change it (Q = P), or both made the same change: T's entry;
- a folder both changed: field by field (mode, owner, group, each xattr); its mtime is the
  host's when the host changed it (what replaying the host's changes on Q gives);
- anything else is a conflict, and so is a result that is not a tree: an entry whose folder is
  gone or is no longer a folder, a hardlink whose group changed on the other side.
So a pass reads Q's manifest once, and memory grows with the host's change, not with the tree.
Conflicts are refused, all listed; with prefer, the preferred side's entry is taken at each
conflicting path (and at the folders or first hardlink member it needs) and the merge runs
again, until the result is a tree.

The rebased diff is then made against Q by the differ, as any diff: it stores only content that
neither Q nor another of its files has, read from the host diff's container or, for content the
host's tree took from P, from the chain's containers; nothing is scanned.
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ..entry import Entry, Kind, inode_fields, path_key
from ..errors import ChainError, Conflicts, ImageError, show_path
from ..image.chain import index_chain, open_chain, open_image
from ..image.format import ImageKind
from ..make.packer import PackOptions, diff_of_entries
from ..progress import Phase
from ..scan.hashing import Beneath
from ..tree.delta import check_applied, stored_contents
from ..tree.merge import merge_join
from ..windows import streams

HOST, CHAIN = "host", "chain"
MAX_PASSES = 64         # a pass settles a conflict with the folders above it; few are needed


@dataclass(slots=True)
class Conflict:
    path: bytes
    why: str
    needs: list                 # the paths whose entry, taken from one side, settles it
    shown: bool = True          # False: a folder conflict above it says it all


@dataclass
class Rebased:
    info: dict | None           # the image made; None when nothing of the host's is left
    decided: list               # (path, why): the conflicts --prefer decided


def rebase(host_diff, chain, out, opts: PackOptions, prefer: str | None = None) -> Rebased:
    """Make at out the host diff carried onto chain (base, diff...): a diff whose parent is
    chain's tree. Conflicts when the two sides changed a path differently and prefer (HOST or
    CHAIN) is None; then nothing is made."""
    host = open_image(host_diff)
    if host.kind != ImageKind.DIFF:
        raise ChainError(f"{show_path(host.path)} is a full image; a host layer is a diff")
    layers = open_chain(chain)
    parent = next((layer for layer in layers if layer.tree_id == host.parent_id), None)
    if parent is None:
        raise ChainError(f"{show_path(host.path)} was made on tree {host.parent_id.hex()}, which "
                         "no layer given makes; give the chain from its base, with the layer it "
                         "was made on (e.g. base.img d1.img d2.img)")
    new = layers[-1]

    delta = host.delta()
    # what the host changed is read from its records: they must make its manifest's tree from
    # its parent's, or a change they leave out would be dropped without a word
    bad = check_applied(parent.entries(), delta, host.entries())
    if bad:
        raise ImageError(f"{show_path(host.path)}: its delta does not make its manifest's tree "
                         f"from its parent's ({bad[0]}); nothing was made")

    def merged(overrides, conflicts):
        taken = {path for path, side in overrides.items() if side == HOST}
        return _merged(host_sides(delta, parent.entries, taken), new.entries(), overrides,
                       conflicts)

    if opts.on_phase is not None:
        opts.on_phase(Phase.CLASSIFYING, "three-way merge")
    overrides, decided = settle(merged, prefer)
    info = diff_of_entries(merged(overrides, []), new, out, opts, source=host.info["source"],
                           os_info=new.info.get("os", {}),
                           contents=lambda digests: _contents(host, delta, layers, digests))
    return Rebased(info, sorted(decided.items()))


def settle(merged, prefer: str | None) -> tuple[dict[bytes, str], dict[bytes, str]]:
    """Run merged(overrides, conflicts) (a pass of _merged) until no conflict is left, taking
    prefer's side at each conflict's paths; (the overrides, {path: why} of what was decided).
    Conflicts when there is a conflict and prefer is None, or when they do not settle."""
    overrides: dict[bytes, str] = {}
    decided: dict[bytes, str] = {}
    for _ in range(MAX_PASSES):
        conflicts: list[Conflict] = []
        for _ in merged(overrides, conflicts):
            pass
        if not conflicts:
            return overrides, decided
        if prefer is None:
            shown = [(c.path, c.why) for c in conflicts if c.shown]
            raise Conflicts(f"{len(shown):,} paths changed both on the host and in the chain, "
                            f"e.g. {show_path(shown[0][0]) or '.'} ({shown[0][1]}); nothing was "
                            "made: choose a side with --prefer host or --prefer chain",
                            conflicts=shown)
        for c in conflicts:
            if c.shown:
                decided.setdefault(c.path, c.why)
            for path in c.needs:
                overrides[path] = prefer
    raise Conflicts(f"the conflicts did not settle in {MAX_PASSES} passes; nothing was made",
                    conflicts=list(decided.items()))


def three_way(p: Entry | None, t: Entry | None, q: Entry | None) -> tuple[Entry | None, str | None]:
    """The result at one path from the parent's entry p, the host's t and the chain's q (None:
    absent), and None, or (None, why) for a conflict."""
    if t == p:
        return q, None
    if q in (p, t):
        return t, None
    if p is not None and all(e is not None and e.kind is Kind.DIR for e in (p, t, q)):
        return _merged_folder(p, t, q)
    if t is None:
        return None, "the host removed it, the chain changed it"
    if q is None:
        return None, "the chain removed it, the host changed it"
    if p is None:
        return None, "both added it, differently"
    if t.kind != p.kind or q.kind != p.kind:
        return None, "both changed it, one into another kind"
    return None, "both changed it"


def _pick(p, t, q):
    """Three-way of one value: (value, False), or (None, True) when both changed it apart."""
    if t == p:
        return q, False
    if q in (p, t):
        return t, False
    return None, True


def _merged_folder(p: Entry, t: Entry, q: Entry) -> tuple[Entry | None, str | None]:
    values = {}
    for name, words in (("mode", "mode"), ("uid", "owner"), ("gid", "group")):
        values[name], clash = _pick(getattr(p, name), getattr(t, name), getattr(q, name))
        if clash:
            return None, f"both changed its {words}"
    px, tx, qx = p.xattrs or {}, t.xattrs or {}, q.xattrs or {}
    xattrs = {}
    for key in sorted(px.keys() | tx.keys() | qx.keys()):
        value, clash = _pick(px.get(key), tx.get(key), qx.get(key))
        if clash:
            return None, f"both changed its xattr {show_path(key)}"
        if value is not None:
            xattrs[key] = value
    # a folder's mtime follows its entries: no conflict, the host's change replayed on Q's
    mtime = t.mtime_ns if t.mtime_ns != p.mtime_ns else q.mtime_ns
    return Entry(p.path, Kind.DIR, values["mode"], values["uid"], values["gid"], mtime,
                 xattrs=xattrs or None), None


class HostChange(NamedTuple):
    """A path the host changed: the parent's entry p and the host's t (None: absent)."""
    path: bytes
    p: Entry | None
    t: Entry | None


def host_sides(delta, parent_entries, unchanged=frozenset()):
    """The host's changes (HostChange), in canonical order, from its delta: each record's before and after
    (a folder record that changes nothing is no change); below each folder the host removed or
    replaced by another kind (the delta has no records there), the parent's entries, absent on
    the host; and at the paths unchanged (where --prefer host takes the host's entry of a path
    it did not change), the parent's entry on both sides. parent_entries() is read only for the
    last two, and only as far as needed."""
    removed = [c.path + b"/" for c in delta if c.before is not None and c.before.kind is Kind.DIR
               and (c.after is None or c.after.kind is not Kind.DIR)]
    extra = _parent_sides(parent_entries, removed, unchanged) if removed or unchanged else ()
    for c, side in merge_join(delta, extra):
        if c is None:
            yield side
        elif c.before != c.after:
            yield HostChange(c.path, c.before, c.after)
        elif side is not None:
            yield side


def _parent_sides(parent_entries, removed: list[bytes], paths) -> Iterator[HostChange]:
    """HostChanges from the parent's entries: absent on the host below the folders removed (b"folder/",
    canonical order), unchanged at paths."""
    last = [path_key(p) for p in paths]
    if removed:
        last.append(path_key(removed[-1][:-1]) + b"\x01")  # past every key below it
    stop = max(last)                    # a key past it is of neither
    wanted = iter(removed)
    prefix = next(wanted, None)
    for e in parent_entries():
        key = path_key(e.path)
        if key > stop:
            return
        while prefix is not None and key > path_key(prefix) and not e.path.startswith(prefix):
            prefix = next(wanted, None)
        if prefix is not None and e.path.startswith(prefix):
            yield HostChange(e.path, e, None)
        elif e.path in paths:
            yield HostChange(e.path, e, e)


def sides_of_trees(parent_entries, host_entries, unchanged=frozenset()):
    """The host's HostChanges from its parent's and its own full trees (what host_sides gives from a
    delta consistent with them)."""
    for p, t in merge_join(parent_entries, host_entries):
        if p != t or (p is not None and p.path in unchanged):
            yield HostChange((p or t).path, p, t)


def _merged(sides, chain, overrides: dict[bytes, str], conflicts: list):
    """The result tree's entries, in canonical order, from the host's HostChanges and the chain's
    entries (a path the host did not change is the chain's); each conflict is appended to
    conflicts (with .needs: the paths whose side settles it) and its path left out."""
    folders = [b""]         # b"path/" of the result's folders along the current path (root: b"")
    leaders: set[int] = set()   # hashes of (path, inode fields) of possible hardlink leaders
    dropped = None          # b"path/" of a conflict: the orphans below it are not shown

    def conflict(path: bytes, why: str, *needs: bytes, orphan: bool = False):
        nonlocal dropped
        below = dropped is not None and path.startswith(dropped)
        conflicts.append(Conflict(path, why, [path, *needs], shown=not (orphan and below)))
        if not below:
            dropped = path + b"/"

    for q, changed in merge_join(chain, sides):
        path = (q or changed).path
        p, t = (changed.p, changed.t) if changed is not None else (q, q)
        while path and not path.startswith(folders[-1]):
            folders.pop()
        side = overrides.get(path)
        if side is not None:
            e = t if side == HOST else q
        elif changed is None:               # the host did not change it: the chain's
            e = q
        else:
            e, why = three_way(p, t, q)
            if why is not None:
                conflict(path, why)
                if any(x is not None and x.kind is Kind.DIR for x in (t, q)):
                    folders.append(path + b"/" if path else b"")   # its entries are checked
                continue
        if dropped is not None and not path.startswith(dropped):
            dropped = None
        if e is None:
            continue
        if path:
            parent_path = path.rpartition(b"/")[0]
            if folders[-1] != (parent_path + b"/" if parent_path else b""):
                # the folders along the path that the result lacks (or holds as another kind)
                missing = [path[:i] for i in range(len(folders[-1]), len(path))
                           if path[i:i + 1] == b"/"]
                conflict(path, "its folder is gone, or is no longer a folder", *missing,
                         orphan=True)
                continue
            if e.link is not None and hash((e.link, inode_fields(e))) not in leaders:
                conflict(path, "a hardlink whose group changed on the other side", e.link)
                continue
        if e.link is None and e.kind is not Kind.DIR:
            leaders.add(hash((path, inode_fields(e))))
        if e.kind is Kind.DIR:
            folders.append(path + b"/" if path else b"")
        yield e


@contextlib.contextmanager
def _contents(host, delta, layers, digests: set[bytes]):
    """{digest: Beneath(container root, path)} of each of digests (files and large streams):
    in the host diff's container when it stores it, else in the newest layer of the chain
    storing it as a file or a large stream; the containers needed are mounted meanwhile
    (image.content)."""
    in_host = {digest: path for path, digest, *_ in stored_contents(delta)}
    wanted = digests - in_host.keys()
    chain_files = index_chain(layers).sources(wanted) if wanted else {}
    chain_streams = streams.layers_storing(layers, wanted - chain_files.keys())
    lacking = wanted - chain_files.keys() - chain_streams.keys()
    if lacking:
        raise ImageError(f"{len(lacking):,} contents are in neither {show_path(host.path)} nor "
                         f"the chain, e.g. {next(iter(lacking)).hex()}: an image is damaged")
    with contextlib.ExitStack() as mounted:
        roots: dict = {}

        def root(key, image) -> bytes:
            if key not in roots:
                roots[key] = os.fsencode(mounted.enter_context(image.content()))
            return roots[key]

        where = {}
        for digest in digests:
            if digest in in_host:
                where[digest] = Beneath(root(HOST, host), in_host[digest])
            elif digest in chain_files:
                source = chain_files[digest]
                where[digest] = Beneath(root(source.layer, layers[source.layer]), source.path)
            else:
                number = chain_streams[digest]
                where[digest] = Beneath(root(number, layers[number]), streams.store_path(digest))
        yield where
