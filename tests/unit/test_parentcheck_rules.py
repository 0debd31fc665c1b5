"""apply's check that a target holds the diff's parent where the delta touches it
(restore/parentcheck.py): real trees in tmp_path, scanned, their delta made by the differ; the
target is a copy of the parent, changed at touched and untouched paths. No root: files, folders,
symlinks and FIFOs of this user, with fixed mtimes."""

import dataclasses
import os

import pytest
from entries import hints
from treebuild import build

from diffimg.errors import ImageError, Refused
from diffimg.restore import parentcheck
from diffimg.restore.parentcheck import check_parent, entry_at, untracked_below
from diffimg.scan.scanner import scan
from diffimg.tree import differ
from diffimg.tree.delta import DELETE, LINK, PARENT, STORE, Change

T = 1_600_000_000_000_000_000


def spec(new=False):
    """The parent tree, or the new one: a file moved, one edited, one chmod, one deleted with a
    folder, a symlink retargeted, a file become a folder, a new file."""
    items = [("", "dir", {}), ("docs", "dir", {}), ("docs/readme", "file", {"data": b"read me"}),
             ("keep", "file", {"data": b"kept"}),
             ("link", "symlink", {"target": b"docs" if new else b"keep"}),
             ("pipe", "fifo", {}), ("edited", "file", {"data": b"after edit" if new else b"before"}),
             ("meta", "file", {"data": b"meta", "mode": 0o600 if new else 0o644})]
    if new:
        items += [("new-place", "file", {"data": b"moved content"}), ("replaced", "dir", {}),
                  ("fresh", "file", {"data": b"fresh"}), ("copy", "file", {"data": b"read me"})]
    else:
        items += [("docs/moved", "file", {"data": b"moved content"}), ("old", "file", {"data": b"old"}),
                  ("gone", "dir", {}), ("gone/x", "file", {"data": b"x"}),
                  ("replaced", "file", {"data": b"was a file"})]
    return [{"path": p.encode(), "kind": k, "mtime_ns": T, **a} for p, k, a in items]


@pytest.fixture(scope="module")
def delta(tmp_path_factory):
    top = tmp_path_factory.mktemp("trees")
    parent = list(scan(build(top / "parent", spec())))
    new = list(scan(build(top / "new", spec(new=True))))
    return parent, differ.diff_trees(parent, new, hints(parent))


@pytest.fixture
def target(tmp_path):
    return build(tmp_path / "target", spec())


def touch(path, data=None):
    """path given data (or left as it is), its mtime the parent's."""
    if data is not None:
        with open(path, "wb") as f:
            f.write(data)
    os.utime(path, ns=(T, T), follow_symlinks=False)


def settle(target):
    """The folders' mtimes back to the parent's where a change in them moved them (a time set on
    purpose, near T, is left)."""
    for dirpath, dirnames, _ in os.walk(target):
        for path in [dirpath] + [os.path.join(dirpath, d) for d in dirnames]:
            if abs(os.lstat(path).st_mtime_ns - T) > 10**9:
                os.utime(path, ns=(T, T), follow_symlinks=False)


def check(target, changes, **kw):
    settle(target)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return check_parent(fd, target, changes, **kw)
    finally:
        os.close(fd)


def refusal(target, changes, **kw):
    """The differences a refusal names, or the paths of shared meta records when it passes."""
    try:
        return check(target, changes, **kw)
    except Refused as exc:
        return exc.differences


def test_the_delta_is_what_the_check_is_made_against(delta):
    _, changes = delta
    assert [(c.path, c.action, c.source, c.replaces) for c in changes] == [
        (b"", "meta", None, False), (b"copy", "parent", b"docs/readme", False),
        (b"docs", "meta", None, False), (b"docs/moved", "delete", None, False),
        (b"edited", "store", None, False), (b"fresh", "store", None, False),
        (b"gone", "delete", None, False), (b"link", "new", None, False), (b"meta", "meta", None, False),
        (b"new-place", "parent", b"docs/moved", False), (b"old", "delete", None, False),
        (b"replaced", "new", None, True)]


def test_a_target_that_is_the_parent_where_the_delta_touches_it_passes(delta, target):
    _, changes = delta
    results = {"the parent": refusal(target, changes)}
    touch(os.path.join(target, b"keep"), b"KEPT")          # untouched by the delta: not looked at
    os.unlink(os.path.join(target, b"pipe"))
    os.mkdir(os.path.join(target, b"extra"))
    results["changed where untouched"] = refusal(target, changes)
    os.link(os.path.join(target, b"meta"), os.path.join(target, b"meta-twin"))
    results["a meta record's file with another link"] = refusal(target, changes)
    assert results == {"the parent": set(), "changed where untouched": set(),
                       "a meta record's file with another link": {b"meta"}}


def _symlinked_folder(target):
    """docs a symlink to a folder holding the same: never looked through."""
    os.rename(os.path.join(target, b"docs"), os.path.join(target, b"real-docs"))
    os.symlink(b"real-docs", os.path.join(target, b"docs"))


@pytest.mark.parametrize("change, differences", [
    (lambda t: touch(t + b"/edited", b"BEFORE"), []),              # same size and time: trusted
    (lambda t: os.utime(t + b"/edited", ns=(T, T + 1)), [(b"edited", "has another mtime")]),
    (lambda t: touch(t + b"/edited", b"before, longer"), [(b"edited", "has another size")]),
    (lambda t: touch(t + b"/fresh", b""), [(b"fresh", "exists, but the diff's parent has nothing there")]),
    (lambda t: os.unlink(t + b"/old"), [(b"old", "is missing")]),
    (lambda t: (os.unlink(t + b"/replaced"), os.mkdir(t + b"/replaced"), touch(t + b"/replaced")),
     [(b"replaced", "is a dir, not a file")]),
    (lambda t: os.chmod(t + b"/meta", 0o640), [(b"meta", "has another mode")]),
    (lambda t: (os.unlink(t + b"/link"), os.symlink(b"elsewhere", t + b"/link"), touch(t + b"/link")),
     [(b"link", "has another target")]),
    (lambda t: (os.unlink(t + b"/link"), os.mkfifo(t + b"/link"), touch(t + b"/link")),
     [(b"link", "is a fifo, not a symlink")]),
    (lambda t: touch(t + b"/docs/moved", b"moved, and longer"), [(b"docs/moved", "has another size")]),
    (lambda t: os.utime(t + b"/docs", ns=(T, T + 5)), [(b"docs", "has another mtime")]),
    (lambda t: touch(t + b"/docs/readme", b"READ ME"),          # a source: hashed without a state
     [(b"docs/readme", "is not the entry the diff takes content or a hardlink from")]),
    (lambda t: os.unlink(t + b"/docs/readme"),
     [(b"docs/readme", "is not the entry the diff takes content or a hardlink from")]),
    (_symlinked_folder,         # in the delta's order: copy's source first
     [(b"docs/readme", "is not the entry the diff takes content or a hardlink from"),
      (b"docs", "is a symlink, not a dir"), (b"docs/moved", "is missing")]),
    (lambda t: (os.unlink(t + b"/old"), touch(t + b"/edited", b"x"), touch(t + b"/fresh", b"")),
     [(b"edited", "has another size"), (b"fresh", "exists, but the diff's parent has nothing there"),
      (b"old", "is missing")]),
])
def test_each_touched_path_that_is_not_the_parents_is_named(delta, target, change, differences):
    _, changes = delta
    change(target)
    assert refusal(target, changes) == (differences or set())


def test_the_refusal_says_what_differs_and_that_nothing_was_changed(delta, target):
    _, changes = delta
    os.unlink(os.path.join(target, b"old"))
    with pytest.raises(Refused) as caught:
        check(target, changes)
    assert (caught.value.exit_code, caught.value.message) == (14, (
        f"{os.fsdecode(target)} is not the tree the diff was made on: 1 path differs from the diff's "
        "parent: old is missing; nothing was changed. restore makes the target exact from any state "
        "(or apply --force)"))


def test_content_is_compared_with_checksum_or_where_no_stat_proves_it(delta, target):
    _, changes = delta
    touch(os.path.join(target, b"edited"), b"BEFORE")        # other bytes, same size and time
    st = os.lstat(os.path.join(target, b"edited"))
    other = [(b"edited", "has other content")]
    assert {
        "size and time": refusal(target, changes),
        "checksum": refusal(target, changes, checksum=True),
        "a proof that holds": refusal(target, changes, proofs={b"edited": (st.st_ino, st.st_ctime_ns),
                                                               b"docs/readme": (0, 0)}),
        "a proof that does not hold": refusal(target, changes, proofs={b"edited": (st.st_ino, 1)}),
        "no proof for it": refusal(target, changes, proofs={}),
    } == {"size and time": set(), "checksum": other, "a proof that holds": set(),
          "a proof that does not hold": other, "no proof for it": other}


def test_a_moved_files_source_with_other_content_is_refused_without_a_state(delta, target):
    _, changes = delta
    touch(os.path.join(target, b"docs/moved"), b"MOVED content")     # same size and time
    assert refusal(target, changes) == [(b"docs/moved", "has other content")]


def test_a_refusal_names_the_first_paths_and_counts_the_rest(tmp_path):
    names = [b"f%02d" % i for i in range(parentcheck.SHOWN + 5)]
    parent_spec = [{"path": b"", "kind": "dir", "mtime_ns": T}] + [
        {"path": n, "kind": "file", "data": n, "mtime_ns": T} for n in names]
    parent = list(scan(build(tmp_path / "parent", parent_spec)))
    new = list(scan(build(tmp_path / "new", parent_spec[:1])))
    changes = differ.diff_trees(parent, new, hints(parent))
    target = build(tmp_path / "target", parent_spec[:1])
    with pytest.raises(Refused) as caught:
        check(target, changes)
    shown = "; ".join(f"{n.decode()} is missing" for n in names[:parentcheck.SHOWN])
    assert (caught.value.differences, caught.value.message) == (
        [(n, "is missing") for n in names],
        f"{os.fsdecode(target)} is not the tree the diff was made on: {len(names)} paths differ from the "
        f"diff's parent: {shown}; and 5 more; nothing was changed. restore makes the target exact from "
        "any state (or apply --force)")


def test_records_that_contradict_each_other_are_a_damaged_image(delta, target):
    parent, _ = delta
    by_path = {e.path: e for e in parent}
    moved = by_path[b"docs/moved"]
    other = dataclasses.replace(moved, path=b"new-place", digest=bytes(16))
    leader = dataclasses.replace(by_path[b"keep"], path=b"a")
    member = dataclasses.replace(by_path[b"keep"], path=b"b", link=b"a", mode=0o600)
    errors = {}
    for name, changes in {
        "content its source does not hold": [
            Change(b"docs/moved", DELETE, before=moved),
            Change(b"new-place", PARENT, b"docs/moved", digest=other.digest, after=other)],
        "a hardlink of another inode": [
            Change(b"a", STORE, digest=leader.digest, after=leader),
            Change(b"b", LINK, b"a", digest=member.digest, after=member)],
    }.items():
        with pytest.raises(ImageError) as caught:
            check(target, changes)
        errors[name] = caught.value.message
    assert errors == {
        "content its source does not hold": "new-place: it takes content from docs/moved, whose parent "
                                            "entry does not hold it (a damaged image?)",
        "a hardlink of another inode": "b: its hardlink's first member a is not the same inode (a "
                                       "damaged image?)"}


def test_what_a_removed_folder_holds_beyond_the_parent_is_named(delta, target):
    parent, _ = delta
    gone = os.path.join(target, b"gone")
    os.mkdir(os.path.join(gone, b"sub"))
    touch(os.path.join(gone, b"sub", b"deep"), b"d")
    touch(os.path.join(gone, b"extra"), b"e")
    os.symlink(b"/", os.path.join(gone, b"ln"))
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = untracked_below(fd, [b"gone", b"missing", b""], iter(parent))
        parent_with_sub = sorted(parent + [dataclasses.replace(parent[0], path=b"gone/sub")],
                                 key=lambda e: e.path.replace(b"/", b"\0"))
        below_known = untracked_below(fd, [b"gone"], iter(parent_with_sub))
    finally:
        os.close(fd)
    why = "is not in the diff's parent, and the diff removes gone, which holds it"
    assert (sorted(found), sorted(below_known)) == (
        [(b"gone/extra", why), (b"gone/ln", why), (b"gone/sub", why)],
        [(b"gone/extra", why), (b"gone/ln", why), (b"gone/sub/deep", why)])


def test_entry_at_reads_an_entry_as_the_scan_does_never_through_a_symlink(delta, target):
    parent, _ = delta
    by_path = {e.path: e for e in parent}
    _symlinked_folder(target)
    settle(target)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = {p: entry_at(fd, p) for p in [b"keep", b"link", b"pipe", b"", b"docs/readme", b"nothing"]}
    finally:
        os.close(fd)
    assert got == {b"keep": dataclasses.replace(by_path[b"keep"], digest=None, sparse=None),
                   b"link": by_path[b"link"], b"pipe": by_path[b"pipe"], b"": by_path[b""],
                   b"docs/readme": None, b"nothing": None}


def test_a_hardlinks_first_member_with_other_content_is_refused_without_a_state(tmp_path):
    """The new member is linked to the target's first member unread: without a state proving
    it, the first member is hashed (other content of the same size and time is refused)."""
    base = [{"path": b"", "kind": "dir", "mtime_ns": T},
            {"path": b"a", "kind": "file", "data": b"first", "mtime_ns": T}]
    parent = list(scan(build(tmp_path / "parent", base)))
    new = list(scan(build(tmp_path / "new", [*base, {"path": b"b", "kind": "link", "to": b"a"}])))
    changes = differ.diff_trees(parent, new, hints(parent))
    assert [(c.path, c.action, c.source) for c in changes if c.path == b"b"] == [(b"b", LINK, b"a")]
    target = build(tmp_path / "target", base)
    assert refusal(target, changes) == set()
    touch(os.path.join(target, b"a"), b"FIRST")                # same size and time, other bytes
    assert refusal(target, changes) == [(b"a", "is not the entry the diff takes content or a "
                                               "hardlink from")]


def test_a_hardlinks_first_member_with_only_new_metadata_is_hashed_without_a_state(tmp_path):
    """The first member's own record changes only its metadata (its content stays in the
    target, unread) and the new member is linked to it: other bytes of the same size and time
    there are refused."""
    parent_spec = [{"path": b"", "kind": "dir", "mtime_ns": T},
                   {"path": b"a", "kind": "file", "data": b"XXXX", "mode": 0o644, "mtime_ns": T}]
    new_spec = [{"path": b"", "kind": "dir", "mtime_ns": T},
                {"path": b"a", "kind": "file", "data": b"XXXX", "mode": 0o600, "mtime_ns": T},
                {"path": b"b", "kind": "link", "to": b"a"}]
    parent = list(scan(build(tmp_path / "parent", parent_spec)))
    new = list(scan(build(tmp_path / "new", new_spec)))
    changes = differ.diff_trees(parent, new, hints(parent))
    assert {(c.path, c.action) for c in changes} >= {(b"a", "meta"), (b"b", LINK)}
    target = build(tmp_path / "target", parent_spec)
    assert refusal(target, changes) == set()
    touch(os.path.join(target, b"a"), b"YYYY")
    assert refusal(target, changes) == [(b"a", "has other content")]
