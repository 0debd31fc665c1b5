"""Unit tests of the planner (planner.py) on in-memory entries and delta records: no tree, no root."""

import pytest
from entries import T, d, digest, f, sym, tree

from diffimg.entry import Hint, Kind
from diffimg.errors import ImageError
from diffimg.image.chain import Stored
from diffimg.restore.planner import From, Source, going_away, plan_delta, plan_restore
from diffimg.tree import differ
from diffimg.tree.delta import COPY, DELETE, LINK, META, NEW, PARENT, STORE, Change


def layer(content: bytes, path: bytes, number: int = 0) -> dict:
    return {digest(content): Stored(path, number)}


def paths(entries):
    return [e.path for e in entries]


def sources(plan):
    return {w.entry.path: w.source for w in plan.writes}


# plan_restore -----------------------------------------------------------------------------

def test_identical_trees_leave_every_entry_unchanged():
    t = tree(d(b"a"), f(b"a/x", b"1"), f(b"a/h", b"1", link=b"a/x"), sym(b"l", b"a"))
    p = plan_restore(t, tree(d(b"a"), f(b"a/x", b"1"), f(b"a/h", b"1", link=b"a/x"), sym(b"l", b"a")), {})
    assert p.unchanged == 5
    assert [list(x) for x in (p.deletes, p.dirs, p.writes, p.specials, p.links, p.metas)] == [[]] * 6
    assert p.rescues == {}
    assert p.dir_metas == []                  # nothing to do, not even the root's times


def test_extra_paths_are_deleted_topmost_only():
    target = tree(d(b"extra"), d(b"extra/sub"), f(b"extra/sub/x", b"1"), f(b"keep", b"k"), f(b"stray", b"s"))
    p = plan_restore(target, tree(f(b"keep", b"k")), {})
    assert p.deletes == [b"extra", b"stray"]
    assert p.unchanged == 2


def test_kind_change_deletes_then_creates():
    target = tree(f(b"a", b"file"), d(b"b"), f(b"b/in", b"x"), sym(b"c", b"t"))
    final = tree(d(b"a"), sym(b"b", b"t"), f(b"c", b"file"))
    p = plan_restore(target, final, {})
    assert p.deletes == [b"a", b"b", b"c"]
    assert paths(p.dirs) == [b"a"] and paths(p.specials) == [b"b"]
    # the new file c takes the content of a, whose path goes away
    assert sources(p) == {b"c": Source(From.RESCUE)} and p.rescues == {digest(b"file"): b"a"}


def test_metadata_only_changes_are_metas():
    target = tree(d(b"a"), f(b"a/x", b"1"), sym(b"l", b"t"))
    final = tree(d(b"a", mode=0o700), f(b"a/x", b"1", mode=0o600), sym(b"l", b"t", mtime=T + 5))
    p = plan_restore(target, final, {})
    assert paths(p.metas) == [b"a/x"] and list(p.metas)[0].mode == 0o600
    # a symlink's own attributes are set only on one made anew (never by name on an old one)
    assert paths(p.specials) == [b"l"] and list(p.specials)[0].mtime_ns == T + 5
    assert paths(p.dir_metas) == [b"", b"a"] and p.dir_metas[1].mode == 0o700
    assert (list(p.writes), p.deletes) == ([], [])
    assert p.unchanged == 1                   # the root


def test_symlink_retarget_is_made_again():
    p = plan_restore(tree(sym(b"l", b"old")), tree(sym(b"l", b"new")), {})
    assert [(e.path, e.target) for e in p.specials] == [(b"l", b"new")]
    assert p.deletes == []                    # same kind: renamed over it


def test_content_found_in_the_target_is_read_in_place():
    target = tree(f(b"a", b"shared"), f(b"b", b"old"))
    final = tree(f(b"a", b"shared"), f(b"b", b"shared"), f(b"c", b"shared"))
    p = plan_restore(target, final, {})
    assert sources(p) == {b"b": Source(From.TARGET, b"a"), b"c": Source(From.TARGET, b"a")}
    assert p.rescues == {}


def test_content_whose_path_goes_away_is_rescued():
    target = tree(d(b"old"), f(b"old/doc", b"moved"), f(b"top", b"renamed"))
    final = tree(d(b"new"), f(b"new/doc", b"moved"), f(b"top2", b"renamed"))
    p = plan_restore(target, final, {})
    assert sources(p) == {b"new/doc": Source(From.RESCUE), b"top2": Source(From.RESCUE)}
    assert p.rescues == {digest(b"moved"): b"old/doc", digest(b"renamed"): b"top"}
    assert p.deletes == [b"old", b"top"]


def test_content_of_the_path_being_rewritten_is_rescued():
    """Same bytes, but the file must be written again (other holes, or it leaves a hardlink
    group): its own path is the source, which the write replaces."""
    target = tree(f(b"a", bytes(9000)), f(b"g", b"grp"), f(b"h", b"grp", link=b"g"))
    final = tree(f(b"a", bytes(9000), sparse=True), f(b"g", b"grp"), f(b"h", b"grp"))
    p = plan_restore(target, final, {})
    assert paths(w.entry for w in p.writes) == [b"a", b"h"]
    assert sources(p) == {b"a": Source(From.RESCUE), b"h": Source(From.TARGET, b"g")}
    assert p.rescues == {digest(bytes(9000)): b"a"}


def test_content_only_in_a_layer_comes_from_the_index():
    index = {**layer(b"new", b"stored/new", 0), **layer(b"newer", b"n", 2)}
    p = plan_restore(tree(), tree(f(b"x", b"new"), f(b"y", b"newer")), index)
    assert sources(p) == {b"x": Source(From.LAYER, b"stored/new", 0), b"y": Source(From.LAYER, b"n", 2)}
    assert p.layers_read() == {0, 2}


class _FullImage:
    """What the planner reads of a full image: its path and its files' hints."""
    path = b"base.img"

    def __init__(self, entries):
        self._entries = entries

    def file_hints(self, leaders_only=False):
        return iter([Hint(e.path, e.size, e.mtime_ns, e.digest, e.sparse) for e in self._entries
                     if e.kind is Kind.FILE and not (leaders_only and e.link is not None)])


def test_a_plan_of_many_writes_is_spilled_and_finds_the_base_contents_by_path(monkeypatch):
    """More writes than a SpillList keeps in memory (BATCH, made small here): each file of the
    full image is found at its own path in one merge, a moved one by a second look, a later
    hardlink member's path never (the container lacks it), a diff's stored copy first."""
    from diffimg.image.chain import ChainIndex
    from diffimg.system import spill
    monkeypatch.setattr(spill, "BATCH", 16)
    files = [f(b"d/f%03d" % i, b"content %d" % i) for i in range(100)]
    base = tree(d(b"d"), *files, f(b"d/g", b"content 0", link=b"d/f000"),
                f(b"old/place", b"moved"), d(b"old"))
    final = tree(d(b"d"), *files, f(b"new/place", b"moved"), d(b"new"), f(b"d/g", b"content 0"),
                 f(b"stored", b"in a diff"))
    index = ChainIndex(_FullImage(base))
    index.stored.update(layer(b"in a diff", b"stored", 1))
    index.stored.update(layer(b"content 7", b"copy/of/7", 1))
    p = plan_restore(tree(), final, index)
    assert type(p.writes) is spill.SpillList and p.writes._batches      # it did spill
    got = sources(p)
    assert len(got) == 103
    assert got[b"d/f003"] == Source(From.LAYER, b"d/f003", 0)
    assert got[b"d/f007"] == Source(From.LAYER, b"copy/of/7", 1)        # the newest layer first
    assert got[b"new/place"] == Source(From.LAYER, b"old/place", 0)     # moved: second look
    assert got[b"stored"] == Source(From.LAYER, b"stored", 1)
    # d/g is a later hardlink member in the image: the container holds it only at d/f000
    assert got[b"d/g"] == Source(From.LAYER, b"d/f000", 0)


def test_target_content_is_preferred_to_a_layer():
    p = plan_restore(tree(f(b"a", b"c")), tree(f(b"a", b"c"), f(b"b", b"c")), layer(b"c", b"a", 0))
    assert sources(p) == {b"b": Source(From.TARGET, b"a")}
    assert p.layers_read() == set()


def test_empty_file_needs_no_source():
    p = plan_restore(tree(), tree(f(b"e", b"")), {})
    assert sources(p) == {b"e": Source(From.EMPTY)}


def test_content_nobody_holds_is_refused():
    with pytest.raises(ImageError, match="no image of the chain holds the content of"):
        plan_restore(tree(f(b"a", b"other")), tree(f(b"a", b"lost")), layer(b"unrelated", b"u"))


def test_hardlinks_are_kept_or_relinked():
    target = tree(f(b"a", b"x"), f(b"b", b"x", link=b"a"), f(b"c", b"y"), f(b"d", b"y", link=b"c"))
    final = tree(f(b"a", b"x"), f(b"b", b"x", link=b"a"), f(b"c", b"z"), f(b"d", b"z", link=b"c"))
    p = plan_restore(target, final, layer(b"z", b"c"))
    assert paths(p.links) == [b"d"]           # its first member is written again
    assert paths(w.entry for w in p.writes) == [b"c"]
    assert p.unchanged == 3                   # the root, a, b


def test_folders_whose_content_changes_get_their_metadata_back_in_canonical_order():
    target = tree(d(b"a"), d(b"a/b"), f(b"a/b/x", b"1"), d(b"c"), f(b"c/y", b"2"), d(b"z"), f(b"z/q", b"q"))
    final = tree(d(b"a"), d(b"a/b"), f(b"a/b/x", b"1"), f(b"a/b/new", b"1"), d(b"c"), f(b"c/y", b"2"),
                 d(b"n"), d(b"n/m"), d(b"z"), f(b"z/q", b"q", mode=0o600))
    p = plan_restore(target, final, {})
    # a/b gains a file, the root gains n, n gains n/m; c and z (metadata only inside) are untouched
    assert paths(p.dir_metas) == [b"", b"a/b", b"n", b"n/m"]
    assert paths(p.dirs) == [b"n", b"n/m"]
    assert p.dir_metas[1] == d(b"a/b")


def test_counts_of_a_plan():
    target = tree(f(b"gone", b"g"), f(b"meta", b"m"), f(b"same", b"s"), f(b"moved", b"mv"))
    final = tree(d(b"dir"), f(b"dir/moved", b"mv"), f(b"meta", b"m", mode=0o600), f(b"same", b"s"),
                 f(b"new", b"1234567"), f(b"h", b"1234567", link=b"new"), sym(b"l", b"same"))
    final[0] = d(b"", mode=0o700)             # the root's own metadata changes too
    p = plan_restore(target, final, layer(b"1234567", b"new", 1))
    assert p.counts() == {"deleted": 2, "folders_made": 1, "files_written": 2, "bytes_written": 9,
                          "from_target": 1, "from_images": 1, "specials_made": 1, "hardlinks": 1,
                          "metadata_only": 2, "unchanged": 1, "kept": 0}
    assert p.layers_read() == {1}


def test_counts_of_an_identical_tree_are_all_unchanged():
    t = tree(d(b"a"), f(b"a/x", b"1"))
    p = plan_restore(t, tree(d(b"a"), f(b"a/x", b"1")), {})
    assert p.counts()["unchanged"] == 3 and p.counts()["metadata_only"] == 0
    assert not p.dir_metas                    # nothing to do, not even the root's times


def test_a_folder_whose_times_are_only_set_back_counts_as_unchanged():
    target = tree(d(b"a"), f(b"a/x", b"1"))
    p = plan_restore(target, tree(d(b"a"), f(b"a/x", b"1"), f(b"a/y", b"2")), layer(b"2", b"a/y", 0))
    assert paths(p.dir_metas) == [b"", b"a"]  # times set back after a/y is written
    assert p.counts()["metadata_only"] == 0 and p.counts()["unchanged"] == 3


# plan_delta -------------------------------------------------------------------------------

def delta(parent, new):
    return differ.diff_trees(parent, new, [Hint(e.path, e.size, e.mtime_ns, e.digest, e.sparse)
                                           for e in parent if e.kind is Kind.FILE])


def test_plan_delta_of_a_real_diff():
    parent = tree(d(b"gone"), f(b"gone/doc", b"moved"), f(b"kept", b"k"), f(b"x", b"was a file"),
                  f(b"m", b"m"), sym(b"l", b"t"))
    new = tree(f(b"kept", b"k"), d(b"x"), f(b"x/doc", b"moved"), f(b"x/one", b"new"),
               f(b"x/two", b"new"), f(b"x/copy", b"k"), f(b"m", b"m", mode=0o600), sym(b"l", b"u"),
               f(b"x/h", b"new", link=b"x/one"))
    changes = delta(parent, new)
    p = plan_delta(changes, len(new))
    assert p.deletes == [b"gone", b"x"]
    assert paths(p.dirs) == [b"x"] and paths(p.specials) == [b"l"] and paths(p.links) == [b"x/h"]
    assert paths(p.metas) == [b"m"]
    assert paths(p.dir_metas) == [b"", b"x"]
    assert sources(p) == {b"x/copy": Source(From.TARGET, b"kept"), b"x/doc": Source(From.RESCUE),
                          b"x/one": Source(From.LAYER, b"x/one", 0),
                          b"x/two": Source(From.LAYER, b"x/one", 0)}
    assert p.rescues == {digest(b"moved"): b"gone/doc"}
    # changed: x, its 5 entries, m, l; the root's record only sets its times back
    assert p.unchanged == len(new) - 8 == 2


def test_plan_delta_on_hand_made_records():
    kept, new_file = f(b"a/kept", b"k"), f(b"a/new", b"n")
    changes = [Change(b"", META, before=d(b""), after=d(b"")),
               Change(b"a", META, before=d(b"a"), after=d(b"a", mode=0o700)),
               Change(b"a/e", STORE, digest=digest(b""), after=f(b"a/e", b"")),
               Change(b"a/new", STORE, digest=new_file.digest, after=new_file),
               Change(b"a/same", PARENT, b"a/kept", digest=kept.digest, after=f(b"a/same", b"k")),
               Change(b"a/self", PARENT, b"a/self", digest=digest(b"s"),
                      before=f(b"a/self", b"s", link=b"a/kept"), after=f(b"a/self", b"s")),
               Change(b"b", NEW, replaces=True, before=f(b"b", b"file"), after=d(b"b")),
               Change(b"c", DELETE, before=f(b"c", b"c")),
               Change(b"d", COPY, b"a/new", digest=new_file.digest, after=f(b"d", b"n"))]
    p = plan_delta(changes, 10)
    assert p.deletes == [b"b", b"c"]
    assert paths(p.dir_metas) == [b"", b"a", b"b"] and paths(p.dirs) == [b"b"]
    assert sources(p) == {b"a/e": Source(From.EMPTY), b"a/new": Source(From.LAYER, b"a/new", 0),
                          b"a/same": Source(From.TARGET, b"a/kept"), b"a/self": Source(From.RESCUE),
                          b"d": Source(From.LAYER, b"a/new", 0)}
    assert p.rescues == {digest(b"s"): b"a/self"}
    assert p.unchanged == 10 - 7             # every record but the delete and the root's
    assert p.layers_read() == {0}


def test_plan_delta_rescues_a_source_below_a_replaced_folder():
    changes = [Change(b"f", PARENT, b"x/in", digest=digest(b"c"), after=f(b"f", b"c")),
               Change(b"x", STORE, replaces=True, digest=digest(b"x"), before=d(b"x"), after=f(b"x", b"x"))]
    p = plan_delta(changes, 3)
    assert p.deletes == [b"x"]
    assert sources(p)[b"f"] == Source(From.RESCUE) and p.rescues == {digest(b"c"): b"x/in"}


def test_plan_delta_with_no_records_changes_nothing():
    p = plan_delta([], 7)
    assert p.unchanged == 7 and p.counts()["files_written"] == 0 and p.deletes == [] and p.dir_metas == []


def test_plan_delta_link_and_new_records():
    changes = [Change(b"h", LINK, b"a", digest=digest(b"a"), after=f(b"h", b"a", link=b"a")),
               Change(b"s", NEW, after=sym(b"s", b"t"))]
    p = plan_delta(changes, 4)
    assert paths(p.links) == [b"h"] and paths(p.specials) == [b"s"] and p.writes == []
    assert p.unchanged == 2


# going_away -------------------------------------------------------------------------------

def test_going_away_covers_the_path_and_its_subtree_only():
    going = {b"a/b", b"z"}
    assert going_away(b"a/b", going) and going_away(b"a/b/c/d", going) and going_away(b"z", going)
    assert not going_away(b"a", going)
    assert not going_away(b"a/bc", going) and not going_away(b"a/b-c", going)
    assert not going_away(b"zz/a", going)
    assert not going_away(b"", {b""})         # the root never goes away
