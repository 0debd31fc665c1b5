"""Property tests: for random trees and random single changes, the tree ID and compare agree
with what really happened."""

import os
import shutil
import subprocess

import pytest
from entries import manifest_view
from hypothesis import given
from hypothesis import strategies as st
from snapshot import snapshot
from strategies import trees

from diffimg.scan.scanner import scan
from diffimg.tree.compare import compare
from diffimg.tree.manifest import TreeId


def tree_id(root):
    ids = TreeId()
    for entry in scan(root, checksum=True):
        ids.add(entry)
    return ids.digest()


def change_one(root, choice, data):
    """Make one change of the given kind somewhere in the tree; return a description."""
    entries = [e for e in sorted(os.listdir(root))]
    if choice == "add" or not entries:
        with open(os.path.join(root, b"\xffnew"), "wb") as f:
            f.write(data)
        return "add"
    target = os.path.join(root, entries[0])
    if choice == "delete":
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    elif choice == "chmod":
        if os.path.islink(target):
            os.unlink(target)
        else:
            os.chmod(target, os.lstat(target).st_mode & 0o7777 ^ 0o010)
    elif choice == "touch":
        st_ = os.lstat(target)
        os.utime(target, ns=(0, st_.st_mtime_ns + 1), follow_symlinks=False)
    elif choice == "xattr":
        os.setxattr(target, b"trusted.p", data or b"v", follow_symlinks=False)
    return choice


@pytest.mark.root("random folder modes such as 0644: only root reads into them")
@given(spec=trees(), choice=st.sampled_from(["add", "delete", "chmod", "touch", "xattr"]),
       data=st.binary(max_size=20))
def test_any_change_changes_the_tree_id_and_compare_reports_it(tmp_path_factory, spec, choice, data):
    from treebuild import build
    if os.geteuid() != 0 and choice == "xattr":
        choice = "touch"
    root = build(tmp_path_factory.mktemp("t") / "tree", spec)
    before = list(scan(root, checksum=True))
    assert manifest_view(before) == snapshot(root)
    copy = os.fsencode(tmp_path_factory.mktemp("c")) + b"/copy"
    subprocess.run(["cp", "-a", root, copy], check=True)
    assert tree_id(copy) == tree_id(root)          # same tree elsewhere, same ID
    change_one(root, choice, data)
    after = list(scan(root, checksum=True))
    assert manifest_view(after) == snapshot(root)
    assert tree_id(root) != tree_id(copy)
    assert list(compare(iter(before), iter(after)))
