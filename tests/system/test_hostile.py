"""Issue 9: images crafted by anyone (every digest and tree ID recomputed) never reach outside
the target. Real images, the real CLI."""

import os

import pytest
from conftest import machine_at_base, run_cli
from treebuild import build

from diffimg.image.format import Image, append_metadata
from diffimg.tree.delta import LINK
from diffimg.tree.manifest import read_entries, write_manifest


def _recrafted(image_path, scratch, entries=None, changes=None):
    """Give the dir-format image other manifest entries and/or delta records, every digest and
    the tree ID recomputed, as an attacker would."""
    image = Image(image_path)
    manifest = os.path.join(scratch, "crafted-manifest")
    trailer = write_manifest(manifest, entries if entries is not None else list(image.entries()))
    info = dict(image.info, tree_id=trailer["tree_id"])
    changes = changes if changes is not None else image.delta()    # read before rewriting
    with open(image.meta_path, "wb") as f:
        append_metadata(f, image.container, manifest, changes, info)


def _base(tree, tmp_path):
    """A dir-format full image of tree at tmp_path/base."""
    run_cli("create", tree, tmp_path / "base", "--format", "dir", "-q", check_rc=0)


def _diff(tree, tmp_path):
    """A dir-format diff of tree on tmp_path/base at tmp_path/d1."""
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d1", "--format", "dir", "-q",
            check_rc=0)


def _restored(tmp_path, **kw):
    """Restore tmp_path/img into a new empty folder: (the CLI's answer, the folder)."""
    target = tmp_path / "target"
    target.mkdir()
    return run_cli("restore", tmp_path / "img", target, **kw), target


def _victim(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"secret")
    os.chmod(outside / "victim", 0o600)
    return outside / "victim"


def test_a_hardlink_to_outside_the_target_is_refused(tmp_path):
    victim = _victim(tmp_path)
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"z", "kind": "file", "data": b"secret"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    entries = list(Image(tmp_path / "img").entries())
    entries[1].link = b"../outside/victim"            # sorts before "z": an "earlier" path
    _recrafted(tmp_path / "img", tmp_path, entries=entries)
    proc, target = _restored(tmp_path)
    assert proc.returncode == 8 and b"hardlink" in proc.stderr, proc
    assert os.stat(victim).st_nlink == 1 and not os.path.lexists(target / "z")
    assert run_cli("verify", tmp_path / "img").returncode != 0


def test_a_delta_link_record_must_link_to_its_source(tmp_path):
    victim = _victim(tmp_path)
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"secret"}])
    _base(tree, tmp_path)
    target = machine_at_base(tmp_path)
    os.link(os.path.join(tree, b"a"), os.path.join(tree, b"b"))
    _diff(tree, tmp_path)
    changes = Image(tmp_path / "d1").delta()
    linked = [c for c in changes if c.action == LINK]
    assert linked
    linked[0].after.link = b"../outside/victim"       # the source stays "a": only it was checked
    _recrafted(tmp_path / "d1", tmp_path, changes=changes)
    proc = run_cli("apply", tmp_path / "d1", target)
    assert proc.returncode == 8 and b"corrupt" in proc.stderr, proc
    assert os.stat(victim).st_nlink == 1


def test_metadata_never_follows_a_symlink_swapped_in_for_the_entry(tmp_path):
    """Between the scan and the metadata step a FIFO (or a file) becomes a symlink to a file
    outside: setting the entry's metadata refuses, and the outside file keeps its mode."""
    import errno

    import pytest

    from diffimg.entry import Entry, Kind
    from diffimg.system.safefs import set_meta_at
    victim = _victim(tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(victim, target / "fifo")
    os.symlink(victim, target / "file")
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name, kind in ((b"fifo", Kind.FIFO), (b"file", Kind.FILE)):
            with pytest.raises(OSError) as caught:
                set_meta_at(fd, name, Entry(name, kind, 0o6777, os.getuid(), os.getgid(), 10**18))
            assert caught.value.errno == errno.ESTALE
    finally:
        os.close(fd)
    st = os.stat(victim)
    assert (st.st_mode & 0o7777, st.st_nlink) == (0o600, 1) and st.st_mtime_ns != 10**18


def _image_with_file(tmp_path, path: bytes, data: bytes):
    spec = [{"path": b"", "kind": "dir"}]
    if b"/" in path:
        spec.append({"path": path.rpartition(b"/")[0], "kind": "dir"})
    tree = build(tmp_path / "t", spec + [{"path": path, "kind": "file", "data": data}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    return tmp_path / "img" / "tree"


def test_a_container_symlink_is_never_followed_for_content(tmp_path):
    """The container holds x -> /dev where the manifest has the file x/zero: the restore reads
    nothing through it (it used to read /dev/zero until the target was full)."""
    container = _image_with_file(tmp_path, b"x/zero", b"abc")
    os.unlink(container / "x" / "zero")
    os.rmdir(container / "x")
    os.symlink("/dev", container / "x")
    proc, target = _restored(tmp_path, timeout=60)
    assert proc.returncode == 8 and b"x/zero" in proc.stderr, proc
    assert not os.path.lexists(target / "x" / "zero")


def test_a_container_file_longer_than_recorded_is_not_read_to_its_end(tmp_path):
    container = _image_with_file(tmp_path, b"f", b"abc")
    with open(container / "f", "r+b") as f:
        f.truncate(1 << 40)                       # a 1 TiB sparse file where 3 bytes are recorded
    proc, target = _restored(tmp_path, timeout=60)
    assert proc.returncode == 8 and b"does not match" in proc.stderr, proc
    assert not os.path.lexists(target / "f")


def test_a_target_sharing_inodes_with_outside_files_leaves_them_alone(tmp_path):
    """The target is a hardlink clone (cp -al) of a golden tree: restore gives the target its
    new metadata on fresh inodes and never changes the golden tree's files."""
    from snapshot import assert_same_tree, snapshot
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"secret", "kind": "file", "data": b"s", "mode": 0o600},
                                  {"path": b"fifo", "kind": "fifo", "mode": 0o600},
                                  {"path": b"same", "kind": "file", "data": b"x"}])
    golden = tmp_path / "golden"
    import subprocess
    subprocess.run(["cp", "-a", tree, golden], check=True)
    _base(tree, tmp_path)
    os.chmod(os.path.join(tree, b"secret"), 0o644)
    os.chmod(os.path.join(tree, b"fifo"), 0o666)
    _diff(tree, tmp_path)
    before = snapshot(golden)
    target = tmp_path / "target"
    subprocess.run(["cp", "-al", golden, target], check=True)
    run_cli("restore", "-q", tmp_path / "base", tmp_path / "d1", target, check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))
    after = snapshot(golden)
    for rec in after.values():
        rec.pop("hardlinks", None)
    for rec in before.values():
        rec.pop("hardlinks", None)
    assert after == before


def test_apply_onto_a_hardlink_clone_leaves_the_outside_files_alone(tmp_path):
    import subprocess

    from snapshot import assert_same_tree, snapshot
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"secret", "kind": "file", "data": b"s", "mode": 0o600},
                                  {"path": b"fifo", "kind": "fifo", "mode": 0o600}])
    _base(tree, tmp_path)
    golden = tmp_path / "golden"
    golden.mkdir()
    run_cli("restore", "-q", tmp_path / "base", golden, check_rc=0)
    os.chmod(os.path.join(tree, b"secret"), 0o644)
    os.chmod(os.path.join(tree, b"fifo"), 0o666)
    _diff(tree, tmp_path)
    before = snapshot(golden)
    target = tmp_path / "target"
    subprocess.run(["cp", "-al", golden, target], check=True)
    run_cli("apply", "-q", tmp_path / "d1", target, check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))
    assert snapshot(golden) == before


def test_a_hardlink_whose_first_member_is_of_another_kind_is_refused(tmp_path):
    """A crafted manifest: the file b is a later member of the group whose first member is the
    symlink a (to /etc/passwd): restore refuses rather than make b that symlink."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "symlink", "target": b"/etc/passwd"},
                                  {"path": b"b", "kind": "file", "data": b"x"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    entries = list(Image(tmp_path / "img").entries())
    entries[2].link = b"a"
    _recrafted(tmp_path / "img", tmp_path, entries=entries)
    proc, target = _restored(tmp_path)
    assert proc.returncode == 8 and b"hardlink" in proc.stderr, proc
    assert not os.path.islink(target / "b")


@pytest.mark.root("mknod of a device")
def test_a_device_in_a_container_is_never_read_as_content(tmp_path):
    container = _image_with_file(tmp_path, b"f", b"abc")
    os.unlink(container / "f")
    os.mknod(container / "f", 0o600 | 0o020000, os.makedev(1, 3))     # /dev/null's numbers
    proc, target = _restored(tmp_path, timeout=60)
    assert proc.returncode == 8 and b"not a regular file" in proc.stderr, proc
    assert not os.path.lexists(target / "f")


def test_a_size_the_content_does_not_have_is_caught(tmp_path):
    """Item 6: a record with size 1000 and the digest of 6 real bytes: verify says bad, restore
    writes nothing under the name."""
    _image_with_file(tmp_path, b"f", b"secret")
    entries = list(Image(tmp_path / "img").entries())
    entries[1].size = 1000
    _recrafted(tmp_path / "img", tmp_path, entries=entries)
    proc = run_cli("verify", tmp_path / "img")
    assert proc.returncode == 1 and b"1,000" in proc.stdout + proc.stderr, proc
    proc, target = _restored(tmp_path)
    assert proc.returncode == 8 and b"does not match" in proc.stderr, proc
    assert not os.path.lexists(target / "f")


def test_a_hardlink_must_name_an_earlier_entry_of_its_own_inode(tmp_path):
    """Item 1: a later member's link names an earlier file whose mode differs: the reader
    refuses the manifest (restore and verify), so no member gets another inode's metadata."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"same", "mode": 0o600},
                                  {"path": b"b", "kind": "file", "data": b"same", "mode": 0o644}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    entries = list(Image(tmp_path / "img").entries())
    entries[2].link = b"a"
    _recrafted(tmp_path / "img", tmp_path, entries=entries)
    proc, target = _restored(tmp_path)
    assert proc.returncode == 8 and b"hardlink" in proc.stderr, proc
    assert not os.path.lexists(target / "a")
    assert run_cli("verify", tmp_path / "img").returncode != 0


def test_apply_links_only_to_the_inode_the_record_shares(tmp_path):
    """Item 1 (apply): a link record whose source is an untracked target file with other
    metadata is refused; the untracked file keeps its single link. (The delta no longer
    matches the manifest, which apply now checks first: a bad image, exit 8; parentcheck's
    same-inode check of a link's source stays behind it.)"""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"same"}])
    _base(tree, tmp_path)
    target = machine_at_base(tmp_path)
    (target / "x").write_bytes(b"same")           # a's content, not in the tree
    os.chmod(target / "x", 0o600)
    os.link(os.path.join(tree, b"a"), os.path.join(tree, b"b"))
    _diff(tree, tmp_path)
    changes = Image(tmp_path / "d1").delta()
    linked = [c for c in changes if c.action == LINK][0]
    linked.source = linked.after.link = b"x"
    _recrafted(tmp_path / "d1", tmp_path, changes=changes)
    proc = run_cli("apply", tmp_path / "d1", target)
    assert proc.returncode == 8 and b"not one tree" in proc.stderr, proc
    assert os.stat(target / "x").st_nlink == 1 and not os.path.lexists(target / "b")


def test_restoring_onto_the_folder_that_holds_the_images_refuses(tmp_path):
    """Item 7: the images lie inside the target: restore refuses, changing nothing, unless
    they are kept; apply refuses only when the diff would remove them."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"x"}])
    target = tmp_path / "target"
    (target / "images").mkdir(parents=True)
    run_cli("create", tree, target / "images" / "base", "--format", "dir", "-q", check_rc=0)
    link = tmp_path / "via-symlink"
    os.symlink(target / "images" / "base", link)
    for image in (target / "images" / "base", link):
        proc = run_cli("restore", image, target)
        assert proc.returncode == 14 and b"inside the target" in proc.stderr, proc
        assert sorted(os.listdir(target)) == ["images"]
    run_cli("restore", "-q", link, target, "--keep", "/images", check_rc=0)
    assert sorted(os.listdir(target)) == [".diffimg", "a", "images"]
    assert run_cli("verify", link).returncode == 0


def _mount(kind, source, point):
    import subprocess
    if kind == "bind":
        subprocess.run(["mount", "--bind", source, point], check=True)
    else:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", point], check=True)


def _umount_all(points):
    import subprocess
    for point in reversed(points):
        subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.mark.root("tmpfs and bind mounts")
def test_a_restore_never_deletes_or_replaces_across_a_mount_point(tmp_path):
    """Item 2: a tmpfs where the chain has a file, a tmpfs below a folder the chain lacks, and a
    bind mount of the same filesystem where the chain has a folder: all are left as they are,
    with what is mounted there, each named in a warning; the rest of the target is restored."""
    from snapshot import snapshot
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"efi", "kind": "file", "data": b"chain's"},
                                  {"path": b"bound", "kind": "dir"},
                                  {"path": b"bound/chain-file", "kind": "file", "data": b"c"},
                                  {"path": b"z", "kind": "file", "data": b"z"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    elsewhere = tmp_path / "elsewhere"
    for folder in (target / "efi", target / "old" / "boot", target / "bound", elsewhere):
        folder.mkdir(parents=True)
    (elsewhere / "precious").write_bytes(b"keep me")
    points = [str(target / "efi"), str(target / "old" / "boot"), str(target / "bound")]
    try:
        _mount("tmpfs", None, points[0])
        _mount("tmpfs", None, points[1])
        _mount("bind", str(elsewhere), points[2])
        for point in points[:2]:
            with open(os.path.join(point, "data"), "wb") as f:
                f.write(b"mounted")
        proc = run_cli("restore", "--dry-run", tmp_path / "img", target)
        assert proc.returncode == 0 and b"kept as they were" in proc.stdout + proc.stderr, proc
        proc = run_cli("restore", tmp_path / "img", target)
        assert proc.returncode == 0, proc
        for point in points:
            assert f"{point}: a mount point inside the target".encode() in proc.stderr, proc
        for point in points[:2]:
            with open(os.path.join(point, "data"), "rb") as f:
                assert f.read() == b"mounted"
        assert os.listdir(elsewhere) == ["precious"]
        assert (target / "z").read_bytes() == b"z"
        assert run_cli("status", target).returncode == 0
        seen = snapshot(target)
        assert b"old/boot" in seen and b"bound/chain-file" not in seen
    finally:
        _umount_all(points)


@pytest.mark.root("a bind mount")
def test_a_scan_treats_a_bind_mount_of_its_own_filesystem_as_a_mount_point(tmp_path):
    """Item 2: the scan's rule is restore's: a bind mount is a mount point even on the same
    filesystem (recorded as an empty folder, named in a warning)."""
    from diffimg.tree.manifest import read_entries
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"inner", "kind": "dir"}])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_bytes(b"x")
    point = str(tmp_path / "t" / "inner")
    try:
        _mount("bind", str(tmp_path / "other"), point)
        proc = run_cli("scan", tree, "-o", tmp_path / "m")
        assert proc.returncode == 0 and b"mount point" in proc.stderr, proc
        assert [e.path for e in read_entries(tmp_path / "m")] == [b"", b"inner"]
    finally:
        _umount_all([point])


def test_an_extra_file_of_a_size_the_tree_lacks_is_not_read(tmp_path):
    """Hostile targets: a 4 TiB sparse extra file is deleted without being read (it was hashed
    in full first: minutes to hours); a file whose size the tree has is still reused."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"moved", "kind": "file", "data": b"m" * 5000}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    with open(target / "huge", "wb") as f:
        f.truncate(4 << 40)
    (target / "old-name").write_bytes(b"m" * 5000)
    proc = run_cli("restore", "--yes", tmp_path / "img", target, timeout=60)
    assert proc.returncode == 0 and b"1 from the target" in proc.stderr, proc
    assert sorted(os.listdir(target)) == [".diffimg", "moved"]


def test_a_damaged_container_is_a_bad_image(tmp_path):
    """Strict formats, exit codes: a file missing from the container, and a squashfs whose
    superblock is damaged, are bad images (8), not a failed write (7) or mount (11)."""
    from conftest import assert_one_line_error
    container = _image_with_file(tmp_path, b"f", b"abc")
    os.unlink(container / "f")
    target = tmp_path / "target"
    target.mkdir()
    assert b"f: cannot open its content" in assert_one_line_error(
        run_cli("restore", tmp_path / "img", target), 8).encode()
    run_cli("create", tmp_path / "t", tmp_path / "sq.img", "-q", check_rc=0)
    with open(tmp_path / "sq.img", "r+b") as f:
        f.seek(12)
        f.write(b"\x00\x00\x00\x00")              # the block size
    (tmp_path / "second").mkdir()
    assert b"damaged squashfs superblock" in assert_one_line_error(
        run_cli("restore", tmp_path / "sq.img", tmp_path / "second"), 8).encode()


def _deep_folder(root, levels=25) -> bytes:
    """A chain of folders whose path passes PATH_MAX (made by fd: no path is ever that long);
    the relative path of the deepest."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    parts = []
    for i in range(levels):
        name = b"d%02d" % i + b"x" * 200
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
        parts.append(name)
    leaf = os.open(b"leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"deep")
    os.close(leaf)
    os.close(fd)
    return b"/".join(parts)


def test_a_target_with_paths_past_path_max_is_restored(tmp_path):
    """Hostile targets: a folder chain 5 KB deep in the target no longer stops restore with
    exit 6 forever: it is scanned and deleted through folder fds; status and a second restore
    agree the target is the image's tree."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"x"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    assert len(_deep_folder(target)) > 5000
    proc = run_cli("restore", "--yes", tmp_path / "img", target)
    assert proc.returncode == 0, proc
    assert sorted(os.listdir(target)) == [".diffimg", "a"]
    assert run_cli("status", target).returncode == 0


def test_a_tree_with_paths_past_path_max_is_scanned(tmp_path):
    """The scan walks a tree of any depth (a folder past LONG_PATH is reached through its fd),
    and hashes its files."""
    from diffimg.tree.manifest import read_entries
    tree = tmp_path / "t"
    tree.mkdir()
    deep = _deep_folder(tree)
    run_cli("scan", tree, "-o", tmp_path / "m", check_rc=0)
    entries = {e.path: e for e in read_entries(tmp_path / "m")}
    leaf = entries[deep + b"/leaf"]
    import xxhash
    assert len(entries) == 27 and leaf.digest == xxhash.xxh3_128_digest(b"deep") and leaf.size == 4


# The hostile review of this change found these; each test fails on the code it reviewed.

def test_write_workers_reach_the_locked_target_not_its_path(tmp_path):
    """The target renamed and replaced by a symlink while files are written: the workers write
    into the folder the restore locked (through /proc/PID/fd), never where the path now leads."""
    import xxhash

    from diffimg.entry import Entry, Kind
    from diffimg.restore.writer import From, Job, Root, write_batch
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "f").write_bytes(b"data")
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        root = Root.of(fd)
        os.rename(target, tmp_path / "moved")
        os.symlink(outside, target)
        e = Entry(b"f", Kind.FILE, 0o644, os.getuid(), os.getgid(), 10**18, size=4,
                  digest=xxhash.xxh3_128_digest(b"data"), sparse=False)
        [written] = write_batch(root, [Job(b".tmp", e, From.LAYER, b"f", False, os.fsencode(layer))])
    finally:
        os.close(fd)
    assert written.problem is None and os.listdir(outside) == []
    assert (tmp_path / "moved" / "f").read_bytes() == b"data"


def test_apply_refuses_a_delta_that_is_not_its_manifests_tree(tmp_path):
    """A diff whose store record (and container) says one content and whose manifest says
    another: apply refuses before writing (it used to write the delta's content and record the
    manifest's, so status, compare and restore all called the target right)."""
    from conftest import assert_one_line_error
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"HELLO"}])
    _base(tree, tmp_path)
    target = machine_at_base(tmp_path)
    with open(os.path.join(tree, b"a"), "wb") as f:
        f.write(b"evil!")
    _diff(tree, tmp_path)
    entries = list(Image(tmp_path / "d1").entries())
    import xxhash
    entries[1].digest = xxhash.xxh3_128_digest(b"HELLO")       # the manifest's word
    _recrafted(tmp_path / "d1", tmp_path, entries=entries)
    assert b"not one tree" in assert_one_line_error(
        run_cli("apply", tmp_path / "d1", target), 8).encode()
    assert (target / "a").read_bytes() == b"HELLO"


def test_a_delta_that_expands_to_junk_is_refused_at_once(tmp_path):
    """Under 1 MB of zstd expanding to 512 MiB of empty msgpack arrays: refused as a bad image,
    not a MemoryError traceback or an out-of-memory kill."""
    import zstandard
    from conftest import assert_one_line_error
    from crafted import blobs_of, write_meta
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}])
    _base(tree, tmp_path)
    (tmp_path / "t" / "f").write_bytes(b"x")
    _diff(tree, tmp_path)
    image = Image(tmp_path / "d1")
    params = zstandard.ZstdCompressionParameters.from_level(19, write_checksum=1)
    squeeze = zstandard.ZstdCompressor(compression_params=params).compressobj()
    bomb = squeeze.compress(b"\xdd\x20\x00\x00\x00") + b"".join(    # 2^29 empty arrays
        squeeze.compress(b"\x90" * (1 << 20)) for _ in range(512)) + squeeze.flush()
    assert len(bomb) < 1 << 20
    blobs = blobs_of(image)
    blobs["delta"] = bomb
    write_meta(image.meta_path, blobs, image.container)
    target = tmp_path / "target"
    target.mkdir()
    proc = run_cli("restore", tmp_path / "base", tmp_path / "d1", target, timeout=120,
                   prefix=["prlimit", "--as=4000000000"])     # 4 GB: a MemoryError, not an OOM
    assert b"delta is corrupt" in assert_one_line_error(proc, 8).encode()


def test_the_target_is_never_an_image_or_inside_one(tmp_path):
    """restore IMG IMG, and a restore into a dir image's own tree/, are refused (exit 14,
    nothing changed); they used to destroy the image."""
    from conftest import assert_one_line_error
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"x"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    assert_one_line_error(run_cli("restore", tmp_path / "img", tmp_path / "img"), 14)
    assert_one_line_error(run_cli("restore", tmp_path / "img", tmp_path / "img" / "tree"), 14)
    assert run_cli("verify", tmp_path / "img").returncode == 0


def test_hostile_state_files_and_image_paths_end_quickly(tmp_path):
    """An 8 TiB sparse .diffimg/manifest is not read (status, restore: hours before); an image
    path that is a FIFO is refused instead of blocking forever; a dir image whose tree/ is a
    symlink to /etc is refused."""
    from conftest import assert_one_line_error
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"x"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", tmp_path / "img", target, check_rc=0)
    with open(target / ".diffimg" / "manifest", "r+b") as f:
        f.truncate(8 << 40)
    assert run_cli("status", target, timeout=30).returncode == 15
    run_cli("restore", "-q", tmp_path / "img", target, timeout=30, check_rc=0)
    os.mkfifo(tmp_path / "fifo.img")
    assert_one_line_error(run_cli("info", tmp_path / "fifo.img", timeout=30), 8)
    assert_one_line_error(run_cli("restore", tmp_path / "fifo.img", target, timeout=30), 8)
    os.rename(tmp_path / "img" / "tree", tmp_path / "real-tree")
    os.symlink(tmp_path / "real-tree", tmp_path / "img" / "tree")
    other = tmp_path / "other"
    other.mkdir()
    assert b"content folder" in assert_one_line_error(
        run_cli("restore", tmp_path / "img", other), 8).encode()


def test_fields_that_the_kernel_would_take_for_something_else_are_refused(tmp_path):
    """uid 2^32 - 1 (chown's "leave as it is"), an info without its format, and a container
    longer than the file it lies in: each a one-line bad-image error."""
    from conftest import assert_one_line_error
    from crafted import blobs_of, write_meta

    from diffimg import codec
    _image_with_file(tmp_path, b"f", b"abc")
    entries = list(Image(tmp_path / "img").entries())
    entries[1].uid = 2**32 - 1
    _recrafted(tmp_path / "img", tmp_path, entries=entries)
    (tmp_path / "target").mkdir()
    assert_one_line_error(run_cli("restore", tmp_path / "img", tmp_path / "target"), 8)
    run_cli("create", tmp_path / "t", tmp_path / "img2", "--format", "dir", "-q", check_rc=0)
    image = Image(tmp_path / "img2")
    blobs = blobs_of(image)
    info = codec.unpack(blobs["info"])
    del info["format"]
    blobs["info"] = codec.pack(info)
    write_meta(image.meta_path, blobs, image.container)
    assert_one_line_error(run_cli("info", tmp_path / "img2"), 8)
    blobs["info"] = codec.pack(dict(info, format="dir"))
    write_meta(image.meta_path, blobs, dict(image.container, length=2**63))
    assert b"out of bounds" in assert_one_line_error(run_cli("info", tmp_path / "img2"), 8).encode()


def test_verify_finds_a_manifest_that_differs_from_its_parent_without_a_record(tmp_path):
    """A diff whose manifest changes a path its delta has no record of (restore would make it,
    apply never would): verify of the chain names it."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"a"},
                                  {"path": b"b", "kind": "file", "data": b"b", "mode": 0o644}])
    _base(tree, tmp_path)
    with open(os.path.join(tree, b"a"), "ab") as f:
        f.write(b"more")
    _diff(tree, tmp_path)
    assert run_cli("verify", tmp_path / "base", tmp_path / "d1").returncode == 0
    entries = list(Image(tmp_path / "d1").entries())
    assert entries[2].path == b"b"
    entries[2].mode = 0o4755                          # setuid, and no record says so
    _recrafted(tmp_path / "d1", tmp_path, entries=entries)
    proc = run_cli("verify", tmp_path / "base", tmp_path / "d1")
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1 and b"b: the parent's tree changed by the delta" in said, proc


def test_a_base_records_path_never_becomes_a_content_source(tmp_path):
    """Item 5: restore reads the full image's records only as quick-check hints to find where
    it stores content; a crafted record there naming ../../etc/x is refused, not read."""
    from conftest import assert_one_line_error
    from crafted import blobs_of, write_meta

    from diffimg import codec
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"shared"}])
    _base(tree, tmp_path)
    (tmp_path / "t" / "b").write_bytes(b"shared")
    _diff(tree, tmp_path)
    entries = list(Image(tmp_path / "base").entries())
    entries[1].path = b"../../etc/x"                # canonical order kept: "." sorts first
    _recrafted(tmp_path / "base", tmp_path, entries=entries)
    diff = Image(tmp_path / "d1")
    blobs = blobs_of(diff)
    blobs["info"] = codec.pack(dict(diff.info, parent_id=Image(tmp_path / "base").tree_id))
    write_meta(diff.meta_path, blobs, diff.container)
    target = tmp_path / "target"
    target.mkdir()
    assert b"unsafe path" in assert_one_line_error(
        run_cli("restore", tmp_path / "base", tmp_path / "d1", target), 8).encode()


def test_apply_never_loses_untracked_files_below_a_folder_it_removes(tmp_path):
    """A target restored by diffimg (its state holds the parent tree) with a file of its own
    inside a folder the diff removes: apply refuses (exit 14), naming it, and changes nothing;
    apply --force deletes it, as restore would."""
    from snapshot import snapshot
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"old", "kind": "dir"},
                                  {"path": b"old/sub", "kind": "dir"},
                                  {"path": b"old/sub/x", "kind": "file", "data": b"x"},
                                  {"path": b"keep", "kind": "file", "data": b"k"}])
    _base(tree, tmp_path)
    target = machine_at_base(tmp_path)
    import shutil
    shutil.rmtree(os.path.join(tree, b"old"))
    _diff(tree, tmp_path)
    (target / "old" / "sub" / "mine").write_bytes(b"the user's")    # old's own mtime stays
    before = snapshot(target)
    proc = run_cli("apply", tmp_path / "d1", target)
    assert proc.returncode == 14 and b"old/sub/mine is not in the diff's parent" in proc.stderr, proc
    assert snapshot(target) == before
    run_cli("apply", "--force", "-q", tmp_path / "d1", target, check_rc=0)
    assert not (target / "old").exists()


@pytest.mark.parametrize("reader", ["read ahead", "folder by folder", "python"])
def test_a_folder_swapped_for_a_symlink_while_scanned_brings_no_outside_content_in(
        tmp_path, monkeypatch, reader):
    """Hostile reviews: a/ listed, then swapped (renameat2 RENAME_EXCHANGE, in a loop) with a
    symlink to a folder outside the tree of the same shape, so that hashing by path read the
    outside files, or a folder below a/ opened by path was the outside one and everything in
    it looked consistent. Whatever is read must come from inside the tree."""
    import subprocess
    import sys

    from diffimg.scan import scanner
    from diffimg.scan.hashing import hash_file
    if reader != "read ahead":
        monkeypatch.setattr(scanner, "ReadAhead", None)
    if reader == "python":
        monkeypatch.setattr(scanner, "read_folder", scanner._read_folder_in_python)
    outside, tree = tmp_path / "outside", tmp_path / "tree"
    secrets = set()
    for top, word in ((tree / "a", b"decoy"), (outside, b"SECRET")):
        for sub in ("", "b", "b/c", "b/c/d"):
            (top / sub).mkdir(parents=True, exist_ok=True)
            for i in range(50):
                (top / sub / f"f{i:02d}").write_bytes(b"%s %s %d" % (word, sub.encode(), i))
                if word == b"SECRET":
                    secrets.add(hash_file(os.fsencode(top / sub / f"f{i:02d}")).content.digest)
    (tree / "y").symlink_to(outside)
    swapper = subprocess.Popen([sys.executable, "-c", (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "a, b = sys.argv[1].encode(), sys.argv[2].encode()\n"
        "while True:\n"
        "    libc.renameat2(-100, a, -100, b, 2)\n"), str(tree / "a"), str(tree / "y")])
    try:
        for _ in range(30):
            for e in scanner.scan(tree, workers=1, on_warning=lambda message: None):
                assert e.digest not in secrets, e.path
    finally:
        swapper.kill()
        swapper.wait()


def test_a_file_replaced_by_a_rename_while_scanned_is_recorded_not_dropped(tmp_path):
    """Atomic replacement (write a temporary file, rename it over the old one) during a scan:
    the hash then reads another inode than the one listed. The file is read again through the
    tree itself and recorded with what it holds now; it is never left out (a review saw 291
    of 3000 files dropped, and an image without them deletes them on restore)."""
    import subprocess
    import sys

    from diffimg.scan.scanner import scan
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(1000):
        (tree / f"f{i:04d}").write_bytes(b"first %d" % i)
    replacer = subprocess.Popen([sys.executable, "-c", (
        "import os, sys\n"
        "root = sys.argv[1]\n"
        "n = 0\n"
        "while True:\n"
        "    for i in range(0, 1000, 10):\n"
        "        tmp = os.path.join(root, '.t%d' % i)\n"
        "        with open(tmp, 'wb') as f:\n"
        "            f.write(b'next %d %d' % (i, n))\n"
        "        os.rename(tmp, os.path.join(root, 'f%04d' % i))\n"
        "    n += 1\n"), str(tree)])
    try:
        for _ in range(5):
            files = [e.path for e in scan(tree, workers=1, excludes=[".t*"],
                                          on_warning=lambda message: None)]
            assert [p for p in files if p.startswith(b"f")] == [b"f%04d" % i for i in range(1000)]
    finally:
        replacer.kill()
        replacer.wait()


def test_a_time_past_what_a_manifest_holds_is_recorded_as_the_nearest_with_a_warning(tmp_path):
    """ext4 keeps times up to the year 2446, a manifest's int64 nanoseconds end in 2262: the
    compiled reader wrapped such a time round to 1815, the Python one wrote a manifest it could
    not read back."""
    tree = tmp_path / "tree"
    (tree / "folder").mkdir(parents=True)
    (tree / "folder" / "file").write_bytes(b"from the future")
    (tree / "link").symlink_to("folder")
    year_2400 = 13_569_465_600 * 10**9
    for path in (tree / "folder" / "file", tree / "folder", tree / "link"):
        os.utime(path, ns=(year_2400, year_2400), follow_symlinks=False)
    for pure in ("", "1"):
        out = tmp_path / f"m{pure}"
        proc = run_cli("scan", tree, "-o", out, env={**os.environ, "DIFFIMG_PURE_PYTHON": pure})
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count(b"modification time out of the manifest's range") == 3
        times = {e.path: e.mtime_ns for e in read_entries(out)}
        assert times[b"folder"] == times[b"folder/file"] == times[b"link"] == 2**63 - 1


@pytest.mark.root("a tmpfs mount")
def test_a_full_tmpdir_while_a_big_plan_is_kept_aside_is_a_one_line_error(tmp_path):
    """A restore's plan past 4096 entries goes to a file in the run folder (TMPDIR): a full
    TMPDIR gave a traceback and exit 1; now one line, exit 7, and the target unchanged."""
    import subprocess

    from conftest import assert_one_line_error
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(5000):
        (tree / f"f{i:04d}").write_bytes(b"%d" % i)
    _base(tree, tmp_path)
    small = tmp_path / "small-tmp"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", small], check=True)
    try:
        filler = small / "filler"
        with open(filler, "wb") as f:          # leave about 40 KiB
            f.write(b"\0" * (216 << 10))
        target = tmp_path / "target"
        target.mkdir()
        proc = run_cli("restore", tmp_path / "base", target, "-q",
                       env={**os.environ, "TMPDIR": str(small)})
        line = assert_one_line_error(proc, 7)
        assert "nothing was changed" in line
        assert os.listdir(target) == []
    finally:
        subprocess.run(["umount", small], check=True)


def test_a_hardlink_leader_replaced_while_scanned_leaves_its_group_with_their_content(tmp_path):
    """A third review: the first member of a hardlink group replaced by a rename between the
    listing and its hashing was read again (right) but its group still took the new content
    from it, so a restore gave the other member the replacement's content. The replaced file
    leaves the group; the next member leads with the group's own content."""
    from diffimg.scan import scanner
    from diffimg.scan.hashing import hash_file
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"OLD content shared by a and z")
    os.link(tree / "a", tree / "z")
    (tree / "new").write_bytes(b"NEW content, only at a")
    flush = scanner._Walker.flush

    def replace_a_first(walker):        # between the listing and the hashing of its batch
        if (tree / "new").exists():
            os.rename(tree / "new", tree / "a")
        flush(walker)

    scanner._Walker.flush = replace_a_first
    try:
        got = {e.path: e for e in scanner.scan(tree, workers=1) if e.path}
    finally:
        scanner._Walker.flush = flush
    assert got[b"a"].digest == hash_file(os.fsencode(tree / "a")).content.digest
    assert got[b"a"].link is None
    assert got[b"z"].digest == hash_file(os.fsencode(tree / "z")).content.digest
    assert got[b"z"].link is None                   # its group is itself alone now
