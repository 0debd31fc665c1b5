"""Property test of the whole chain: for a random tree A and random edits that make tree B,
a base image of A and a diff of B restore B exactly, from an empty folder, onto A (apply) and
onto A used (restore)."""

import os
import subprocess

import pytest
from hypothesis import given
from snapshot import assert_same_tree, snapshot
from strategies import EDITS, edit, trees
from treebuild import build

from diffimg.make.packer import PackOptions, create, diff
from diffimg.restore.restore import apply, restore


def _copy(src, dst):
    subprocess.run(["cp", "-a", src, dst], check=True)
    return os.fsencode(dst)


@pytest.mark.root
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
