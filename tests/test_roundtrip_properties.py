"""Property test of the whole chain: for a random tree A and random edits that make tree B,
a base image of A and a diff of B restore B exactly, from an empty folder, onto A (apply) and
onto A used (restore)."""

import os
import shutil
import subprocess

from conftest import needs_root
from hypothesis import given
from hypothesis import strategies as st
from snapshot import assert_same_tree, snapshot
from test_properties import trees
from treebuild import build

from diffimg.make.packer import PackOptions, create, diff
from diffimg.restore.restore import apply, restore

EDITS = st.lists(st.tuples(
    st.sampled_from(["rewrite", "append", "chmod", "touch", "delete", "move", "copy", "link",
                     "to-dir", "to-file", "symlink", "new"]),
    st.integers(0, 1000), st.binary(max_size=50)), min_size=1, max_size=6)


def _all(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out += [os.path.join(dirpath, n) for n in sorted(dirnames) + sorted(filenames)]
    return out


def edit(root, edits):
    """Apply random edits to the tree at root (skipping those that do not fit)."""
    for n, (what, pick, data) in enumerate(edits):
        paths = _all(root)
        if not paths:
            what = "new"
        path = paths[pick % len(paths)] if paths else None
        is_file = path is not None and os.path.isfile(path) and not os.path.islink(path)
        is_dir = path is not None and os.path.isdir(path) and not os.path.islink(path)
        if what in ("rewrite", "append") and is_file:
            with open(path, "wb" if what == "rewrite" else "ab") as f:
                f.write(data)
        elif what == "chmod" and not os.path.islink(path):
            os.chmod(path, 0o640 if is_file else 0o750)
        elif what == "touch":
            os.utime(path, ns=(0, 10**18 + n), follow_symlinks=False)
        elif what == "delete":
            shutil.rmtree(path) if is_dir else os.unlink(path)
        elif what == "move":
            os.rename(path, os.path.join(root, b"moved-%d" % n))
        elif what == "copy" and is_file:
            shutil.copy2(path, os.path.join(root, b"copy-%d" % n))
        elif what == "link" and is_file:
            os.link(path, os.path.join(root, b"link-%d" % n))
        elif what == "to-dir" and is_file:
            os.unlink(path)
            os.mkdir(path)
        elif what == "to-file" and is_dir:
            shutil.rmtree(path)
            with open(path, "wb") as f:
                f.write(data)
        elif what == "symlink":
            os.symlink(data.replace(b"\0", b"") or b"x", os.path.join(root, b"sym-%d" % n))
        else:
            with open(os.path.join(root, b"new-%d" % n), "wb") as f:
                f.write(data * 100)


def _copy(src, dst):
    subprocess.run(["cp", "-a", src, dst], check=True)
    return os.fsencode(dst)


@needs_root
@given(spec=trees(), edits=EDITS)
def test_base_and_diff_restore_the_edited_tree_exactly(tmp_path_factory, spec, edits):
    work = tmp_path_factory.mktemp("rt")
    a = build(work / "a", spec)
    b = _copy(a, work / "b")
    edit(b, edits)
    opts = PackOptions(fmt="dir", checksum=True)
    create(a, work / "base", opts)
    if diff(b, [work / "base"], work / "diff", PackOptions(fmt="dir", checksum=True)) is None:
        return                                          # the edits cancelled out
    expected = snapshot(b)
    empty = work / "empty"
    empty.mkdir()
    restore([work / "base", work / "diff"], empty, checksum=True)
    assert_same_tree(snapshot(empty), expected)
    onto_a = _copy(a, work / "onto-a")
    apply(work / "diff", onto_a)
    assert_same_tree(snapshot(onto_a), expected)
    used = _copy(a, work / "used")
    edit(used, list(reversed(edits)))                    # a different history of changes
    restore([work / "base", work / "diff"], used, checksum=True, yes=True)
    assert_same_tree(snapshot(used), expected)
