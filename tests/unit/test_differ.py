"""Unit tests of the differ (differ.py) and the pruned merge-join (merge.py), on in-memory
entries: no tree, no root."""

import dataclasses

from entries import T, d, digest, f, fifo, hints, sym, tree

from diffimg.entry import path_key
from diffimg.tree import differ
from diffimg.tree.delta import COPY, DELETE, LINK, META, NEW, PARENT, STORE, Change
from diffimg.tree.merge import merge_join_pruned


def diff(parent, new):
    return differ.diff_trees(parent, new, hints(parent))


def actions(changes):
    return [(c.path, c.action) for c in changes]


# classify ---------------------------------------------------------------------------------

def test_classify_new_file_waits_for_a_source():
    n = f(b"a", b"new")
    c = differ.classify(None, n)
    assert (c.action, c.source, c.replaces, c.digest, c.before, c.after) == \
        (differ.PENDING, None, False, digest(b"new"), None, n)


def test_classify_content_change_waits_for_a_source():
    p, n = f(b"a", b"old"), f(b"a", b"new")
    c = differ.classify(p, n)
    assert (c.action, c.replaces, c.digest, c.before) == (differ.PENDING, False, digest(b"new"), p)


def test_classify_same_bytes_with_other_holes_is_rewritten():
    p, n = f(b"a", bytes(8192)), f(b"a", bytes(8192), sparse=True)
    assert differ.classify(p, n).action == differ.PENDING
    assert differ.classify(n, p).action == differ.PENDING


def test_classify_hardlink_member_is_link_to_its_first_member():
    n = f(b"b", b"x", link=b"a")
    c = differ.classify(None, n)
    assert (c.action, c.source, c.digest) == (LINK, b"a", digest(b"x"))
    # a member of a group whose file changed is relinked, also where a file was
    c = differ.classify(f(b"b", b"old"), n)
    assert (c.action, c.source, c.replaces) == (LINK, b"a", False)


def test_classify_file_leaving_its_hardlink_group_is_parent_from_its_own_path():
    p, n = f(b"b", b"x", link=b"a"), f(b"b", b"x")
    c = differ.classify(p, n)
    assert (c.action, c.source, c.digest, c.before, c.after) == (PARENT, b"b", digest(b"x"), p, n)


def test_classify_symlink_retarget_is_new():
    p, n = sym(b"l", b"old"), sym(b"l", b"new")
    c = differ.classify(p, n)
    assert (c.action, c.replaces, c.before, c.after) == (NEW, False, p, n)


def test_classify_fifo_leaving_its_hardlink_group_is_new():
    c = differ.classify(fifo(b"q", link=b"p"), fifo(b"q"))
    assert (c.action, c.source) == (NEW, None)


def test_classify_kind_change_replaces():
    folder_to_file = differ.classify(d(b"x"), f(b"x", b"c"))
    assert (folder_to_file.action, folder_to_file.replaces) == (differ.PENDING, True)
    file_to_folder = differ.classify(f(b"x", b"c"), d(b"x"))
    assert (file_to_folder.action, file_to_folder.replaces) == (NEW, True)
    file_to_symlink = differ.classify(f(b"x", b"c"), sym(b"x", b"t"))
    assert (file_to_symlink.action, file_to_symlink.replaces) == (NEW, True)


def test_classify_metadata_only_is_meta():
    for p, n in [(f(b"a", b"c"), f(b"a", b"c", mode=0o600)),
                 (f(b"a", b"c"), f(b"a", b"c", mtime=T + 1)),
                 (f(b"a", b"c"), f(b"a", b"c", xattrs={b"user.k": b"v"})),
                 (d(b"a"), d(b"a", mode=0o700)),
                 (sym(b"a", b"t"), sym(b"a", b"t", mtime=T + 1))]:
        c = differ.classify(p, n)
        assert (c.action, c.source, c.replaces, c.before, c.after) == (META, None, False, p, n)


# diff_trees -------------------------------------------------------------------------------

def test_identical_trees_have_no_records():
    t = tree(d(b"a"), f(b"a/x", b"1"), sym(b"l", b"a"))
    assert diff(t, [dataclasses.replace(e) for e in t]) == []


def test_deleted_folder_is_one_delete_record_without_its_subtree():
    parent = tree(d(b"gone"), d(b"gone/sub"), f(b"gone/sub/x", b"1"), f(b"gone/y", b"2"), f(b"keep", b"k"))
    new = tree(f(b"keep", b"k"))
    changes = diff(parent, new)
    assert actions(changes) == [(b"", META), (b"gone", DELETE)]
    assert changes[1].before == parent[1] and changes[1].after is None


def test_folder_replaced_by_a_file_is_one_record_and_its_old_subtree_is_not_listed():
    parent = tree(d(b"x"), f(b"x/in", b"1"))
    new = tree(f(b"x", b"now a file"))
    changes = diff(parent, new)
    assert actions(changes) == [(b"", META), (b"x", STORE)]
    assert changes[1].replaces is True


def test_moved_file_is_parent_with_the_old_path_as_source():
    parent = tree(d(b"old"), f(b"old/doc", b"content"))
    new = tree(d(b"new"), f(b"new/doc", b"content"))
    changes = diff(parent, new)
    assert actions(changes) == [(b"", META), (b"new", NEW), (b"new/doc", PARENT), (b"old", DELETE)]
    assert changes[2].source == b"old/doc" and changes[2].digest == digest(b"content")


def test_copy_of_parent_content_costs_no_bytes():
    parent = tree(f(b"a", b"shared"))
    new = tree(f(b"a", b"shared"), f(b"b", b"shared"))
    changes = diff(parent, new)
    assert [(c.path, c.action, c.source) for c in changes] == [(b"", META, None), (b"b", PARENT, b"a")]


def test_identical_new_contents_are_stored_once():
    parent = tree(f(b"old", b"old"))
    new = tree(f(b"old", b"old"), d(b"n"), f(b"n/one", b"same"), f(b"n/two", b"same"), f(b"z", b"same"))
    changes = diff(parent, new)
    assert [(c.path, c.action, c.source) for c in changes] == [
        (b"", META, None), (b"n", NEW, None), (b"n/one", STORE, None), (b"n/two", COPY, b"n/one"),
        (b"z", COPY, b"n/one")]


def test_unchanged_folder_in_which_entries_change_gets_a_meta_record_equal_before_and_after():
    parent = tree(d(b"a"), d(b"a/b"), f(b"a/b/x", b"1"), d(b"c"), f(b"c/y", b"2"))
    new = tree(d(b"a"), d(b"a/b"), f(b"a/b/x", b"1"), f(b"a/b/new", b"n"), d(b"c"), f(b"c/y", b"2"))
    changes = diff(parent, new)
    assert actions(changes) == [(b"", META), (b"a/b", META), (b"a/b/new", STORE)]
    folder = changes[1]
    assert folder.before == folder.after == d(b"a/b")
    # the root has no entry added itself: its record is there because something renames
    assert changes[0].before == changes[0].after == d(b"")


def test_changed_folder_keeps_its_own_record_only():
    parent = tree(d(b"a"), f(b"a/x", b"1"))
    new = tree(d(b"a", mode=0o700), f(b"a/x", b"1"), f(b"a/y", b"2"))
    changes = diff(parent, new)
    assert actions(changes) == [(b"", META), (b"a", META), (b"a/y", STORE)]
    assert changes[1].before.mode == 0o755 and changes[1].after.mode == 0o700


def test_metadata_only_changes_give_no_folder_records():
    parent = tree(d(b"a"), f(b"a/x", b"1"))
    new = tree(d(b"a"), f(b"a/x", b"1", mode=0o600))
    assert actions(diff(parent, new)) == [(b"a/x", META)]


def test_root_gets_a_meta_record_when_anything_renames_deep_down():
    parent = tree(d(b"a"), d(b"a/b"), f(b"a/b/x", b"1"))
    new = tree(d(b"a"), d(b"a/b"), f(b"a/b/x", b"2"))
    changes = diff(parent, new)
    assert actions(changes) == [(b"", META), (b"a/b", META), (b"a/b/x", STORE)]
    assert changes[0].before == changes[0].after == d(b"")


def test_records_come_out_in_canonical_order():
    parent = tree(d(b"a"), d(b"a/b"), f(b"a-b", b"0"))
    new = tree(d(b"a", mode=0o700), d(b"a/b"), f(b"a/b/c", b"1"), f(b"a-b", b"changed"),
               f(b"a.c", b"2"), sym(b"b", b"a"), f(b"\xff", b"3"))
    changes = diff(parent, new)
    keys = [path_key(c.path) for c in changes]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [c.path for c in changes] == [b"", b"a", b"a/b", b"a/b/c", b"a-b", b"a.c", b"b", b"\xff"]


def test_records_are_valid_delta_records():
    """Every record the differ makes is accepted by the delta reader as it is."""
    parent = tree(d(b"a"), f(b"a/x", b"1"), f(b"a/h", b"1", link=b"a/x"), d(b"gone"), f(b"gone/y", b"y"),
                  sym(b"l", b"t"), f(b"m", b"m"))
    new = tree(d(b"a"), f(b"a/x", b"1"), f(b"a/h", b"1"), f(b"moved", b"y"), sym(b"l", b"u"),
               f(b"m", b"m", mode=0o600), d(b"n"), f(b"n/1", b"s"), f(b"n/2", b"s"),
               f(b"n/3", b"s", link=b"n/1"))
    changes = diff(parent, new)
    assert {c.action for c in changes} == {META, PARENT, DELETE, NEW, STORE, COPY, LINK}
    for c in changes:
        assert Change.from_record(c.to_record()) == c


# assign_sources ---------------------------------------------------------------------------

def test_assign_sources_prefers_the_parent_then_an_earlier_store():
    pending = [Change(b"a", differ.PENDING, digest=digest(b"in parent")),
               Change(b"b", differ.PENDING, digest=digest(b"new")),
               Change(b"c", differ.PENDING, digest=digest(b"new")),
               Change(b"d", differ.PENDING, digest=digest(b"in parent"))]
    parent_hints = hints([f(b"p1", b"in parent"), f(b"p2", b"in parent"), f(b"q", b"other")])
    differ.assign_sources(pending, parent_hints)
    assert [(c.action, c.source) for c in pending] == [
        (PARENT, b"p1"), (STORE, None), (COPY, b"b"), (PARENT, b"p1")]


def test_assign_sources_does_not_read_the_parent_when_nothing_waits():
    def exploding():
        raise AssertionError("the parent's hints were read")
        yield  # pragma: no cover

    differ.assign_sources([], exploding())


# merge_join_pruned ------------------------------------------------------------------------

def pairs(old, new):
    return [((a.path if a else None), (b.path if b else None)) for a, b in merge_join_pruned(old, new)]


def test_merge_join_pruned_leaves_out_the_subtree_of_a_removed_folder():
    old = tree(d(b"x"), d(b"x/y"), f(b"x/y/z"), f(b"x-after"))
    new = tree(f(b"x-after"))
    assert pairs(old, new) == [(b"", b""), (b"x", None), (b"x-after", b"x-after")]


def test_merge_join_pruned_leaves_out_the_subtree_of_a_replaced_folder():
    old = tree(d(b"x"), f(b"x/in"), f(b"y"))
    new = tree(sym(b"x", b"elsewhere"), f(b"y"))
    assert pairs(old, new) == [(b"", b""), (b"x", b"x"), (b"y", b"y")]


def test_merge_join_pruned_keeps_new_entries_below_a_file_turned_folder():
    old = tree(f(b"x"), f(b"z"))
    new = tree(d(b"x"), f(b"x/new"), d(b"x/sub"), f(b"z"))
    assert pairs(old, new) == [(b"", b""), (b"x", b"x"), (None, b"x/new"), (None, b"x/sub"), (b"z", b"z")]


def test_merge_join_pruned_keeps_the_old_subtree_of_a_folder_that_stays():
    old = tree(d(b"x"), f(b"x/a"), f(b"x/b"))
    new = tree(d(b"x", mode=0o700), f(b"x/b"))
    assert pairs(old, new) == [(b"", b""), (b"x", b"x"), (b"x/a", None), (b"x/b", b"x/b")]
