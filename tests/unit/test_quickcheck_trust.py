"""Which recorded digests a scan may trust instead of hashing (target/quickcheck.py): with
--trust-mtime, size and mtime alone; else only with a stat proof taken on the very filesystem
scanned, from the compared manifest's stat section or from the tree's own state when diffimg
last made that very tree; otherwise every file is hashed, and that is said. Real trees in
tmp_path, manifests written by tree.manifest, states by target.state."""

import os
import time

import pytest

from diffimg.entry import Hint, Kind
from diffimg.image.containers import dirfmt
from diffimg.image.format import Image, append_metadata
from diffimg.scan.scanner import scan
from diffimg.target import state as st
from diffimg.target.quickcheck import tree_hints
from diffimg.target.state import State
from diffimg.tree import statcache
from diffimg.tree.manifest import ManifestReader, write_manifest

T = 1_600_000_000_000_000_000
OTHER_FS = {"fsid": 1, "dev": 2, "source": "/dev/elsewhere"}
WARNING = ": no stat cache of this filesystem: hashing every file (--trust-mtime trusts size and mtime, " \
          "for copies)"


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    for name, data in [("a", b"alpha"), ("sub/b", b"beta"), ("sub/empty", b"")]:
        (root / name).write_bytes(data)
    os.symlink("a", root / "link")
    for path in [root / "a", root / "sub" / "b", root / "sub" / "empty", root / "sub", root]:
        os.utime(path, ns=(T, T))
    time.sleep(0.05)               # the files' ctimes lie before the stat sections' bound
    return root


def manifest(tmp_path, tree, filesystem="here", name="m"):
    """The tree's manifest, with a stat section taken on filesystem ("here": the tree's own; None:
    no section). Its entries, and a function opening a reader of it."""
    entries = list(scan(tree))
    stats = None
    if filesystem is not None:
        fs = statcache.identity(os.fsencode(tree)) if filesystem == "here" else filesystem
        stats = statcache.StatRecorder(fs, time.time_ns())
    path = tmp_path / name
    trailer = write_manifest(path, entries, stats=stats)
    return entries, trailer["tree_id"], lambda: ManifestReader(path)


def restored(tmp_path, tree, entries, tree_id):
    """The tree's state as a restore of it leaves it: complete, with a stat row per entry."""
    path = tmp_path / "image.manifest"
    write_manifest(path, entries)
    folder = tmp_path / "image"
    folder.mkdir()
    files = [e for e in entries if e.kind is Kind.FILE]
    info = {"kind": "full", "tree_id": tree_id, "entries": len(entries), "files": len(files),
            "bytes": sum(e.size for e in files), "stored_files": 0, "stored_bytes": 0,
            "format": "dir", "source": {}, "created_ns": 0}
    with open(folder / os.fsdecode(dirfmt.META), "wb") as f:
        append_metadata(f, {"format": "dir", "length": 0}, path, None, info)
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st.finish(fd, State(False, None, command="restore"), Image(folder), None,
                  lambda index, e, s: True)
    finally:
        os.close(fd)


def expected(entries, proofs: bool):
    return [Hint(e.path, e.size, e.mtime_ns, e.digest, e.sparse,
                 *((e.ino, e.ctime_ns) if proofs else (None, None)))
            for e in entries if e.kind is Kind.FILE]


def hints_of(tree, open_reader, tree_id, trust_mtime=False):
    warnings = []
    hints, trusted = tree_hints(os.fsencode(tree), open_reader, tree_id, trust_mtime, warnings.append)
    return (None if hints is None else list(hints)), trusted, warnings


def test_trust_mtime_takes_size_and_mtime_alone(tmp_path, tree):
    results = []
    for name, filesystem in [("here", "here"), ("elsewhere", OTHER_FS), ("none", None)]:
        entries, tree_id, open_reader = manifest(tmp_path, tree, filesystem, name=name)
        results.append(hints_of(tree, open_reader, None, trust_mtime=True))
    assert results == [(expected(entries, False), True, [])] * 3


def test_a_stat_section_of_this_filesystem_is_trusted(tmp_path, tree):
    entries, tree_id, open_reader = manifest(tmp_path, tree)
    assert (hints_of(tree, open_reader, None), all(e.ino for e in entries)) == (
        (expected(entries, True), False, []), True)


def test_without_a_proof_of_this_filesystem_every_file_is_hashed(tmp_path, tree):
    said = [f"{tree}{WARNING}"]
    results = {}
    for name, filesystem in [("no section", None), ("another filesystem", OTHER_FS)]:
        entries, tree_id, open_reader = manifest(tmp_path, tree, filesystem, name=name)
        results[name] = hints_of(tree, open_reader, None)
    assert results == {"no section": (None, False, said), "another filesystem": (None, False, said)}


def test_the_trees_own_state_proves_its_files_when_it_is_of_the_same_tree(tmp_path, tree):
    entries, tree_id, open_reader = manifest(tmp_path, tree, OTHER_FS)
    restored(tmp_path, tree, entries, tree_id)
    _, _, without_section = manifest(tmp_path, tree, None, name="bare")
    said = [f"{tree}{WARNING}"]
    assert {
        # the section names the tree ID; the state is of that tree
        "section of another filesystem": hints_of(tree, open_reader, None),
        # no section: the tree ID given (an image's)
        "tree ID given": hints_of(tree, without_section, tree_id),
        "no tree ID": hints_of(tree, without_section, None),
        "another tree ID": hints_of(tree, open_reader, bytes(16)),
    } == {"section of another filesystem": (expected(entries, True), False, []),
          "tree ID given": (expected(entries, True), False, []),
          "no tree ID": (None, False, said),
          "another tree ID": (None, False, said)}


def test_a_state_that_is_not_usable_proves_nothing(tmp_path, tree):
    entries, tree_id, open_reader = manifest(tmp_path, tree, OTHER_FS)
    restored(tmp_path, tree, entries, tree_id)
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st.begin(fd, State(False, None, command="apply"))       # a run that did not finish
    finally:
        os.close(fd)
    unfinished = hints_of(tree, open_reader, None)
    (tree / ".diffimg" / "state.json").write_bytes(b"{damaged")
    damaged = hints_of(tree, open_reader, tree_id)
    said = [f"{tree}{WARNING}"]
    assert (unfinished, damaged) == ((None, False, said), (None, False, said))


def test_no_warning_is_needed_to_say_it(tmp_path, tree):
    entries, tree_id, open_reader = manifest(tmp_path, tree, None)
    assert tree_hints(os.fsencode(tree), open_reader, None, False) == (None, False)
