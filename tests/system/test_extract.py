"""extract and cat: files and folders of a 3-layer chain's tree taken out without restoring the
rest give exactly what restore gives (the independent snapshot); nothing in the destination is
ever replaced, and damaged content is never passed on as good."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_one_line_error, run_cli
from leftovers import diffimg_mounts
from snapshot import assert_same_tree, snapshot
from treebuild import change_everything


def _chain(tree, tmp_path):
    """base, d1, d2 of the every-kind tree changed twice; and a restore of the three."""
    run_cli("create", tree, tmp_path / "base", "-q", check_rc=0)
    change_everything(tree)
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d1", "-q", check_rc=0)
    with open(os.path.join(tree, b"Program Files/cap-bin"), "ab") as f:
        f.write(b" patched again")
    os.chmod(os.path.join(tree, b"names/a"), 0o700)
    run_cli("diff", tree, tmp_path / "base", tmp_path / "d1", "-o", tmp_path / "d2", "-q",
            check_rc=0)
    chain = [tmp_path / "base", tmp_path / "d1", tmp_path / "d2"]
    restored = tmp_path / "restored"
    restored.mkdir()
    run_cli("restore", *chain, restored, "-q", check_rc=0)
    assert_same_tree(snapshot(restored), snapshot(tree))
    return chain, snapshot(restored)


def _part(snap: dict, paths) -> dict:
    """The snapshot's entries at, below or above the paths (the root left out: DEST's own)."""
    def kept(rel: bytes) -> bool:
        return any(rel == p or rel.startswith(p + b"/") or p.startswith(rel + b"/") for p in paths)
    return {rel: rec for rel, rec in snap.items() if rel and kept(rel)}


@pytest.mark.root
def test_extract_and_cat_give_what_restore_gives(rich_tree, tmp_path):
    chain, restored = _chain(rich_tree, tmp_path)
    # paths whose hardlinks all come along, a folder deep in the tree, single files
    paths = [b"Program Files", b"links", b"names/a", b"new/deep/two", b"sparse.img", b"xattrs"]
    dest = tmp_path / "dest"
    proc = run_cli("extract", *chain, *paths, "-o", dest, check_rc=0)
    assert b"extracted:" in proc.stderr
    got = snapshot(dest)
    got.pop(b"")
    assert_same_tree(got, _part(restored, paths))
    # the whole tree: all of it but the root's own metadata
    whole = tmp_path / "whole"
    run_cli("extract", *chain, "/", "-o", whole, "-q", check_rc=0)
    got = snapshot(whole)
    got.pop(b"")
    assert_same_tree(got, {rel: rec for rel, rec in restored.items() if rel})
    # a hardlink member whose group's first member stays behind is a copy of its own
    alone = tmp_path / "alone"
    run_cli("extract", *chain, "links/hard-top", "-o", alone, "-q", check_rc=0)
    with open(alone / "links" / "hard-top", "rb") as f, \
            open(tmp_path / "restored" / "links" / "hard-top", "rb") as g:
        assert f.read() == g.read()
    assert os.stat(alone / "links" / "hard-top").st_nlink == 1
    for rel in (b"Program Files/app.exe", b"Program Files/cap-bin", b"new/one", b"sparse.img"):
        out = run_cli("cat", *chain, rel, check_rc=0).stdout
        with open(os.path.join(tmp_path / "restored", os.fsdecode(rel)), "rb") as f:
            assert out == f.read(), rel


@pytest.mark.root
def test_extract_never_replaces_and_refuses_what_the_tree_lacks(rich_tree, tmp_path):
    run_cli("create", rich_tree, tmp_path / "base", "-q", check_rc=0)
    dest = tmp_path / "dest"
    (dest / "links").mkdir(parents=True)
    (dest / "links" / "rel").write_bytes(b"mine")
    (dest / "other").write_bytes(b"mine too")
    line = assert_one_line_error(run_cli("extract", tmp_path / "base", "links/rel", "-o", dest), 7)
    assert "already exists" in line
    assert (dest / "links" / "rel").read_bytes() == b"mine"
    # beside what DEST holds: nothing of it changes, its folder is used as it is
    run_cli("extract", tmp_path / "base", "links/abs", "-o", dest, "-q", check_rc=0)
    assert os.readlink(dest / "links" / "abs") == "/etc/passwd"
    assert (dest / "other").read_bytes() == b"mine too" and (dest / "links" / "rel").exists()
    (dest / "names").write_bytes(b"a file where the tree has a folder")
    assert_one_line_error(run_cli("extract", tmp_path / "base", "names/a", "-o", dest), 7)
    for bad in ("no/such", "../etc", "names/../.."):
        assert_one_line_error(run_cli("extract", tmp_path / "base", bad, "-o", dest), 3)
    assert_one_line_error(run_cli("cat", tmp_path / "base", "links"), 3)      # a folder
    assert_one_line_error(run_cli("cat", tmp_path / "base", "links/rel"), 3)  # a symlink
    # a bad chain (a full image given as its diff) is refused before DEST is made
    assert_one_line_error(run_cli("extract", tmp_path / "base", tmp_path / "base", "links/rel",
                                  "-o", tmp_path / "new-dest"), 9)
    assert not os.path.lexists(tmp_path / "new-dest")


def test_cat_of_damaged_content_says_so(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    data = os.urandom(300_000)
    (tree / "f").write_bytes(data)
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    with open(tmp_path / "img" / "tree" / "f", "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 10)
    proc = run_cli("cat", tmp_path / "img", "f")
    assert proc.returncode == 8 and b"does not match its digest" in proc.stderr
    dest = tmp_path / "dest"
    line = assert_one_line_error(run_cli("extract", tmp_path / "img", "f", "-o", dest), 8)
    assert "f" in line and not (dest / "f").exists()


@pytest.mark.root
def test_mount_shows_what_restore_gives_and_umount_leaves_nothing(rich_tree, tmp_path):
    chain, restored = _chain(rich_tree, tmp_path)
    point = tmp_path / "point"
    point.mkdir()
    before = diffimg_mounts()
    run_cli("mount", *chain, point, check_rc=0)
    try:
        assert_same_tree(snapshot(point), restored)
        with open(point / "names" / "a" / "b", "rb") as f:
            assert f.read() == (tmp_path / "restored" / "names" / "a" / "b").read_bytes()
        for write in (lambda: os.close(os.open(point / "xattrs", os.O_RDWR)),
                      lambda: (point / "new-file").write_bytes(b"x"),
                      lambda: os.setxattr(point / "xattrs", "user.x", b"1")):
            try:
                write()
                raise AssertionError("a write went through")
            except OSError as exc:
                assert exc.errno in (30, 13, 1)      # EROFS, EACCES, EPERM: read-only
    finally:
        run_cli("umount", point, check_rc=0)
    assert diffimg_mounts() == before               # the tree and every layer's container
    assert os.listdir(point) == []


@pytest.mark.root
def test_mount_refuses_damaged_content_and_bad_input_leaving_nothing(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "good").write_bytes(b"fine")
    (tree / "bad").write_bytes(os.urandom(100_000))
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    with open(tmp_path / "img" / "tree" / "bad", "r+b") as f:
        byte = f.read(1)[0]
        f.seek(0)
        f.write(bytes([byte ^ 1]))
    point = tmp_path / "point"
    point.mkdir()
    before = diffimg_mounts()
    run_cli("mount", tmp_path / "img", point, check_rc=0)
    try:
        assert (point / "good").read_bytes() == b"fine"
        try:
            (point / "bad").read_bytes()
            raise AssertionError("damaged content was read")
        except OSError as exc:
            assert exc.errno == 5                    # EIO
    finally:
        run_cli("umount", point, check_rc=0)
    assert diffimg_mounts() == before
    assert_one_line_error(run_cli("mount", tmp_path / "img", tmp_path / "nowhere"), 3)
    assert_one_line_error(run_cli("umount", point), 3)       # not a diffimg mount
    # Ctrl-C of a mount served in the foreground undoes everything
    proc = subprocess.Popen([sys.executable, "-m", "diffimg", "mount", "--foreground",
                             str(tmp_path / "img"), str(point)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not any(str(point) in line for line in diffimg_mounts()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130, proc.stderr.read()
    assert diffimg_mounts() == before


@pytest.mark.root
def test_a_mount_point_inside_an_image_is_refused_and_one_over_it_serves(tmp_path):
    """A mount point inside a layer (a dir-format image's folder, its tree, a folder of it) is
    refused: the server would read that layer through its own mount and wait on itself. One
    over the folder that holds the image serves: the server read what it needs beforehand."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "d").mkdir()
    (tree / "d" / "f").write_bytes(b"content" * 1000)
    holder = tmp_path / "holder"
    holder.mkdir()
    run_cli("create", tree, holder / "img", "--format", "dir", "-q", check_rc=0)
    before = diffimg_mounts()
    for point in (holder / "img" / "tree", holder / "img" / "tree" / "d"):
        proc = run_cli("mount", holder / "img", point, timeout=60)
        assert "inside the image" in assert_one_line_error(proc, 14)
        assert diffimg_mounts() == before
    run_cli("mount", holder / "img", holder, check_rc=0, timeout=60)
    try:
        proc = subprocess.run(["cat", str(holder / "d" / "f")], capture_output=True, timeout=30)
        assert proc.stdout == b"content" * 1000
    finally:
        run_cli("umount", holder, check_rc=0, timeout=60)
    assert diffimg_mounts() == before


@pytest.mark.root
def test_a_mount_serves_only_checked_content_even_when_the_image_is_rewritten(tmp_path):
    """The mount serves a private copy checked when first opened: rewriting the dir image's
    stored file afterwards (its owner can) changes nothing that is read through the mount."""
    tree = tmp_path / "t"
    tree.mkdir()
    good = b"good content " * 5000
    (tree / "f").write_bytes(good)
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run_cli("mount", tmp_path / "img", mnt, check_rc=0, timeout=60)
    try:
        with open(mnt / "f", "rb") as held:
            assert held.read(13) == b"good content "
            stored = tmp_path / "img" / "tree" / "f"
            with open(stored, "r+b") as f:       # rewritten in place, same size
                f.write(b"EVIL" * (len(good) // 4))
            subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
            assert held.read() == good[13:]
        assert (mnt / "f").read_bytes() == good
    finally:
        run_cli("umount", mnt, check_rc=0, timeout=60)


@pytest.mark.root
def test_umount_takes_away_the_mount_on_top_and_waits_for_its_own_server(tmp_path):
    """Two mounts on one folder: umount ends the top one, whose server it waits for (not the
    one below, which goes on serving), then the one below."""
    trees = {}
    for name in ("one", "two"):
        tree = trees[name] = tmp_path / name
        tree.mkdir()
        (tree / "which").write_bytes(name.encode())
        run_cli("create", tree, tmp_path / f"{name}.img", "--format", "dir", "-q", check_rc=0)
    point = tmp_path / "point"
    point.mkdir()
    before = diffimg_mounts()
    run_cli("mount", tmp_path / "one.img", point, check_rc=0, timeout=60)
    run_cli("mount", tmp_path / "two.img", point, check_rc=0, timeout=60)
    try:
        assert (point / "which").read_bytes() == b"two"
        started = time.monotonic()
        proc = run_cli("umount", point, check_rc=0, timeout=120)
        assert b"has not ended" not in proc.stderr and time.monotonic() - started < 30, proc.stderr
        assert (point / "which").read_bytes() == b"one"
    finally:
        run_cli("umount", point, check_rc=0, timeout=120)
    assert diffimg_mounts() == before


def test_a_path_the_tree_lacks_makes_no_destination(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "there").write_bytes(b"x")
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    for path in ("not-there", ".."):
        proc = run_cli("extract", tmp_path / "img", path, "-o", tmp_path / "dest")
        assert_one_line_error(proc, 3)
        assert not (tmp_path / "dest").exists()
    run_cli("extract", tmp_path / "img", "there", "-o", tmp_path / "dest", "-q", check_rc=0)
    assert (tmp_path / "dest" / "there").read_bytes() == b"x"
