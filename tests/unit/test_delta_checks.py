"""The delta's own consistency (tree/delta.py): check_delta (each record's new entry is the
manifest's), check_applied (the parent changed by the delta is the manifest, each record's
`before` is the parent's, each parent record's source holds its content), and the rules a record
read from an image must keep (Change.from_record). Entries in memory (tests/entries.py), deltas
made by the differ, then broken one way at a time."""

import dataclasses

import pytest
from entries import d, digest, f, fifo, hints, sym, tree

from diffimg.tree import differ
from diffimg.tree.delta import (
    COPY,
    DELETE,
    LINK,
    META,
    NEW,
    PARENT,
    STORE,
    Change,
    check_applied,
    check_delta,
)
from diffimg.tree.manifest import to_record

PARENT_TREE = tree(d(b"docs"), f(b"docs/readme", b"read me"), f(b"docs/moved", b"moved"),
                   d(b"gone"), d(b"gone/deep"), f(b"gone/deep/x", b"x"), f(b"keep", b"kept"),
                   f(b"meta", b"m"), f(b"replaced", b"file"), sym(b"link", b"keep"), fifo(b"pipe"),
                   d(b"was-dir"), f(b"was-dir/in", b"in"))
NEW_TREE = tree(d(b"docs"), f(b"docs/readme", b"read me"), f(b"keep", b"kept"), f(b"meta", b"m", mode=0o600),
                f(b"new-place", b"moved"), f(b"copy", b"kept"), d(b"replaced"), f(b"replaced/in", b"new"),
                f(b"replaced/twin", b"new", link=b"replaced/in"), sym(b"link", b"docs"), fifo(b"pipe"),
                f(b"was-dir", b"now a file"))


def make_delta(parent=PARENT_TREE, new=NEW_TREE):
    return differ.diff_trees(parent, new, hints(parent))


def at(changes, path) -> int:
    return next(i for i, c in enumerate(changes) if c.path == path)


def edited(changes, path, **fields):
    """The delta with the record at path changed."""
    changes = list(changes)
    i = at(changes, path)
    changes[i] = dataclasses.replace(changes[i], **fields)
    return changes


def test_the_differs_delta_is_consistent_with_both_trees():
    changes = make_delta()
    assert ([(c.path, c.action, c.source) for c in changes], check_delta(NEW_TREE, changes),
            check_applied(PARENT_TREE, changes, NEW_TREE)) == (
        [(b"", META, None), (b"copy", PARENT, b"keep"), (b"docs", META, None),
         (b"docs/moved", DELETE, None), (b"gone", DELETE, None), (b"link", NEW, None),
         (b"meta", META, None), (b"new-place", PARENT, b"docs/moved"), (b"replaced", NEW, None),
         (b"replaced/in", STORE, None), (b"replaced/twin", LINK, b"replaced/in"),
         (b"was-dir", STORE, None)], [], [])


def _without(changes, path):
    return [c for c in changes if c.path != path]


NOT_MANIFEST = "the delta's record does not match the manifest"


@pytest.mark.parametrize("broken, problems", [
    (lambda c: edited(c, b"meta", after=f(b"meta", b"m", mode=0o640)), [f"meta: {NOT_MANIFEST}"]),
    (lambda c: edited(c, b"link", after=sym(b"link", b"elsewhere")), [f"link: {NOT_MANIFEST}"]),
    (lambda c: edited(c, b"", after=d(b"", mode=0o700)), [f".: {NOT_MANIFEST}"]),
    (lambda c: sorted(c + [Change(b"keep", DELETE, before=f(b"keep", b"kept"))], key=lambda x: x.path),
     [f"keep: {NOT_MANIFEST}"]),
    (lambda c: sorted(c + [Change(b"extra", STORE, digest=digest(b"e"), after=f(b"extra", b"e"))],
                      key=lambda x: x.path), [f"extra: {NOT_MANIFEST}"]),
    (lambda c: edited(c, b"was-dir", after=f(b"was-dir", b"other!!!!!")), [f"was-dir: {NOT_MANIFEST}"]),
    (lambda c: _without(c, b"meta"), []),       # a path without a record is not check_delta's
])
def test_check_delta_names_each_record_whose_new_entry_is_not_the_manifests(broken, problems):
    assert check_delta(NEW_TREE, broken(make_delta())) == problems


CHANGED_HERE = "the parent's tree changed by the delta is not the manifest here"
NOT_PARENTS = "the delta's parent record is not the parent's"


@pytest.mark.parametrize("name, broken, problems", [
    ("a record left out", lambda c: _without(c, b"meta"), [f"meta: {CHANGED_HERE}"]),
    ("a new path left out", lambda c: _without(c, b"copy"), [f"copy: {CHANGED_HERE}"]),
    ("a delete left out", lambda c: _without(c, b"gone"),
     [f"gone: {CHANGED_HERE}", f"gone/deep: {CHANGED_HERE}", f"gone/deep/x: {CHANGED_HERE}"]),
    ("a wrong before", lambda c: edited(c, b"meta", before=f(b"meta", b"m", mode=0o444)),
     [f"meta: {NOT_PARENTS}"]),
    ("a before where the parent has none", lambda c: edited(c, b"copy", before=f(b"copy", b"x")),
     [f"copy: {NOT_PARENTS}"]),
    ("no before where the parent has one", lambda c: edited(c, b"link", before=None),
     [f"link: {NOT_PARENTS}"]),
    ("a root record of another root", lambda c: edited(c, b"", before=d(b"", mode=0o700)),
     [f".: {NOT_PARENTS}"]),
    ("content from a path the parent lacks",
     lambda c: edited(c, b"new-place", source=b"docs/nothing"),
     ["docs/nothing: a record takes content from it, which the parent lacks"]),
    ("content from a file that holds other", lambda c: edited(c, b"copy", source=b"meta"),
     ["meta: a record takes content from it that the parent's entry there does not hold"]),
    ("content from a folder", lambda c: edited(c, b"copy", source=b"docs"),
     ["docs: a record takes content from it that the parent's entry there does not hold"]),
    ("content from a symlink", lambda c: edited(c, b"copy", source=b"link"),
     ["link: a record takes content from it that the parent's entry there does not hold"]),
])
def test_check_applied_names_what_the_delta_does_not_make_of_the_parent(name, broken, problems):
    assert check_applied(PARENT_TREE, broken(make_delta()), NEW_TREE) == problems


def test_a_removed_folders_subtree_goes_with_it_whichever_record_removes_it():
    parent = tree(d(b"a"), d(b"a/b"), f(b"a/b/c", b"c"), f(b"a/d", b"d"), d(b"ab"), f(b"ab/e", b"e"),
                  f(b"z", b"z"))
    new = {
        "deleted": tree(d(b"ab"), f(b"ab/e", b"e"), f(b"z", b"z")),
        "replaced by a file": tree(f(b"a", b"now a file"), d(b"ab"), f(b"ab/e", b"e"), f(b"z", b"z")),
        "replaced by a symlink": tree(sym(b"a", b"z"), d(b"ab"), f(b"ab/e", b"e"), f(b"z", b"z")),
        "emptied, kept": tree(d(b"a"), d(b"ab"), f(b"ab/e", b"e"), f(b"z", b"z")),
    }
    results = {}
    for name, tree_new in new.items():
        changes = make_delta(parent, tree_new)
        results[name] = (check_applied(parent, changes, tree_new), check_delta(tree_new, changes))
    # a delta that removes the folder but whose manifest kept a piece of it
    changes = make_delta(parent, new["deleted"])
    kept_piece = tree(f(b"a/d", b"d"), d(b"ab"), f(b"ab/e", b"e"), f(b"z", b"z"))
    results["a removed piece in the manifest"] = (check_applied(parent, changes, kept_piece), [])
    assert results == {"deleted": ([], []), "replaced by a file": ([], []),
                       "replaced by a symlink": ([], []), "emptied, kept": ([], []),
                       "a removed piece in the manifest": ([f"a/d: {CHANGED_HERE}"], [])}


def test_two_records_that_take_other_contents_from_one_source():
    parent = tree(f(b"src", b"one"))
    new = tree(f(b"a", b"one"), f(b"src", b"one"))
    changes = make_delta(parent, new)
    lying = Change(b"b", PARENT, b"src", digest=digest(b"two"), after=f(b"b", b"two"))
    assert (check_applied(parent, changes, new),
            check_applied(parent, sorted(changes + [lying], key=lambda c: c.path),
                          tree(f(b"a", b"one"), f(b"b", b"two"), f(b"src", b"one")))) == (
        [], ["src: a record takes content from it that the parent's entry there does not hold"])


def test_problems_shown_are_bounded_and_a_root_is_named_dot():
    parent = tree(*[f(b"f%d" % i, b"%d" % i) for i in range(8)])
    new = tree(*[f(b"f%d" % i, b"%d" % i, mode=0o600) for i in range(8)])
    bad = check_applied(parent, [], new)
    fewer = check_applied(parent, [], new, shown=2)
    root = check_applied(tree(), [], [d(b"", mode=0o700)])
    assert (bad, fewer, root) == ([f"f{i}: {CHANGED_HERE}" for i in range(5)],
                                  [f"f{i}: {CHANGED_HERE}" for i in range(2)], [f".: {CHANGED_HERE}"])


def _record(path=b"x", action=STORE, source=None, replaces=False, dig=None, before=None, after=None):
    return [path, action, source, replaces, dig, None if before is None else to_record(before),
            None if after is None else to_record(after)]


X = f(b"x", b"x")


@pytest.mark.parametrize("rec, why", [
    ("not a list", "bad delta record"),
    ([b"x", STORE], "bad delta record"),
    (_record(action="rename", dig=X.digest, after=X), "bad delta record"),
    (_record(path="x", dig=X.digest, after=X), "bad delta record"),
    (_record(replaces=1, dig=X.digest, after=X), "bad delta record"),
    (_record(path=b"../x", dig=X.digest, after=X), "unsafe or incomplete delta record"),
    (_record(path=b".diffimg/x", dig=X.digest, after=X), "unsafe or incomplete delta record"),
    (_record(path=b"", action=STORE, dig=X.digest, after=X), "unsafe or incomplete delta record"),
    (_record(action=PARENT, dig=X.digest, after=X), "unsafe or incomplete delta record"),
    (_record(action=PARENT, source=b"/etc/passwd", dig=X.digest, after=X),
     "unsafe or incomplete delta record"),
    (_record(source=b"y", dig=X.digest, after=X), "unsafe or incomplete delta record"),
    (_record(action=DELETE, after=X), "delta record without the entries its action needs"),
    (_record(action=DELETE), "delta record without the entries its action needs"),
    (_record(action=META, dig=X.digest, after=X), "delta record without the entries its action needs"),
    (_record(dig=X.digest, before=f(b"other", b"x"), after=X), "delta record for b'x' holds the entry"),
    (_record(action=LINK, source=b"y", dig=X.digest, after=X), "delta record whose hardlink is not"),
    (_record(action=LINK, source=b"y", dig=X.digest, after=f(b"x", b"x", link=b"z")),
     "delta record whose hardlink is not its source"),
    (_record(dig=X.digest, after=f(b"x", b"x", link=b"y")), "delta record whose hardlink is not"),
    (_record(dig=X.digest, before=X, after=X, replaces=True), "replaces is not exactly"),
    (_record(action=NEW, after=d(b"x"), before=X), "replaces is not exactly"),
    (_record(dig=digest(b"y"), after=X), "the digest is not the new file's"),
    (_record(action=NEW, dig=X.digest, after=d(b"x")), "the digest is not the new file's"),
    (_record(action=COPY, source=b"y", after=d(b"x")), "a copy record is not a file's"),
    (_record(action=NEW, dig=X.digest, after=X), "a new record holds a file"),
    (_record(action=META, dig=digest(b"y"), before=f(b"x", b"y"), after=f(b"x", b"y", mode=0o600,
                                                                             sparse=True)),
     "a meta record changes more than metadata"),
    (_record(action=META, dig=X.digest, before=f(b"x", b"old"), after=X),
     "a meta record changes more than metadata"),
    (_record(action=META, before=sym(b"x", b"a"), after=sym(b"x", b"b")),
     "a meta record changes more than metadata"),
])
def test_a_record_that_breaks_the_delta_rules_is_refused(rec, why):
    with pytest.raises(ValueError) as caught:
        Change.from_record(rec)
    assert why in str(caught.value), str(caught.value)


def test_sound_records_read_back_as_written():
    changes = make_delta()
    assert [Change.from_record(c.to_record()) for c in changes] == changes
