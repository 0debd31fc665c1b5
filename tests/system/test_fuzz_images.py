"""Issue 9: images from anyone. Hypothesis mutates one field of a manifest record, a delta record
(or the entry records inside it), the info or the index of real dir-format images, recomputing
every digest, count and tree ID as an attacker would, then verifies and restores the chain into a
used target beside a sentinel folder. Each run ends in a DiffimgError (a one-line error with its
code) or in a target equal to the crafted tree; never another exception, never a change outside
the target."""

import os
import shutil

import pytest
from crafted import blobs_of, manifest_blob, records_of, write_meta
from hypothesis import event, example, given
from hypothesis import strategies as st
from snapshot import snapshot
from treebuild import build

from diffimg import codec
from diffimg.errors import DiffimgError
from diffimg.image.format import Image
from diffimg.image.verify import verify_chain
from diffimg.restore.restore import restore
from diffimg.scan.scanner import scan
from diffimg.tree.compare import compare

pytestmark = pytest.mark.root("crafted owners and devices are restored")

HOSTILE = [None, True, 0, -1, 1, 7, 8, 0o7777 + 1, 2**32, 2**40, 2**63, 2**64 - 1, -2**63, 1.5,
           b"", b"x", b"../outside/victim", b"/etc/passwd", b"a/../../x", b".diffimg/x", b"a\0b",
           b"\0" * 16, b"\xff" * 17, "text", [], [1, 2], {}, {b"": b""}, {b"user.a\0": b"v"},
           {b"user.b": b"1", b"user.a": b"2"}, b"f", b"sub", b"sub/g", b"l"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A base and a diff (dir format) of a small tree with every kind the fuzz should reach."""
    top = tmp_path_factory.mktemp("fuzz")
    tree = build(top / "tree", [
        {"path": b"", "kind": "dir"},
        {"path": b"f", "kind": "file", "data": b"file content"},
        {"path": b"h", "kind": "link", "to": b"f"},
        {"path": b"l", "kind": "symlink", "target": b"f"},
        {"path": b"p", "kind": "fifo"},
        {"path": b"sub", "kind": "dir"},
        {"path": b"sub/g", "kind": "file", "data": b"g" * 5000, "xattrs": {b"user.k": b"v"}},
    ])
    _cli("create", tree, top / "base", "--format", "dir")
    with open(os.path.join(tree, b"f"), "ab") as f:
        f.write(b" changed")
    os.rename(os.path.join(tree, b"sub/g"), os.path.join(tree, b"moved"))
    os.symlink(b"moved", os.path.join(tree, b"l2"))
    _cli("diff", tree, top / "base", "-o", top / "diff", "--format", "dir")
    return top


def _cli(*args):
    from conftest import run_cli
    run_cli(*args, "-q", check_rc=0)


def _set(container, position: int, value):
    """container[position % len] = value (lists), or a key picked by position (maps)."""
    if type(container) is dict:
        keys = sorted(container, key=repr)
        container[keys[position % len(keys)]] = value
    elif type(container) is list and container:
        container[position % len(container)] = value


MUTATIONS = st.tuples(st.sampled_from(["manifest", "diff-manifest", "delta", "delta-entry", "info",
                                       "index"]),
                      st.integers(0, 50), st.integers(0, 50), st.sampled_from(HOSTILE))


@given(MUTATIONS)
@example(mutation=("manifest", 1, 45, (1 << 64) - 1))   # a size whose sum msgpack cannot hold
@example(mutation=("manifest", 0, 44, -(1 << 63)))       # a time before what ext4 can hold
@example(mutation=("manifest", 3, 28, 0))                # a symlink of mode 0
@example(mutation=("manifest", 6, 6, 0))                 # a file of size 0 with content's digest
def test_a_crafted_image_gives_an_error_or_its_own_tree_and_never_writes_outside(chain, mutation):
    blob_name, which, field, value = mutation
    work = chain / "work"
    if os.path.lexists(work):
        shutil.rmtree(work)
    work.mkdir()
    for name in ("base", "diff"):
        shutil.copytree(chain / name, work / name, symlinks=True)
    base, diff = Image(work / "base"), Image(work / "diff")
    crafted = base if blob_name == "manifest" else diff
    blobs = blobs_of(crafted)
    info = codec.unpack(blobs["info"])
    index_change = None
    images = [work / "base", work / "diff"]
    if blob_name in ("manifest", "diff-manifest"):
        header, records = records_of(blobs["manifest"])
        _set(records[which % len(records)], field, value)
        blobs["manifest"], info["tree_id"] = manifest_blob(header, records)
        if blob_name == "manifest":
            images = [work / "base"]      # the crafted tree is the final one
    elif blob_name.startswith("delta"):
        records = list(codec.iter_compressed_array(blobs["delta"], 1 << 20))
        record = records[which % len(records)]
        if blob_name == "delta-entry" and type(record[6 if field % 2 else 5]) is list:
            record = record[6 if field % 2 else 5]
        _set(record, field, value)
        blobs["delta"] = codec.pack_compressed(records)
    elif blob_name == "info":
        _set(info, field, value)
    else:
        index_change = lambda index: _set(index, which, value) if field % 2 else \
            _set(index["container"], which, value)  # noqa: E731
    blobs["info"] = codec.pack(info)
    write_meta(crafted.meta_path, blobs, crafted.container, index_change)

    target = work / "target"
    target.mkdir()
    (target / "old").write_bytes(b"old")
    (work / "outside").mkdir()
    (work / "outside" / "victim").write_bytes(b"must stay")
    before = snapshot(work / "outside")
    try:
        verify_chain(images)
    except DiffimgError:
        pass
    try:
        restore(images, target)
    except DiffimgError as exc:
        restored = False
        event(f"{blob_name}: {type(exc).__name__}")
    else:
        restored = True
        event(f"{blob_name}: restored")
    assert snapshot(work / "outside") == before
    assert sorted(os.listdir(work)) == ["base", "diff", "outside", "target"]
    if restored:            # a valid image, only another tree: the target is that tree
        wanted = Image(images[-1]).entries()
        assert not list(compare(wanted, scan(target)))
