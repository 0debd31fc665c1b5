"""Full and differential images in every format: made, verified, compared, mounted, refused."""

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import assert_one_line_error, rewrite_delta, run_cli
from treebuild import build, change_everything

from diffimg.image.format import Image
from diffimg.tree.delta import COPY, PARENT, STORE

FORMATS = ["squashfs", "btrfs", "ext4", "dir"]


def _info(image):
    proc = run_cli("info", "--json", image, check_rc=0)
    return json.loads(proc.stdout)


def _copy(src, dst):
    subprocess.run(["cp", "-a", src, dst], check=True)
    return os.fsencode(dst)


@pytest.mark.root
@pytest.mark.parametrize("fmt", FORMATS)
def test_base_and_diff_round_trip(rich_tree, tmp_path, fmt):
    base, diff = tmp_path / f"base.{fmt}", tmp_path / f"diff.{fmt}"
    original = _copy(rich_tree, tmp_path / "original")
    run_cli("create", rich_tree, base, "--format", fmt, check_rc=0)
    change_everything(rich_tree)
    run_cli("diff", rich_tree, base, "-o", diff, "--format", fmt, check_rc=0)
    run_cli("verify", base, diff, check_rc=0)
    run_cli("compare", "--checksum", diff, rich_tree, check_rc=0)
    run_cli("compare", "--checksum", base, original, check_rc=0)
    info = _info(diff)
    assert info["kind"] == "diff" and info["parent_id"] == _info(base)["tree_id"]
    changes = info["changes"]
    for action in ("delete", "store", "copy", "parent", "meta", "new", "link"):
        assert changes.get(action), (action, changes)
    # the mounted container shows the base tree's files at their own paths
    with Image(base).content() as shown:
        for entry in Image(base).entries():
            if entry.kind.name == "FILE" and entry.link is None:
                with open(os.path.join(shown, entry.path), "rb") as f, \
                        open(os.path.join(original, entry.path), "rb") as g:
                    assert f.read() == g.read(), entry.path


@pytest.mark.root
def test_chmod_and_touch_only_store_no_content(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}] + [
        {"path": b"f%d" % i, "kind": "file", "data": os.urandom(50_000)} for i in range(20)])
    run_cli("create", tree, tmp_path / "base", check_rc=0)
    for i in range(20):
        path = os.path.join(tree, b"f%d" % i)
        os.chmod(path, 0o600) if i % 2 else os.utime(path, ns=(0, 10**18 + i))
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d", check_rc=0)
    info = _info(tmp_path / "d")
    assert info["stored_files"] == 0 and info["stored_bytes"] == 0
    assert info["changes"] == {"meta": 20}          # chmod and touch leave the folder alone
    assert os.path.getsize(tmp_path / "d") < 64 * 1024
    run_cli("verify", tmp_path / "base", tmp_path / "d", check_rc=0)


def test_renamed_folder_of_big_files_stores_nothing(tmp_path):
    big = [{"path": b"data/big%d" % i, "kind": "file", "data": os.urandom(4 << 20)} for i in range(3)]
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}, {"path": b"data", "kind": "dir"}] + big)
    run_cli("create", tree, tmp_path / "base", check_rc=0)
    os.rename(os.path.join(tree, b"data"), os.path.join(tree, b"data renamed"))
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d", check_rc=0)
    info = _info(tmp_path / "d")
    assert info["stored_files"] == 0
    delta = Image(tmp_path / "d").delta()
    assert {c.path: c.action for c in delta if c.action in (STORE, COPY, PARENT)} == {
        b"data renamed/big%d" % i: PARENT for i in range(3)}
    assert os.path.getsize(tmp_path / "d") < 64 * 1024


def test_identical_new_contents_are_stored_once(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}])
    run_cli("create", tree, tmp_path / "base", check_rc=0)
    data = os.urandom(1 << 20)
    for name in (b"a", b"b", b"c"):
        with open(os.path.join(tree, name), "wb") as f:
            f.write(data)
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d", check_rc=0)
    actions = {c.path: (c.action, c.source) for c in Image(tmp_path / "d").delta() if c.path}
    assert actions == {b"a": (STORE, None), b"b": (COPY, b"a"), b"c": (COPY, b"a")}


@pytest.mark.root
def test_a_diff_on_a_diff_chains(rich_tree, tmp_path):
    run_cli("create", rich_tree, tmp_path / "base", check_rc=0)
    change_everything(rich_tree)
    run_cli("diff", rich_tree, tmp_path / "base", "-o", tmp_path / "d1", check_rc=0)
    with open(os.path.join(rich_tree, b"new/one"), "ab") as f:
        f.write(b"more")
    run_cli("diff", rich_tree, tmp_path / "base", tmp_path / "d1", "-o", tmp_path / "d2", check_rc=0)
    run_cli("verify", tmp_path / "base", tmp_path / "d1", tmp_path / "d2", check_rc=0)
    run_cli("compare", tmp_path / "d2", rich_tree, check_rc=0)
    assert _info(tmp_path / "d2")["parent_id"] == _info(tmp_path / "d1")["tree_id"]


@pytest.mark.parametrize("fmt", [f if f == "dir" else pytest.param(f, marks=pytest.mark.root)
                                 for f in FORMATS])             # a file container is mounted
def test_a_corrupted_byte_makes_verify_fail(tmp_path, fmt):
    files = [os.urandom(300_000) for i in range(8)]   # random: stored as is, so it can be found
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}] + [
        {"path": b"f%d" % i, "kind": "file", "data": data} for i, data in enumerate(files)])
    image = tmp_path / "img"
    run_cli("create", tree, image, "--format", fmt, check_rc=0)
    run_cli("verify", image, check_rc=0)
    target = image / "tree" / "f3" if fmt == "dir" else image
    offset = target.read_bytes().index(files[3][5000:5100]) + 50
    with open(target, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    proc = run_cli("verify", image)
    assert proc.returncode == 1, proc.stderr
    assert b"BAD:" in proc.stdout and b"f3" in proc.stdout


def test_a_diff_alone_is_verified_in_all_that_needs_no_parent(tmp_path):
    """verify DIFF checks its metadata, its delta against its manifest and its stored content,
    and says the check against its parent needs the parent; a damaged stored file is found."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x" * 5000}])
    run_cli("create", tree, tmp_path / "base", check_rc=0)
    fresh = os.urandom(200_000)
    with open(os.path.join(tree, b"g"), "wb") as f:
        f.write(fresh)
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d", "--format", "dir", check_rc=0)
    proc = run_cli("verify", tmp_path / "d", check_rc=0)
    assert b"parent was not given" in proc.stderr and b"all good" in proc.stderr
    with open(tmp_path / "d" / "tree" / "g", "r+b") as f:
        f.seek(100_000)
        byte = f.read(1)[0]
        f.seek(100_000)
        f.write(bytes([byte ^ 0xFF]))
    proc = run_cli("verify", tmp_path / "d")
    assert proc.returncode == 1 and b"BAD:" in proc.stdout and b"g" in proc.stdout


def test_a_diff_says_in_words_what_it_holds(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"a", "kind": "file", "data": b"a" * 5000},
                                  {"path": b"b", "kind": "file", "data": b"b" * 5000},
                                  {"path": b"gone", "kind": "file", "data": b"g"}])
    run_cli("create", tree, tmp_path / "base", "--format", "dir", check_rc=0)
    os.rename(os.path.join(tree, b"a"), os.path.join(tree, b"moved"))
    os.chmod(os.path.join(tree, b"b"), 0o600)
    os.unlink(os.path.join(tree, b"gone"))
    with open(os.path.join(tree, b"new"), "wb") as f:
        f.write(b"n" * 3000)
    out = run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d", "--format", "dir",
                  check_rc=0).stdout.decode()
    assert "1 files, 2.9 KiB stored" in out
    assert ("changes: 1 files with new content (stored), 1 files moved or copied from content "
            "the parent has, 2 entries with only their metadata changed, 2 paths deleted") in out


def test_corrupt_metadata_makes_verify_fail(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x" * 5000}])
    image = tmp_path / "img"
    run_cli("create", tree, image, check_rc=0)
    start, length, _ = Image(image).blobs["manifest"]
    with open(image, "r+b") as f:
        f.seek(start + length // 2)
        byte = f.read(1)
        f.seek(start + length // 2)
        f.write(bytes([byte[0] ^ 1]))
    proc = run_cli("verify", image)
    assert proc.returncode == 1 and b"manifest" in proc.stdout


def test_verify_finds_a_delta_record_that_disagrees_with_the_manifest(tmp_path):
    """apply trusts the delta's entries alone: verify checks them against the manifest."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x" * 5000},
                                  {"path": b"g", "kind": "file", "data": b"y" * 5000}])
    run_cli("create", tree, tmp_path / "base", "--format", "dir", check_rc=0)
    os.chmod(os.path.join(tree, b"g"), 0o600)
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d", "--format", "dir", check_rc=0)
    run_cli("verify", tmp_path / "base", tmp_path / "d", check_rc=0)
    image = Image(tmp_path / "d")
    changes = image.delta()
    [change] = [c for c in changes if c.path == b"g"]
    change.after.mode = 0o644                            # a record that says other than the manifest
    rewrite_delta(image, changes, tmp_path)
    proc = run_cli("verify", tmp_path / "base", tmp_path / "d")
    assert proc.returncode == 1, proc.stderr
    assert b"g: the delta's record does not match the manifest" in proc.stdout


def test_nothing_changed_makes_no_image(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}, {"path": b"f", "kind": "file"}])
    run_cli("create", tree, tmp_path / "base", check_rc=0)
    proc = run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d")
    assert proc.returncode == 1 and b"nothing changed" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["base", "t"]


@pytest.mark.root
def test_bad_input_is_refused_and_leaves_nothing(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}, {"path": b"f", "kind": "file",
                                                                 "data": b"1"}])
    other = build(tmp_path / "o", [{"path": b"", "kind": "dir"}])
    run_cli("create", tree, tmp_path / "base", check_rc=0)
    run_cli("create", other, tmp_path / "other", check_rc=0)
    with open(os.path.join(tree, b"f"), "wb") as f:
        f.write(b"2")
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d1", check_rc=0)
    before = sorted(os.listdir(tmp_path))
    (tmp_path / "junk").write_bytes(os.urandom(10_000))
    assert_one_line_error(run_cli("info", tmp_path / "junk"), 8)
    assert_one_line_error(run_cli("diff", tree, tmp_path / "junk", "-o", tmp_path / "x"), 8)
    data = (tmp_path / "base").read_bytes()
    (tmp_path / "cut").write_bytes(data[:len(data) - 100])
    assert_one_line_error(run_cli("ls", tmp_path / "cut"), 8)
    assert_one_line_error(run_cli("diff", tree, tmp_path / "other", tmp_path / "d1",
                                  "-o", tmp_path / "x"), 9)                 # d1's parent is base
    assert_one_line_error(run_cli("create", tree, tmp_path / "base"), 7)    # exists already
    assert_one_line_error(run_cli("create", tmp_path / "nope", tmp_path / "x"), 3)
    assert_one_line_error(run_cli("verify", tmp_path / "base", tmp_path / "nope"), 3)
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["junk", "cut"])
    assert (tmp_path / "base").read_bytes() == data


@pytest.mark.root
@pytest.mark.parametrize("fmt", ["squashfs", "dir"])
def test_an_output_folder_that_cannot_be_written_is_a_clear_error(tmp_path, fmt):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"1"}])
    out = tmp_path / "ro"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", out], check=True)
    try:
        assert_one_line_error(run_cli("create", tree, out / "img", "--format", fmt), 7)
        assert os.listdir(out) == []
    finally:
        subprocess.run(["umount", out], check=True)


@pytest.mark.root
def test_verify_names_a_diff_on_the_wrong_parent(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}, {"path": b"f", "kind": "file"}])
    other = build(tmp_path / "o", [{"path": b"", "kind": "dir"}])
    run_cli("create", tree, tmp_path / "base", check_rc=0)
    run_cli("create", other, tmp_path / "other", check_rc=0)
    os.mkdir(os.path.join(tree, b"new"))
    run_cli("diff", tree, tmp_path / "base", "-o", tmp_path / "d", check_rc=0)
    proc = run_cli("verify", tmp_path / "other", tmp_path / "d")
    assert proc.returncode == 1 and b"parent" in proc.stdout


@pytest.mark.root
def test_a_full_disk_while_packing_leaves_no_partial_output(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}] + [
        {"path": b"f%d" % i, "kind": "file", "data": os.urandom(1 << 20)} for i in range(6)])
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small], check=True)
    try:
        for fmt in ("squashfs", "dir"):
            proc = run_cli("create", tree, small / "img", "--format", fmt)
            assert_one_line_error(proc, 7)
            assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", small], check=True)


@pytest.mark.root
@pytest.mark.root("to drop capabilities")
def test_info_and_ls_need_neither_root_nor_a_mount(rich_tree, tmp_path):
    run_cli("create", rich_tree, tmp_path / "base", check_rc=0)
    no_caps = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    info = json.loads(run_cli("info", "--json", tmp_path / "base", prefix=no_caps, check_rc=0).stdout)
    assert info["kind"] == "full"
    lines = run_cli("ls", "--json", tmp_path / "base", prefix=no_caps, check_rc=0).stdout.splitlines()
    paths = {json.loads(line)["path"] for line in lines}
    assert "names/line\\nbreak" in paths and "links/sub/hard" in paths
    assert len(lines) == info["entries"]
    # the same restricted process cannot mount: verify says so in one line
    assert_one_line_error(run_cli("verify", tmp_path / "base", prefix=no_caps), 11)


@pytest.mark.root
def test_excludes_and_dir_format_copy_only_what_the_manifest_lists(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}, {"path": b"keep", "kind": "file",
              "data": b"k"}, {"path": b"pagefile.sys", "kind": "file", "data": b"p" * 10000}])
    run_cli("create", tree, tmp_path / "img", "--exclude", "pagefile.sys", check_rc=0)
    with Image(tmp_path / "img").content() as shown:
        assert sorted(os.listdir(shown)) == [b"keep"]
    run_cli("create", tree, tmp_path / "imgdir", "--format", "dir", check_rc=0)
    assert sorted(os.listdir(tmp_path / "imgdir" / "tree")) == ["keep", "pagefile.sys"]
    shutil.rmtree(tmp_path / "imgdir")


def _ls_path(line: str) -> str:
    """The path of an ls line, as shown: it follows the nanosecond time, quoted (up to its
    closing quote) when it could be misread, else up to ' -> ' or ' => '."""
    shown = re.split(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} ", line, maxsplit=1)[1]
    if shown.startswith('"'):
        return re.match(r'"(?:[^"\\]|\\.)*"', shown)[0]
    return shown.split(" -> ")[0].split(" => ")[0]


@pytest.mark.root
def test_ls_and_info_print_what_the_image_holds(rich_tree, tmp_path):
    run_cli("create", rich_tree, tmp_path / "base", check_rc=0)
    lines = run_cli("ls", tmp_path / "base", check_rc=0).stdout.decode().splitlines()
    by_path = {_ls_path(line): line for line in lines}
    assert len(by_path) == len(lines)
    assert by_path["."].startswith("drwxr-xr-x")
    assert by_path["Program Files/setuid"].startswith("-rwsr-xr-x")
    assert by_path["shared"].startswith("drwxrwxrwt+")            # sticky, and it has ACLs
    assert by_path["links/rel"].endswith(" -> ../Program Files/app.exe")
    assert "=> Program Files/app.exe" in by_path["links/hard-top"]
    assert " 1,3 " in by_path["dev/null"] and by_path["dev/null"].startswith("c")
    assert "1969-12-30 23:59:59.999999999" in by_path["times/before-1970"]
    # names that could be misread are quoted as ls --quoting-style=c does; others are not
    for quoted in ('"names/line\\nbreak"', '"names/a -> b"', '"names/c => d"',
                   '"names/\'quoted\' \\"name\\""'):
        assert quoted in by_path, quoted
    assert "names/\u4e2d\u6587 \u00e9t\u00e9" in by_path
    assert any(p.startswith('"names/') and "\\3" in p for p in by_path)   # not UTF-8: octal
    assert by_path["links/dangling"].endswith(' -> "nowhere \\n\\377"')
    # one folder; a manifest as well; a path the tree lacks
    listed = run_cli("ls", tmp_path / "base", "links", check_rc=0).stdout.decode().splitlines()
    assert sorted(_ls_path(line) for line in listed) == [
        "links/abs", "links/dangling", "links/hard-top", "links/rel", "links/sub"]
    assert run_cli("ls", tmp_path / "base", "links/rel", check_rc=0).stdout.decode().splitlines() \
        == [by_path["links/rel"]]
    run_cli("scan", rich_tree, "-o", tmp_path / "m.dimf", check_rc=0)
    assert run_cli("ls", tmp_path / "m.dimf", "links", check_rc=0).stdout.decode().splitlines() \
        == listed
    assert_one_line_error(run_cli("ls", tmp_path / "base", "no/such"), 3)
    info = run_cli("info", tmp_path / "base", check_rc=0).stdout.decode()
    assert "kind:       full (squashfs, zstd level 9)" in info
    assert "parent id:  -" in info


@pytest.mark.root
def test_a_tree_with_a_mount_point_inside_is_imaged_as_scanned(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}, {"path": b"mnt", "kind": "dir"},
                                  {"path": b"here", "kind": "file", "data": b"x" * 5000}])
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(tree, b"mnt")], check=True)
    try:
        with open(os.path.join(tree, b"mnt/elsewhere"), "wb") as f:
            f.write(b"on another filesystem")
        proc = run_cli("create", tree, tmp_path / "img", check_rc=0)
        assert b"mount point" in proc.stderr
        run_cli("compare", tmp_path / "img", tree, check_rc=0)   # the mount point: an empty folder
        with Image(tmp_path / "img").content() as shown:
            assert sorted(os.listdir(shown)) == [b"here"]           # packed from what was scanned
    finally:
        subprocess.run(["umount", os.path.join(tree, b"mnt")], check=True)


@pytest.mark.root
def test_a_squashfs_diff_streams_files_of_any_name(tmp_path):
    """A squashfs diff sends its stored files to mksquashfs as one tar stream (no staging
    copy): names with a newline, invalid UTF-8, ' -> ', 255 bytes, and 200-byte components
    come through, verify reads every one back, and a restore of the chain equals the tree."""
    from snapshot import assert_same_tree, snapshot
    from treebuild import BAD_UTF8
    odd = [b"line\nbreak", BAD_UTF8, b"a -> b", b"n" * 255,
           b"d" * 200 + b"/" + b"e" * 200 + b"/f"]
    spec = [{"path": b"", "kind": "dir"}, {"path": b"d" * 200, "kind": "dir"},
            {"path": b"d" * 200 + b"/" + b"e" * 200, "kind": "dir"}]
    spec += [{"path": name, "kind": "file", "data": b"old " + name} for name in odd]
    tree = build(tmp_path / "t", spec)
    run_cli("create", tree, tmp_path / "base.img", "-q", check_rc=0)
    for name in odd:
        with open(os.path.join(tree, name), "ab") as f:
            f.write(b" and new")
    run_cli("diff", tree, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    assert Image(tmp_path / "d1.img").info["stored_files"] == len(odd)
    run_cli("verify", tmp_path / "base.img", tmp_path / "d1.img", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", tmp_path / "base.img", tmp_path / "d1.img", target, check_rc=0)
    assert_same_tree(snapshot(target), snapshot(tree))


def test_a_file_that_changed_since_its_scan_is_never_streamed_into_an_image(tmp_path):
    """The streamed bytes are hashed on their way in: content other than the scanned digest
    (or size) stops the packing with a one-line error, and no image is made."""
    import pytest

    from diffimg.errors import ScanError
    from diffimg.image import containers
    from diffimg.make.packer import _Output, _stream
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_bytes(b"now")
    output = _Output(tmp_path / "out.img", containers.get("squashfs"))
    try:
        with pytest.raises(ScanError, match="changed since it was scanned"):
            _stream(os.fsencode(tree), output, [(b"f", b"\0" * 16, 3)])
        with pytest.raises(ScanError, match="changed since it was scanned"):
            _stream(os.fsencode(tree), output, [(b"f", b"\0" * 16, 5)])
        (tree / "d").mkdir()                   # a folder where a file was scanned
        with pytest.raises(ScanError, match="no longer a file"):
            _stream(os.fsencode(tree), output, [(b"d", b"\0" * 16, 5)])
        # a name NTFS can have (255 UTF-16 units) and squashfs cannot: said before it is packed
        with pytest.raises(ScanError, match="a name of 400 bytes"):
            _stream(os.fsencode(tree), output, [(b"\xc3\xa9" * 200, b"\0" * 16, 5)])
    finally:
        output.cleanup()
    assert sorted(os.listdir(tmp_path)) == ["t"]


def test_a_path_too_long_to_stage_is_a_one_line_error(tmp_path):
    """The dir format stages files by path: one past PATH_MAX is exit 7 with a hint, never a
    traceback (nor exit 1, which means 'nothing changed' to diff and rebase)."""
    tree = os.fsencode(tmp_path / "tree")
    os.mkdir(tree)
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(22):                   # 22 folders of 200-byte names: 4,422 bytes
            os.mkdir(b"d" * 200, dir_fd=fd)
            deeper = os.open(b"d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        with open(os.open(b"file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"deep")
    finally:
        os.close(fd)
    line = assert_one_line_error(run_cli("create", tree, tmp_path / "a.img", "--format", "dir"), 7)
    assert "squashfs" in line
    assert not os.path.lexists(tmp_path / "a.img")
