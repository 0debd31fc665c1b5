"""Exact by default (issue 8): changes that keep a file's size and mtime are never missed, by
diff (stat section) or by restore (the target's state, or the chain-aware quick check), and
status and --keep do what they say. Real trees, the real CLI, one thorough tree comparison."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_one_line_error, machine_at_base, run_cli
from snapshot import assert_same_tree, snapshot
from treebuild import build, change_everything

from diffimg.image.format import Image
from diffimg.tree import statcache

RACY_WAIT = statcache.RACY_MARGIN_NS / 1e9 + 0.1    # files older than this are trusted by a scan


def _edit_keeping_size_and_time(path):
    """New bytes, the same size, the mtime put back: what update tools and timestamp restorers do."""
    st = os.lstat(path)
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(bytes((b + 1) % 256 for b in data[:64]) + data[64:])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


EDITED = [b"Program Files/app.exe", b"shared/acl-file", b"names/a/b", b"xattrs", b"sparse.img"]


def _edit(tree):
    for rel in EDITED:
        _edit_keeping_size_and_time(os.path.join(tree, rel))


def _cp(src, dst):
    subprocess.run(["cp", "-a", src, dst], check=True)
    return os.fsencode(dst)


@pytest.mark.root
def test_default_diff_finds_edits_that_keep_size_and_time(rich_tree, tmp_path):
    """The every-kind tree, imaged (its scan's stat rows old enough to be trusted), then edited
    in place keeping sizes and mtimes: the default diff carries every edit; its tree equals the
    hashed tree. The stat section is really used: the base's hints carry proofs on this
    filesystem, and --trust-mtime (the old rule) misses the edits."""
    time.sleep(RACY_WAIT)
    base = tmp_path / "base"
    run_cli("create", rich_tree, base, "--format", "dir", "-q", check_rc=0)
    proved = [h for h in Image(base).file_hints(statcache.identity(rich_tree)) if h.ino is not None]
    assert len(proved) >= 10
    _edit(rich_tree)
    run_cli("diff", rich_tree, base, "-o", tmp_path / "d1", "--format", "dir", "-q", check_rc=0)
    run_cli("compare", "--checksum", base, tmp_path / "d1", rich_tree, check_rc=0)
    # the old rule misses the content edits (it sees only that sparse.img, rewritten whole,
    # lost its holes, which are never taken on trust): its tree is not the edited one
    run_cli("diff", "--trust-mtime", rich_tree, base, "-o", tmp_path / "old-rule", "--format", "dir",
            "-q", check_rc=0)
    run_cli("compare", "--checksum", base, tmp_path / "old-rule", rich_tree, check_rc=1)


@pytest.mark.root
def test_an_edit_within_the_scans_own_second_is_found(rich_tree, tmp_path):
    """The racy case: files written just before the scan and edited right after it (same size,
    same mtime, within the timestamp granularity) are never trusted by the next diff."""
    base = tmp_path / "base"
    run_cli("create", rich_tree, base, "--format", "dir", "-q", check_rc=0)
    _edit(rich_tree)
    run_cli("diff", rich_tree, base, "-o", tmp_path / "d1", "--format", "dir", "-q", check_rc=0)
    run_cli("compare", "--checksum", base, tmp_path / "d1", rich_tree, check_rc=0)


@pytest.fixture
def base_and_diff(rich_tree, tmp_path):
    """(base image, the base tree's copy, d1 made with default options, the new tree): d1
    edits files keeping size and time, among every other kind of change."""
    original = _cp(rich_tree, tmp_path / "original")
    time.sleep(RACY_WAIT)
    run_cli("create", rich_tree, tmp_path / "base", "--format", "dir", "-q", check_rc=0)
    _edit(rich_tree)
    change_everything(rich_tree)
    run_cli("diff", rich_tree, tmp_path / "base", "-o", tmp_path / "d1", "--format", "dir", "-q",
            check_rc=0)
    return tmp_path / "base", original, tmp_path / "d1", rich_tree


@pytest.mark.root
@pytest.mark.parametrize("target_kind", ["restored by diffimg", "restored, then edited in place",
                                         "a copy diffimg never wrote", "state manifest truncated",
                                         "state file damaged", "state incomplete"])
def test_restore_base_and_diff_onto_a_machine_at_the_base(base_and_diff, tmp_path, target_kind):
    base, original, d1, new = base_and_diff
    target = tmp_path / "target"
    if target_kind == "a copy diffimg never wrote":
        _cp(original, target)
    else:
        target.mkdir()
        run_cli("restore", base, target, "-q", check_rc=0)
        assert json.loads((target / ".diffimg/state.json").read_text())["complete"]
    state = target / ".diffimg"
    if target_kind == "restored, then edited in place":
        # a file the chain never changes, edited keeping size and time: only the state sees it
        _edit_keeping_size_and_time(os.path.join(os.fsencode(target), b"names/a-b"))
    elif target_kind == "state manifest truncated":
        data = (state / "manifest").read_bytes()
        (state / "manifest").write_bytes(data[:len(data) // 2])
    elif target_kind == "state file damaged":
        (state / "state.json").write_bytes(b'{"complete": true, "tree_id": "zz"')
    elif target_kind == "state incomplete":
        doc = json.loads((state / "state.json").read_text())
        (state / "state.json").write_text(json.dumps({**doc, "complete": False}))
    # (a target diffimg never restored, or whose state is damaged, is emptied only with --yes)
    proc = run_cli("restore", base, d1, target, "-q", "--yes", check_rc=0)
    assert b"Traceback" not in proc.stderr
    assert_same_tree(snapshot(target), snapshot(new))
    doc = json.loads((state / "state.json").read_text())
    assert doc["complete"] and doc["tree_id"] == Image(d1).tree_id.hex()
    assert [layer["file"] for layer in doc["chain"]] == ["base", "d1"]
    run_cli("status", target, check_rc=0)


@pytest.mark.root
def test_apply_with_state_hashes_a_kept_file_that_was_edited(base_and_diff, tmp_path):
    """apply onto a machine restored to the base whose file, which d1 only changes in metadata,
    was edited keeping size and time: the state's stat row no longer holds, so apply reads it
    and refuses (the target is not d1's parent), naming it."""
    base, _, d1, _ = base_and_diff
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", base, target, "-q", check_rc=0)
    _edit_keeping_size_and_time(os.path.join(os.fsencode(target), b"Program Files/setgid"))  # chmod in d1
    proc = run_cli("apply", "--json", d1, target)
    assert proc.returncode == 14, proc.stderr
    problems = {d["path"]: d["problem"] for d in json.loads(proc.stdout)["differences"]}
    assert problems == {"Program Files/setgid": "has other content"}


@pytest.mark.root
def test_apply_records_the_new_state(base_and_diff, tmp_path):
    base, _, d1, new = base_and_diff
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", base, target, "-q", check_rc=0)
    run_cli("apply", d1, target, "-q", check_rc=0)
    assert_same_tree(snapshot(target), snapshot(new))
    doc = json.loads((target / ".diffimg/state.json").read_text())
    assert [layer["file"] for layer in doc["chain"]] == ["base", "d1"] and doc["command"] == "apply"
    run_cli("status", target, check_rc=0)


@pytest.mark.root
def test_status_names_the_tree_and_every_drift(rich_tree, tmp_path):
    run_cli("create", rich_tree, tmp_path / "base", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", tmp_path / "base", target, "-q", check_rc=0)
    proc = run_cli("status", target, check_rc=0)
    assert Image(tmp_path / "base").tree_id.hex().encode() in proc.stdout
    assert b"base" in proc.stdout and b"unchanged since" in proc.stdout

    _edit_keeping_size_and_time(os.path.join(os.fsencode(target), b"names/a-b"))
    os.chmod(os.path.join(os.fsencode(target), b"Program Files/setuid"), 0o755)
    (target / "new file").write_bytes(b"hello")
    os.unlink(os.path.join(os.fsencode(target), b"names/a/b"))
    proc = run_cli("status", "--json", target, check_rc=1)
    doc = json.loads(proc.stdout)
    found = {d["path"]: (d["change"], sorted(d["fields"])) for d in doc["differences"]}
    assert found["names/a-b"] == ("changed", ["content"])
    assert found["Program Files/setuid"] == ("changed", ["mode"])
    assert found["new file"][0] == "added" and found["names/a/b"][0] == "removed"
    assert not doc["clean"] and doc["tree_id"] == Image(tmp_path / "base").tree_id.hex()
    run_cli("status", "--checksum", target, check_rc=1)


def test_status_of_a_target_diffimg_never_restored(tmp_path):
    (tmp_path / "t").mkdir()
    proc = run_cli("status", tmp_path / "t")
    assert proc.returncode == 15 and b"never restored" in proc.stderr


def test_status_after_a_restore_killed_with_9_says_incomplete(tmp_path):
    spec = [{"path": b"", "kind": "dir"}] + [
        {"path": b"f%04d" % i, "kind": "file", "data": os.urandom(50_000)} for i in range(1500)]
    tree = build(tmp_path / "t", spec)
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "diffimg", "restore", "-q", tmp_path / "img",
                             target], start_new_session=True)
    state = target / ".diffimg/state.json"
    deadline = time.monotonic() + 60
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the restore finished before it could be killed")
    out = run_cli("status", target)
    assert out.returncode == 16 and b"INCOMPLETE" in out.stdout, out
    run_cli("restore", "-q", tmp_path / "img", target, check_rc=0)
    run_cli("status", target, check_rc=0)


def test_scan_leaves_out_the_state_folder(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x"}])
    run_cli("scan", tree, "-o", tmp_path / "a", check_rc=0)
    st = os.stat(tree)
    os.mkdir(os.path.join(tree, b".diffimg"))
    with open(os.path.join(tree, b".diffimg/state.json"), "w") as f:
        f.write("{}")
    os.utime(tree, ns=(st.st_atime_ns, st.st_mtime_ns))
    run_cli("scan", tree, "-o", tmp_path / "b", check_rc=0)
    run_cli("compare", tmp_path / "a", tmp_path / "b", check_rc=0)


@pytest.mark.root
def test_keep_leaves_kept_paths_as_they_are(rich_tree, tmp_path):
    """A kept folder with files the chain lacks, a kept file the chain has with other content,
    and a kept folder below a folder the chain lacks: all survive; everything else matches."""
    run_cli("create", rich_tree, tmp_path / "base", "--format", "dir", "-q", check_rc=0)
    target = _cp(rich_tree, tmp_path / "target")
    os.makedirs(os.path.join(os.fsencode(target), b"home/alice/Documents"))
    with open(os.path.join(os.fsencode(target), b"home/alice/Documents/thesis.odt"), "wb") as f:
        f.write(b"years of work")
    with open(os.path.join(os.fsencode(target), b"home/alice/junk"), "wb") as f:
        f.write(b"not kept")
    with open(os.path.join(os.fsencode(target), b"names/a-b"), "wb") as f:
        f.write(b"the machine's own")
    with open(os.path.join(os.fsencode(target), b"names/extra"), "wb") as f:
        f.write(b"deleted")
    kept_before = {p: v for p, v in snapshot(target).items()
                   if p.startswith(b"home/alice/Documents") or p == b"names/a-b"}
    proc = run_cli("restore", "--json", "--yes", "--keep", "/home/*/Documents", "--keep",
                   "names/a-b", tmp_path / "base", target, check_rc=0)
    assert sorted(json.loads(proc.stdout)["kept"]) == ["home/alice/Documents", "names/a-b"]
    after = snapshot(target)
    assert {p: v for p, v in after.items() if p in kept_before} == kept_before
    assert b"home/alice/junk" not in after
    expected = snapshot(rich_tree)
    rest = {p: v for p, v in after.items() if p not in kept_before and not p.startswith(b"home")}
    expected.pop(b"names/a-b")
    assert_same_tree(rest, expected)
    run_cli("status", target, check_rc=0)        # the kept paths are no drift


def _one_file_image(tmp_path, name: bytes):
    """tmp_path/img: a dir-format image of a tree holding one file, name, with content x."""
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": name, "kind": "file", "data": b"x"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)


def test_keep_refuses_a_chain_that_puts_a_file_where_kept_paths_live(tmp_path):
    _one_file_image(tmp_path, b"home")
    target = tmp_path / "target"
    os.makedirs(target / "home" / "bob")
    (target / "home" / "bob" / "notes").write_bytes(b"mine")
    proc = run_cli("restore", "--keep", "/home/bob", tmp_path / "img", target)
    assert proc.returncode == 14 and b"kept" in proc.stderr
    assert (target / "home" / "bob" / "notes").read_bytes() == b"mine"


@pytest.mark.root
def test_lost_and_found_is_kept_on_ext4(tmp_path):
    _one_file_image(tmp_path, b"f")
    volume = tmp_path / "vol.ext4"
    subprocess.run(["truncate", "-s", "16M", volume], check=True)
    subprocess.run(["mkfs.ext4", "-q", volume], check=True)
    target = tmp_path / "mnt"
    target.mkdir()
    subprocess.run(["mount", "-o", "loop", volume, target], check=True)
    try:
        run_cli("restore", "-q", tmp_path / "img", target, check_rc=0)
        assert (target / "lost+found").is_dir() and (target / "f").read_bytes() == b"x"
        run_cli("status", target, check_rc=0)            # kept by default: no drift
    finally:
        subprocess.run(["umount", target], check=True)
    shutil.rmtree(target)


def test_the_stat_section_is_checked_and_bound_to_its_filesystem(tmp_path):
    """A stat section answers only on the filesystem it was taken on; a damaged one, or one
    belonging to other records, makes the manifest unreadable (exit 4), not silently trusted."""
    from diffimg.errors import ManifestError
    from diffimg.tree.manifest import ManifestReader, read_file_hints
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x" * 100,
                                   "mtime_ns": 10**18}])
    out = tmp_path / "m"
    run_cli("scan", tree, "-o", out, check_rc=0)
    fs = statcache.identity(tree)
    with ManifestReader(out) as m:
        section = m.stat_section()
    assert section.filesystem == fs and section.entries == 2
    other = dict(fs, fsid=fs["fsid"] + 1)
    assert all(h.ino is None for h in read_file_hints(out, filesystem=other))
    data = out.read_bytes()
    footer = statcache.FOOTER.size
    for damaged in (data[:-footer - 3] + data[-footer:],           # a shorter stat frame
                    data[:-footer - 8] + b"\0" * 8 + data[-footer:]):  # its checksum broken
        out.write_bytes(damaged)
        with pytest.raises(ManifestError):
            list(read_file_hints(out, filesystem=fs))
        proc = run_cli("compare", out, tree)
        assert proc.returncode == 4, proc.stderr
        proc = run_cli("ls", out)          # whoever reads it: the manifest is corrupt
        assert proc.returncode == 4 and b"stat section" in proc.stderr, proc.stderr


@pytest.mark.root
def test_apply_keeps_kept_paths_and_refuses_to_remove_what_holds_them(base_and_diff, tmp_path):
    base, _, d1, new = base_and_diff
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", base, target, "-q", check_rc=0)
    before = snapshot(target)
    proc = run_cli("apply", "--keep", "/dev/null", d1, target)      # d1 deletes dev/
    assert proc.returncode == 14 and b"dev" in proc.stderr
    assert snapshot(target) == before
    kept = b"Program Files/setgid"                                    # d1 changes its mode
    run_cli("apply", "-q", "--keep", "/" + os.fsdecode(kept), d1, target, check_rc=0)
    after = snapshot(target)
    assert after[kept] == before[kept]
    expected = snapshot(new)
    expected[kept] = after[kept]
    assert_same_tree(after, expected)


@pytest.mark.root
def test_a_restore_with_nothing_to_do_changes_nothing_but_the_state_file(rich_tree, tmp_path):
    run_cli("create", rich_tree, tmp_path / "base", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", tmp_path / "base", target, "-q", check_rc=0)
    manifest = os.stat(target / ".diffimg/manifest")
    before = snapshot(target)
    root = os.stat(target)
    proc = run_cli("restore", "--json", tmp_path / "base", target, check_rc=0)
    counts = json.loads(proc.stdout)["counts"]
    assert counts["unchanged"] == len(before) and counts["metadata_only"] == 0
    assert snapshot(target) == before and os.stat(target).st_ctime_ns == root.st_ctime_ns
    assert os.stat(target / ".diffimg/manifest").st_ino == manifest.st_ino   # rows still hold
    run_cli("status", target, check_rc=0)


def _with_stat_frame(manifest, parts):
    """Give the manifest a stat frame made of parts (streamed into one zstd frame) and a
    footer pointing at it."""
    import zstandard
    data = manifest.read_bytes()
    with open(manifest, "rb") as f:
        records = statcache.records_end(f, 0, len(data))
    z = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    frame = b"".join([z.compress(part) for part in parts] + [z.flush()])
    manifest.write_bytes(data[:records] + frame
                         + statcache.FOOTER.pack(records, len(frame), statcache.FOOTER_MAGIC))


@pytest.mark.parametrize("case", ["more rows", "fewer rows", "another tree", "a bomb"])
def test_a_crafted_stat_section_is_refused_with_flat_memory(tmp_path, case):
    """Rows are streamed as records are read: a frame claiming or holding other than its
    records' rows is refused, and a frame that inflates to 4 GiB costs no memory to refuse."""
    import resource

    from diffimg import codec
    from diffimg.errors import ManifestError
    from diffimg.tree.manifest import ManifestReader, read_file_hints
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x", "mtime_ns": 10**18}])
    out = tmp_path / "m"
    run_cli("scan", tree, "-o", out, check_rc=0)
    fs = statcache.identity(tree)
    with ManifestReader(out) as m:
        tree_id = m.stat_section().tree_id
    header = {"tree_id": tree_id, "entries": 2, "trusted_before_ns": 1 << 62, "filesystem": fs}
    rows = [b"\0" * 32]
    if case == "more rows":
        rows = [b"\0" * 48]
    elif case == "fewer rows":
        rows = [b"\0" * 16]
    elif case == "another tree":
        header["tree_id"] = b"\1" * 16
    elif case == "a bomb":
        rows = [b"\0" * (64 << 20)] * 64
    packed = codec.pack(header)
    _with_stat_frame(out, [statcache.HEADER_LEN.pack(len(packed)) + packed, *rows])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ManifestError):
        list(read_file_hints(out, filesystem=fs))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 << 10   # KiB


def test_verify_reads_the_stat_section_whole(tmp_path):
    from diffimg import codec
    from diffimg.image.format import Image
    from diffimg.tree.manifest import ManifestReader
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    run_cli("verify", tmp_path / "img", check_rc=0)
    image = Image(tmp_path / "img")
    start, length, _ = image.blobs["manifest"]
    manifest = tmp_path / "m"
    with open(image.meta_path, "rb") as f:
        f.seek(start)
        manifest.write_bytes(f.read(length))
    with ManifestReader(manifest) as m:
        tree_id = m.stat_section().tree_id
    packed = codec.pack({"tree_id": tree_id, "entries": 2, "trusted_before_ns": 0,
                         "filesystem": None})
    _with_stat_frame(manifest, [statcache.HEADER_LEN.pack(len(packed)) + packed + b"\0" * 48])
    with open(image.meta_path, "wb") as f:            # the image, its digests recomputed
        from diffimg.image.format import append_metadata
        append_metadata(f, image.container, manifest, None, image.info)
    proc = run_cli("verify", tmp_path / "img")
    assert proc.returncode == 1 and b"stat section" in proc.stdout, proc


@pytest.mark.root
def test_a_state_vouches_only_for_content_that_was_checked(base_and_diff, tmp_path):
    """An edit that kept size and time, which a run took on trust (a first restore onto a
    copy, by size and mtime) or never looked at (apply, outside its delta), gets no stat row:
    status and the next restore still see it."""
    base, original, d1, new = base_and_diff
    edited = b"names/a-b"                                 # no diff touches it
    copy = _cp(original, tmp_path / "copy")
    _edit_keeping_size_and_time(os.path.join(copy, edited))
    run_cli("restore", "-q", base, copy, check_rc=0)      # quick check: the edit stays, unseen
    found = json.loads(run_cli("status", "--json", copy, check_rc=1).stdout)["differences"]
    assert [(d["path"], list(d["fields"])) for d in found] == [(os.fsdecode(edited), ["content"])]
    run_cli("restore", "-q", base, copy, check_rc=0)      # now hashed, and mended
    run_cli("status", copy, check_rc=0)

    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", base, target, check_rc=0)
    _edit_keeping_size_and_time(os.path.join(os.fsencode(target), edited))
    run_cli("apply", "-q", d1, target, check_rc=0)
    found = json.loads(run_cli("status", "--json", target, check_rc=1).stdout)["differences"]
    assert [d["path"] for d in found] == [os.fsdecode(edited)]
    run_cli("restore", "-q", base, d1, target, check_rc=0)
    assert_same_tree(snapshot(target), snapshot(new))


def test_a_kept_file_lends_its_bytes_to_no_link_outside(tmp_path):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"}, {"path": b"aaa", "kind": "dir"},
                                  {"path": b"aaa/daemon", "kind": "file", "data": b"the model's"},
                                  {"path": b"etc", "kind": "dir"},
                                  {"path": b"etc/daemon", "kind": "link", "to": b"aaa/daemon"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    target = _cp(tree, tmp_path / "target")
    os.unlink(os.path.join(target, b"etc/daemon"))
    with open(os.path.join(target, b"aaa/daemon"), "wb") as f:
        f.write(b"pwned")
    run_cli("restore", "-q", "--keep", "/aaa", tmp_path / "img", target, check_rc=0)
    with open(os.path.join(target, b"aaa/daemon"), "rb") as f:
        assert f.read() == b"pwned"                       # kept
    with open(os.path.join(target, b"etc/daemon"), "rb") as f:
        assert f.read() == b"the model's"                 # a copy, not a link to the kept file


@pytest.mark.root
@pytest.mark.parametrize("in_the_way", [b"state.json", b"manifest"])
def test_a_folder_in_the_way_of_the_state_is_replaced(rich_tree, tmp_path, in_the_way):
    run_cli("create", rich_tree, tmp_path / "base", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    os.makedirs(os.path.join(os.fsencode(target), b".diffimg", in_the_way, b"sub"))
    run_cli("restore", "-q", tmp_path / "base", target, check_rc=0)
    run_cli("status", target, check_rc=0)


@pytest.mark.parametrize("values", [{"finished_ns": "yesterday"}, {"finished_ns": 1e300},
                                    {"started_ns": -1}, {"keep": ["/"]}, {"keep": ["../x"]},
                                    {"chain": [{"file": 1}]}, {"tree_id": "zz"}])
def test_a_damaged_state_file_is_no_state(tmp_path, values):
    tree = build(tmp_path / "t", [{"path": b"", "kind": "dir"},
                                  {"path": b"f", "kind": "file", "data": b"x"}])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", tmp_path / "img", target, check_rc=0)
    state = target / ".diffimg" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), **values}))
    proc = run_cli("status", target)
    assert proc.returncode == 15 and b"damaged" in proc.stderr, proc
    run_cli("restore", "-q", tmp_path / "img", target, check_rc=0)
    run_cli("status", target, check_rc=0)


@pytest.mark.root
def test_a_rollback_to_the_base_uses_the_state_of_the_later_tree(base_and_diff, tmp_path):
    """A machine at base+d1 (with its state) restored back to the base alone: d1's edits that
    kept size and time are undone, since the state's rows say what each file holds."""
    base, original, d1, _ = base_and_diff
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", base, d1, target, check_rc=0)
    run_cli("restore", "-q", base, target, check_rc=0)
    run_cli("compare", "--checksum", base, target, check_rc=0)


@pytest.mark.root
def test_a_move_apply_cannot_prove_is_hashed_and_refused(base_and_diff, tmp_path):
    """apply without a state hashes the content it takes from the target (its inode moves into
    place unread otherwise): a moved file edited keeping its size and time is refused, nothing
    changed (it used to be moved, and only status saw it)."""
    base, _, d1, _ = base_and_diff
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", base, target, check_rc=0)
    root = os.stat(target)
    shutil.rmtree(target / ".diffimg")                    # a machine without a state
    os.utime(target, ns=(root.st_atime_ns, root.st_mtime_ns))
    moved = os.path.join(os.fsencode(target), b"times/before-1970")   # d1 moves times/
    _edit_keeping_size_and_time(moved)
    before = snapshot(target)
    line = assert_one_line_error(run_cli("apply", "-q", d1, target), 14)
    assert "times/before-1970 is not the entry the diff takes content" in line, line
    assert snapshot(target) == before


@pytest.mark.root
@pytest.mark.parametrize("damage", ["rows cut short", "a record's byte flipped", "deep JSON"])
def test_a_damaged_state_is_a_warning_and_restore_still_works(rich_tree, tmp_path, damage):
    run_cli("create", rich_tree, tmp_path / "base", "--format", "dir", "-q", check_rc=0)
    target = machine_at_base(tmp_path)
    manifest = target / ".diffimg" / "manifest"
    data = bytearray(manifest.read_bytes())
    if damage == "rows cut short":
        del data[-statcache.FOOTER.size - 40:-statcache.FOOTER.size]
    elif damage == "a record's byte flipped":
        data[100] ^= 0xFF
    else:
        (target / ".diffimg" / "state.json").write_text("[" * 100000)
    manifest.write_bytes(bytes(data))
    assert run_cli("status", target).returncode == 15
    proc = run_cli("restore", tmp_path / "base", target, check_rc=0)   # (-q: no warnings)
    assert b"damaged" in proc.stderr
    run_cli("status", target, check_rc=0)
