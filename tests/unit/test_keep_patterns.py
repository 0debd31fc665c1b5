"""--keep patterns (target/keep.py): parsed, matched against recorded paths (Matcher) and found in a
real target (find_kept, never through a symlink, in any case as NTFS compares names), a chain's
kept entries put in a scanned tree (chain_kept), and the warning for a pattern that keeps nothing.
No root: tmp_path trees of plain files, folders and symlinks."""

import os

import pytest
from entries import d, f, tree

from diffimg.restore.restore import _kept
from diffimg.system.fsmeta import mount_of
from diffimg.target import keep
from diffimg.target.keep import BadPattern, Kept, Matcher, NotATree, chain_kept, find_kept


@pytest.fixture
def root_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_patterns_parse_into_components_and_paths_that_leave_the_root_are_refused():
    assert keep.parse(["/home", "Users/*/Documents/", "//pagefile.sys", "/a[b]/?"]) == [
        [b"home"], [b"Users", b"*", b"Documents"], [b"pagefile.sys"], [b"a[b]", b"?"]]
    refused = {}
    for pattern in ["", "/", "//", "/a/../b", "a//b", "/./a", "/.diffimg", ".diffimg/state.json",
                    "/a/.", "x\0y"]:
        with pytest.raises(BadPattern) as caught:
            keep.parse(["/fine", pattern])
        refused[pattern] = (caught.value.exit_code, caught.value.message)
    assert refused == {p: (2, f"--keep {p!r}: give a path below the target's root") for p in refused}


def test_a_literal_pattern_matches_its_path_alone():
    names = [b"plain", b"a*b", b"q?", b"[x]", b"dir/[ab]*?/end"]
    literal = {n: keep.literal_pattern(n) for n in names}
    assert literal == {b"plain": b"plain", b"a*b": b"a[*]b", b"q?": b"q[?]", b"[x]": b"[[]x]",
                       b"dir/[ab]*?/end": b"dir/[[]ab][*][?]/end"}
    for name, pattern in literal.items():
        matcher = Matcher([os.fsdecode(b"/" + pattern)])
        siblings = [b"a-b", b"qq", b"x", b"dir/a-z/end", b"dir/[ab]xy/end"]
        assert (matcher.covers(name), [s for s in siblings if matcher.covers(s)]) == (True, [])


def test_lost_found_is_kept_by_default_on_ext_filesystems_only():
    assert {t: keep.defaults_for(t) for t in ["ext2", "ext3", "ext4", "xfs", "btrfs", "ntfs", None]} == {
        "ext2": ["/lost+found"], "ext3": ["/lost+found"], "ext4": ["/lost+found"], "xfs": [],
        "btrfs": [], "ntfs": [], None: []}


def test_the_matcher_covers_matched_paths_and_their_subtrees_one_component_per_glob():
    matcher = Matcher(["/home", "/Users/*/Documents", "/pagefile.sys", "/caf\udce9"])
    paths = [b"", b"home", b"home/u/.bashrc", b"homes", b"hom", b"Users", b"Users/a",
             b"Users/a/Documents", b"Users/a/Documents/x/y", b"Users/a/b/Documents",
             b"Users/Documents", b"Users/.hidden/Documents", b"pagefile.sys", b"PAGEFILE.SYS",
             b"pagefile.sys.bak", b"caf\xe9", b"caf\xc3\xa9", b"x/home"]
    assert [p for p in paths if matcher.covers(p)] == [
        b"home", b"home/u/.bashrc", b"Users/a/Documents", b"Users/a/Documents/x/y",
        b"Users/.hidden/Documents", b"pagefile.sys", b"caf\xe9"]


def test_folded_case_is_ntfs_s_each_letter_by_its_simple_upper_case_where_that_goes_both_ways():
    cases = {
        # pattern: the names (str, or bytes that are not UTF-8) it must cover, and those it must not
        "/Straße": (["STRAßE", "straße"], ["STRASSE", "strasse"]),
        "/été/*.SYS": (["ÉTÉ/pagefile.sys", "été/X.Sys"], ["ete/x.sys"]),
        "/\u212a": (["\u212a"], ["k", "K"]),              # the Kelvin sign
        "/k": (["k", "K"], ["\u212a"]),
        "/\u017f": (["\u017f"], ["s", "S"]),              # the long s
        "/\u0131": (["\u0131"], ["i", "I"]),              # the dotless i
        "/\u00b5": (["\u00b5"], ["\u03bc", "\u039c"]),    # the micro sign, not mu
        "/caf\udce9": ([b"CAF\xe9", b"caf\xe9"], [b"caf\xc9"]),
    }
    found = {}
    for pattern, (covered, not_covered) in cases.items():
        matcher = Matcher([pattern], fold_case=True)
        found[pattern] = [n for n in covered + not_covered if matcher.covers(os.fsencode(n))]
    assert found == {pattern: covered for pattern, (covered, _) in cases.items()}
    # without folding, only the very name
    exact = Matcher(["/Straße"])
    assert [n for n in ["STRAßE", "Straße"] if exact.covers(n.encode())] == ["Straße"]


def _target(root):
    """A target holding a bit of everything a pattern can meet."""
    for folder in ["home/u", "Users/a/Documents", "Users/b", "Users/c", "elsewhere/Documents",
                   "lost+found", ".diffimg", "file-parent"]:
        os.makedirs(root / folder, exist_ok=True)
    for name in ["home/u/.bashrc", "Users/a/Documents/x", "Users/b/Documents", "pagefile.sys",
                 "elsewhere/Documents/secret", ".diffimg/state.json", "plainfile", "HIBERFIL.SYS"]:
        (root / name).write_bytes(b"x")
    os.symlink("../elsewhere", root / "Users" / "d")            # a folder behind a symlink
    os.symlink("/nonexistent", root / "dangling")
    os.mkfifo(root / "pipe")


def test_find_kept_matches_entries_of_any_kind_and_never_enters_a_symlink(tmp_path, root_fd):
    _target(tmp_path)
    patterns = ["/home", "/Users/*/Documents", "/dangling", "/pipe", "/plainfile/below", "/*.sys",
                "/nothing/here", "/lost+found", "/Users/d", "/*/u"]
    unmatched = []
    kept = find_kept(root_fd, patterns, unmatched=unmatched)
    assert (sorted(kept), unmatched) == (
        [b"Users/a/Documents", b"Users/b/Documents", b"Users/d", b"dangling", b"home", b"home/u",
         b"lost+found", b"pagefile.sys", b"pipe"],
        ["/plainfile/below", "/nothing/here"])


def test_find_kept_never_keeps_diffimgs_own_folder(tmp_path, root_fd):
    _target(tmp_path)
    kept = find_kept(root_fd, ["/*", "/.*"])
    assert (b".diffimg" in kept, sorted(k for k in kept if k.startswith(b"."))) == (False, [])
    assert sorted(kept) == sorted(n for n in map(os.fsencode, os.listdir(tmp_path)) if n != b".diffimg")


def test_find_kept_in_any_case_where_names_fold(tmp_path, root_fd):
    _target(tmp_path)
    patterns = ["/HOME/U", "/users/*/documents", "/Hiberfil.sys", "/PAGEFILE.SYS"]
    results = {}
    for fold in (False, True):
        unmatched = []
        results[fold] = (sorted(find_kept(root_fd, patterns, fold, unmatched)), unmatched)
    assert results == {
        False: ([], patterns),
        True: ([b"HIBERFIL.SYS", b"Users/a/Documents", b"Users/b/Documents", b"home/u",
                b"pagefile.sys"], [])}


def test_a_windows_tree_folds_case_and_a_linux_filesystem_does_not(root_fd):
    fstype = mount_of(os.fstat(root_fd).st_dev).get("fstype", "")
    if fstype in keep.CASE_INSENSITIVE_FSTYPES or fstype.startswith("fuse"):
        pytest.skip(f"tmp_path lies on {fstype}")
    assert (keep.folds_case(root_fd, False), keep.folds_case(root_fd, True)) == (False, True)


def test_kept_paths_cover_their_subtrees_and_their_folders_hold_them():
    kept = Kept({b"a/b/c", b"x"})
    paths = [b"", b"a", b"a/b", b"a/b/c", b"a/b/c/d", b"a/b/cd", b"a/bb", b"x", b"x/y", b"xy"]
    assert ([p for p in paths if kept.covers(p)], [p for p in paths if kept.holds(p)],
            bool(kept), bool(Kept(set())), Kept(set()).holds(b"")) == (
        [b"a/b/c", b"a/b/c/d", b"x", b"x/y"], [b"", b"a", b"a/b"], True, False, False)


def test_chain_kept_puts_the_chains_entries_at_the_kept_paths():
    scanned = tree(d(b"etc"), f(b"etc/hosts", b"mine"), d(b"srv"), f(b"zz", b"z"))
    chain = tree(d(b"etc"), f(b"etc/hosts", b"chain's"), d(b"home"), d(b"home/u"),
                 f(b"home/u/notes", b"n"), f(b"home/v", b"v", mode=0o600), d(b"srv"),
                 d(b"srv/data"), f(b"srv/data/db", b"db"), f(b"srv/other", b"o"))
    matcher = Matcher(["/home", "/srv/data"])
    merged = list(chain_kept(iter(scanned), iter(chain), matcher, "the tree"))
    assert merged == tree(d(b"etc"), f(b"etc/hosts", b"mine"), d(b"home"), d(b"home/u"),
                          f(b"home/u/notes", b"n"), f(b"home/v", b"v", mode=0o600), d(b"srv"),
                          d(b"srv/data"), f(b"srv/data/db", b"db"), f(b"zz", b"z"))


@pytest.mark.parametrize("scanned, chain, kept_links, message", [
    # the kept entry's folder is a file in the tree
    (tree(f(b"srv", b"file")), tree(d(b"srv"), d(b"srv/data"), f(b"srv/data/db")), frozenset(),
     "srv/data is kept as the chain has it, but srv is not a folder in the tree"),
    # the kept entry's folder is missing from the tree
    (tree(), tree(d(b"srv"), d(b"srv/data")), frozenset(),
     "srv/data is kept as the chain has it, but srv is not a folder in the tree"),
    # a tree's file is a hardlink of a kept one
    (tree(d(b"srv"), f(b"srv/link", b"db", link=b"srv/data/db")),
     tree(d(b"srv"), d(b"srv/data"), f(b"srv/data/db", b"db")), frozenset(),
     "srv/link in the tree is a hardlink of srv/data/db, a kept path: keep both or neither"),
    # a kept file is a hardlink of one that is not kept
    (tree(d(b"srv"), f(b"srv/a", b"db")),
     tree(d(b"srv"), f(b"srv/a", b"db"), d(b"srv/data"), f(b"srv/data/db", b"db", link=b"srv/a")),
     frozenset(), "srv/data/db, a kept path, is a hardlink of srv/a, which is not kept: keep both "
     "or neither"),
    # a tree's file shares its inode with a file at a kept path (kept_links)
    (tree(d(b"srv"), f(b"srv/a", b"db", ino=77)), tree(d(b"srv"), d(b"srv/data")), frozenset({77}),
     "srv/a in the tree is a hardlink of a file at a kept path: keep both or neither"),
])
def test_chain_kept_refuses_what_would_not_make_a_tree(scanned, chain, kept_links, message):
    with pytest.raises(NotATree) as caught:
        list(chain_kept(iter(scanned), iter(chain), Matcher(["/srv/data"]), "the tree", kept_links))
    assert (caught.value.exit_code, caught.value.message) == (2, message)


def test_linked_inodes_are_those_of_files_with_other_links(tmp_path, root_fd):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "one").write_bytes(b"1")
    (tmp_path / "k" / "two").write_bytes(b"2")
    os.link(tmp_path / "k" / "two", tmp_path / "outside")
    assert keep.linked_inodes(root_fd, {b"k"}) == {os.stat(tmp_path / "outside").st_ino}


def test_a_given_pattern_that_keeps_nothing_is_said_once(tmp_path, root_fd):
    _target(tmp_path)
    fstype = mount_of(os.fstat(root_fd).st_dev).get("fstype")
    results = {}
    for windows in (False, True):
        warnings = []
        kept, patterns = _kept(root_fd, os.fsencode(tmp_path), [b"/home", b"/nothing", b"/HOME"],
                               warnings.append, windows)
        results[windows] = (sorted(kept.paths), patterns, warnings)
    target = str(tmp_path)
    defaults = keep.defaults_for(fstype)
    lost = [b"lost+found"] if defaults else []
    assert results == {
        False: (sorted([b"home", *lost]), ["/home", "/nothing", "/HOME", *defaults],
                [f"--keep '/nothing' matches nothing in {target}: it keeps nothing",
                 f"--keep '/HOME' matches nothing in {target}: it keeps nothing"]),
        True: (sorted([b"home", *lost]), ["/home", "/nothing", "/HOME", *defaults],
               [f"--keep '/nothing' matches nothing in {target} (in any case): it keeps nothing"]),
    }

