"""Exact where admins stand (issue 24): a partition file's state outlives its loop device, --keep
matches as the target's filesystem does, a diff can leave paths out as not its own, nothing on
the target changes when a restore fails before it needs to, a diff whose delta is not its
manifest's tree is refused."""

import os
import subprocess

import pytest
from conftest import machine_at_base, run_cli


def _ext4(path, size="32M"):
    subprocess.run(["truncate", "-s", size, str(path)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(path)], check=True)
    return path


class _Mounted:
    """A filesystem image file mounted on a loop device of its own for the block."""

    def __init__(self, volume, where):
        self.volume, self.where = volume, where

    def __enter__(self):
        self.where.mkdir(exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(self.volume), str(self.where)], check=True)
        return self.where

    def __exit__(self, *exc):
        subprocess.run(["umount", "-d", str(self.where)], check=True)


def _source_device(mount) -> str:
    return subprocess.run(["findmnt", "-no", "SOURCE", str(mount)], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.mark.root
def test_a_partition_files_stat_proofs_survive_another_loop_device(tmp_path):
    """A partition file restored once is attached to another loop device the next time; an
    edit that kept size and mtime is still seen (by status and by restore), because the state
    names the filesystem by its UUID, and nothing unchanged is hashed again."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "data").write_bytes(b"model content 01\n")
    (tree / "etc" / "hostname").write_text("pc12\n")
    run_cli("create", "-q", tree, tmp_path / "base.img", check_rc=0)
    target = _ext4(tmp_path / "target.ext4")
    run_cli("restore", "-q", tmp_path / "base.img", target, check_rc=0)

    # the same file, on a loop device it never had before: another file holds the first free one
    blocker = _ext4(tmp_path / "blocker.ext4", "8M")
    held = subprocess.run(["losetup", "-f", "--show", str(blocker)], capture_output=True,
                          text=True, check=True).stdout.strip()
    try:
        with _Mounted(target, tmp_path / "mnt") as mnt:
            data = mnt / "data"
            st = os.stat(data)
            data.write_bytes(b"student edit! 01\n")              # same size
            os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
            first_device = _source_device(mnt)
        status = run_cli("status", target)
        assert status.returncode == 1 and b"data" in status.stdout, status
        restored = run_cli("restore", "--json", tmp_path / "base.img", target, check_rc=0)
        assert b"another filesystem" not in restored.stderr, restored.stderr
        assert b'"files_written": 1' in restored.stdout, restored.stdout
        with _Mounted(target, tmp_path / "mnt") as mnt:
            assert (mnt / "data").read_bytes() == b"model content 01\n"
            assert _source_device(mnt) != held and first_device != held
        run_cli("status", target, check_rc=0)
    finally:
        subprocess.run(["losetup", "-d", held], check=True)


@pytest.mark.root
def test_keep_on_an_ntfs_target_matches_in_any_case(tmp_path):
    """An admin's lower-case pattern keeps a student's Documents on an NTFS partition (the dry
    run and the restore alike); a pattern that keeps nothing is said."""
    from ntfsbuild import new_ntfs
    tree = tmp_path / "model"
    (tree / "Users" / "Pc" / "Desktop").mkdir(parents=True)
    (tree / "Users" / "Pc" / "Desktop" / "readme.txt").write_text("model")
    for path in (tree, *tree.rglob("*")):           # times NTFS holds (100 ns)
        os.utime(path, (1_700_000_000, 1_700_000_000))
    run_cli("create", "-q", tree, tmp_path / "base.img", check_rc=0)
    volume = new_ntfs(tmp_path / "pc.ntfs")
    run_cli("restore", "-q", tmp_path / "base.img", volume, check_rc=0)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["ntfs-3g", str(volume), str(mnt)], check=True)
    try:
        (mnt / "Users" / "Pc" / "Documents").mkdir()
        (mnt / "Users" / "Pc" / "Documents" / "essay.txt").write_text("student's work")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    dry = run_cli("restore", "--dry-run", "--keep", "/users/*/documents", "--keep", "/nowhere",
                  tmp_path / "base.img", volume, check_rc=0)
    actions = [line for line in dry.stdout.splitlines() if b"kept as they were" not in line]
    assert actions and not any(b"Documents" in line for line in actions), dry.stdout
    assert f"'/nowhere' matches nothing in {volume} (in any case)".encode() in dry.stderr, \
        dry.stderr
    assert b"/users/*/documents" not in dry.stderr, dry.stderr
    run_cli("restore", "-q", "--keep", "/users/*/documents", tmp_path / "base.img", volume,
            check_rc=0)
    subprocess.run(["ntfs-3g", str(volume), str(mnt)], check=True)
    try:
        assert (mnt / "Users" / "Pc" / "Documents" / "essay.txt").read_text() == "student's work"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    status = run_cli("status", volume)       # (a Linux file's mode is not NTFS's to keep)
    assert status.returncode in (0, 1) and b"Documents" not in status.stdout, status


@pytest.mark.root("a squashfs image is read through a loop mount")
def test_a_diff_leaves_kept_paths_as_the_chain_has_them(tmp_path):
    """A host layer made with diff --keep /home stores none of the student's files and deletes
    none of the model's: base + layer is the model's /home with the host's own change."""
    import shutil

    from snapshot import assert_same_tree, snapshot
    model = tmp_path / "model"
    (model / "etc").mkdir(parents=True)
    (model / "etc" / "hostname").write_text("model\n")
    (model / "home" / "teacher").mkdir(parents=True)
    (model / "home" / "teacher" / "notes.txt").write_text("the model's notes")
    run_cli("create", "-q", model, tmp_path / "base.img", check_rc=0)
    machine = tmp_path / "machine"
    shutil.copytree(model, machine, symlinks=True)
    (machine / "home" / "teacher" / "notes.txt").unlink()                  # the student's doing
    (machine / "home" / "student").mkdir()
    (machine / "home" / "student" / "work.txt").write_text("homework")
    (machine / "etc" / "hostname").write_text("pc12\n")                    # the host's own
    run_cli("diff", "-q", "--keep", "/home", machine, tmp_path / "base.img",
            "-o", tmp_path / "pc12.diff", check_rc=0)
    listed = run_cli("ls", tmp_path / "pc12.diff", check_rc=0).stdout
    assert b"student" not in listed
    run_cli("restore", "-q", tmp_path / "base.img", tmp_path / "pc12.diff", tmp_path / "out",
            check_rc=3)                                  # (TARGET must exist)
    (tmp_path / "out").mkdir()
    run_cli("restore", "-q", tmp_path / "base.img", tmp_path / "pc12.diff", tmp_path / "out",
            check_rc=0)
    expected = tmp_path / "expected"
    shutil.copytree(model, expected, symlinks=True)
    (expected / "etc" / "hostname").write_text("pc12\n")
    os.utime(expected / "etc" / "hostname",
             ns=(0, os.stat(machine / "etc" / "hostname").st_mtime_ns))
    for folder in ("", "etc"):
        os.utime(expected / folder, ns=(0, os.stat(machine / folder).st_mtime_ns))
    assert_same_tree(snapshot(tmp_path / "out"), snapshot(expected))

    # nothing but kept paths changed: no image; and a kept path whose folder the tree removed
    # cannot make a tree
    run_cli("diff", "-q", "--keep", "/home", "--keep", "/etc", machine, tmp_path / "base.img",
            "-o", tmp_path / "none.diff", check_rc=1)
    assert not (tmp_path / "none.diff").exists()
    shutil.rmtree(machine / "home" / "teacher")
    refused = run_cli("diff", "-q", "--keep", "/home/teacher/notes.txt", machine,
                      tmp_path / "base.img", "-o", tmp_path / "bad.diff")
    from conftest import assert_one_line_error
    line = assert_one_line_error(refused, 2)
    assert "home/teacher/notes.txt" in line and "not a folder" in line, line
    assert not (tmp_path / "bad.diff").exists()
    # a hardlink group across the kept edge in the tree: no tree (review F8)
    os.link(machine / "home" / "student" / "work.txt", machine / "etc" / "work-link")
    line = assert_one_line_error(run_cli("diff", "-q", "--keep", "/home", machine,
                                         tmp_path / "base.img", "-o", tmp_path / "bad.diff"), 2)
    assert "etc/work-link" in line and "keep both or neither" in line, line
    assert not (tmp_path / "bad.diff").exists()


def test_a_diff_whose_records_leave_out_a_change_is_refused_by_apply_and_rebase(tmp_path):
    """A crafted diff (digests recomputed) whose delta drops one of the changes its manifest
    makes: apply would record the manifest's tree without making it, rebase would drop the
    change; both refuse, exit 8, nothing changed or made."""
    import shutil

    from conftest import assert_one_line_error, rewrite_delta
    from snapshot import snapshot

    from diffimg.image.format import Image
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("a1")
    (tree / "b").write_text("b1")
    run_cli("create", "-q", "--format", "dir", tree, tmp_path / "base", check_rc=0)
    target = machine_at_base(tmp_path)
    host = tmp_path / "host"
    shutil.copytree(tree, host, symlinks=True)
    (tree / "a").write_text("a2")
    (tree / "b").write_text("b2")
    run_cli("diff", "-q", "--format", "dir", tree, tmp_path / "base", "-o", tmp_path / "d1",
            check_rc=0)
    image = Image(tmp_path / "d1")
    rewrite_delta(image, [c for c in image.delta() if c.path != b"b"], tmp_path)
    before = snapshot(target)
    line = assert_one_line_error(run_cli("apply", tmp_path / "d1", target), 8)
    assert "its delta does not make its manifest's tree" in line and "b:" in line, line
    assert snapshot(target) == before
    run_cli("status", target, check_rc=0)

    # the same crafted diff as a host layer carried onto the base's own chain
    line = assert_one_line_error(run_cli("rebase", tmp_path / "d1", "--onto", tmp_path / "base",
                                         "-o", tmp_path / "out.diff"), 8)
    assert "its delta does not make its manifest's tree" in line, line
    assert not (tmp_path / "out.diff").exists()


def _serve_metadata_ranges_only(path, stall=0.0, cut=False):
    """An in-process web server on 127.0.0.1 serving the image at path, that honours a single
    byte range in its metadata (and the first request's tail, remote.TAIL, around it) and
    answers anything else with the whole file, 200: a server that stops honouring ranges once
    content is asked for (stall: after hanging that long; cut: by stopping its first content
    answer half-way, then failing). Returns the server; its meta_start: the metadata's first
    byte."""
    import http.server
    import threading
    import time

    from diffimg.image.format import Image
    meta_start = min(start for start, _, _ in Image(path).blobs.values())
    from_offset = min(meta_start, os.path.getsize(path) - (64 << 10))

    with open(path, "rb") as f:
        data = f.read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()

        def do_GET(self):
            asked = self.headers.get("Range", "")
            spec = asked.removeprefix("bytes=")
            start = end = None
            if asked.startswith("bytes=") and "," not in spec:
                first, _, last = spec.partition("-")
                if first == "":
                    start, end = len(data) - int(last), len(data) - 1
                else:
                    start, end = int(first), min(int(last or len(data) - 1), len(data) - 1)
            if stall and (start is None or start < from_offset):
                time.sleep(stall)                 # content asked for: the server hangs
            if cut and start is not None and start < from_offset:
                if self.server.cut_done:          # then it fails for good
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.server.cut_done = True       # the first answer stops half-way
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(end + 1 - start))
                self.end_headers()
                self.wfile.write(data[start:start + (end + 1 - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if start is not None and start >= from_offset:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                body = data[start:end + 1]
            else:
                self.send_response(200)
                body = data
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.cut_done, server.meta_start = False, meta_start
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _imaged_and_restored(tmp_path):
    """A tree of 40 random files of 20 KB, its squashfs image, and a target restored from it:
    (tree, image, target)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for n in range(40):
        (tree / f"f{n}").write_bytes(os.urandom(20_000))
    image = tmp_path / "base.img"
    run_cli("create", "-q", tree, image, check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", image, target, check_rc=0)
    return tree, image, target


@pytest.mark.root
def test_a_server_that_stops_honouring_ranges_changes_nothing(tmp_path):
    """The target has entries to delete and files to fetch; the server honours the metadata's
    ranges, then sends whole files: exit 19 and the target (its state too) as it was."""
    from conftest import assert_one_line_error
    from snapshot import snapshot

    tree, image, target = _imaged_and_restored(tmp_path)
    (target / "extra").write_text("a file the restore would delete")
    (target / "f3").write_bytes(b"changed")
    state = (target / ".diffimg" / "state.json").read_bytes()
    before = snapshot(target)
    server = _serve_metadata_ranges_only(image)
    assert server.meta_start > 64 << 10
    try:
        proc = run_cli("restore", f"http://127.0.0.1:{server.server_port}/base.img", target,
                       timeout=120)
    finally:
        server.shutdown()
    line = assert_one_line_error(proc, 19)
    assert "nothing was changed" in line, line
    assert snapshot(target) == before
    assert (target / ".diffimg" / "state.json").read_bytes() == state
    run_cli("restore", "-q", image, target, check_rc=0)
    assert (target / "f3").read_bytes() == (tree / "f3").read_bytes()


def test_an_output_that_is_the_chains_image_or_a_partition_is_never_to_be_removed(tmp_path):
    from conftest import assert_one_line_error
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    run_cli("create", "-q", tree, tmp_path / "base.img", check_rc=0)
    (tree / "f").write_text("2")
    line = assert_one_line_error(run_cli("diff", "-q", tree, tmp_path / "base.img", "-o",
                                         tmp_path / "base.img"), 7)
    assert "is an image already" in line and "remove" not in line, line
    partition = _ext4(tmp_path / "model.ext4", "8M")
    line = assert_one_line_error(run_cli("create", "-q", tree, partition), 7)
    assert "holds a filesystem" in line and "remove" not in line, line
    (tmp_path / "notes.txt").write_text("x")
    line = assert_one_line_error(run_cli("create", "-q", tree, tmp_path / "notes.txt"), 7)
    assert "already exists; remove it" in line, line


def test_a_chain_out_of_order_is_named_by_its_files_with_the_order_to_give(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    for n in range(30):
        (tree / f"f{n}").write_text(f"{n}")
    run_cli("create", "-q", "--format", "dir", tree, tmp_path / "base", check_rc=0)
    for name in ("d1", "d2"):
        for n in range(30):
            (tree / f"f{n}").write_text(f"{n} {name}")
        chain = [tmp_path / "base"] + ([tmp_path / "d1"] if name == "d2" else [])
        run_cli("diff", "-q", "--format", "dir", tree, *chain, "-o", tmp_path / name, check_rc=0)
    (tmp_path / "target").mkdir()
    from conftest import assert_one_line_error
    line = assert_one_line_error(run_cli("restore", tmp_path / "base", tmp_path / "d2",
                                         tmp_path / "d1", tmp_path / "target"), 9)
    assert f"{tmp_path}/d2 was not made on {tmp_path}/base but on {tmp_path}/d1" in line, line
    assert f"give them as: {tmp_path}/base {tmp_path}/d1 {tmp_path}/d2" in line, line
    verified = run_cli("verify", tmp_path / "base", tmp_path / "d2", tmp_path / "d1")
    assert verified.returncode == 1
    told = (verified.stdout + verified.stderr).decode()
    assert "out of order" in told and told.count("\n") < 10, told


@pytest.mark.root
def test_a_restore_that_cannot_fit_is_refused_before_it_changes_anything(tmp_path):
    """A 24 MiB partition: 12 MiB of the image's content fits only once the target's own 16 MiB
    file it deletes is gone (counted, so the restore runs); 30 MiB never fits: exit 7, saying
    how much, nothing changed."""
    from conftest import assert_one_line_error
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "data").write_bytes(os.urandom(12 << 20))
    run_cli("create", "-q", tree, tmp_path / "fits.img", check_rc=0)
    (tree / "more").write_bytes(os.urandom(18 << 20))
    run_cli("create", "-q", tree, tmp_path / "too-big.img", check_rc=0)
    target = _ext4(tmp_path / "small.ext4", "24M")
    with _Mounted(target, tmp_path / "mnt") as mnt:
        (mnt / "old").write_bytes(os.urandom(16 << 20))
    line = assert_one_line_error(run_cli("restore", "--yes", tmp_path / "too-big.img", target), 7)
    assert f"{target} has not enough room" in line and "30.0 MiB" in line, line
    assert "nothing was changed" in line, line
    with _Mounted(target, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt)) == ["lost+found", "old"]
    run_cli("restore", "-q", "--yes", tmp_path / "fits.img", target, check_rc=0)
    with _Mounted(target, tmp_path / "mnt") as mnt:
        assert (mnt / "data").read_bytes() == (tree / "data").read_bytes()
        assert not (mnt / "old").exists()


def test_a_symlinked_target_is_refused_by_restore_and_apply_alike(tmp_path):
    from conftest import assert_one_line_error
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    run_cli("create", "-q", "--format", "dir", tree, tmp_path / "base", check_rc=0)
    (tree / "f").write_text("2")
    run_cli("diff", "-q", "--format", "dir", tree, tmp_path / "base", "-o", tmp_path / "d1",
            check_rc=0)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "mine").write_text("kept")
    os.symlink("real", tmp_path / "link")
    for args in (("restore", tmp_path / "base"), ("apply", tmp_path / "d1")):
        for link in (str(tmp_path / "link"), f"{tmp_path}/link/", f"{tmp_path}/link/.",
                     f"{tmp_path}/link/./"):           # (what follows it at the end: F9)
            line = assert_one_line_error(run_cli(*args, link), 7)
            assert "is a symlink (to real)" in line, line
    assert os.listdir(tmp_path / "real") == ["mine"]


@pytest.mark.root
def test_info_names_a_partition_as_given_with_its_uuid_and_label(tmp_path):
    """An image of a partition file records and shows the file, its UUID and label, never the
    folder it was mounted on for the command; a warning about it names it too."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "f").write_text("1")
    volume = tmp_path / "model.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-L", "MODEL", "-U", "0f0e0d0c-0b0a-4908-8706-050403020100",
                    "-d", str(folder), str(volume), "8M"], check=True)
    run_cli("create", "-q", volume, tmp_path / "base.img", check_rc=0)
    shown = run_cli("info", tmp_path / "base.img", check_rc=0).stdout.decode()
    line = next(x for x in shown.splitlines() if x.lstrip().startswith("source"))
    assert f"{volume} (ext4, UUID 0f0e0d0c-0b0a-4908-8706-050403020100, label 'MODEL')" in line, line
    assert "diffimg-run" not in shown and "/dev/loop" not in shown, shown


@pytest.mark.root
def test_status_of_an_ntfs_volume_mounted_by_hand_says_how_to_mount_it(tmp_path):
    from conftest import assert_one_line_error
    from ntfsbuild import new_ntfs
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    run_cli("create", "-q", tree, tmp_path / "base.img", check_rc=0)
    volume = new_ntfs(tmp_path / "pc.ntfs")
    run_cli("restore", "-q", tmp_path / "base.img", volume, check_rc=0)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["ntfs-3g", str(volume), str(mnt)], check=True)       # no umask: all 0777
    try:
        line = assert_one_line_error(run_cli("status", mnt), 15)
        assert "writable by others (mode 0777)" in line and "umask=022" in line, line
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    subprocess.run(["ntfs-3g", "-o", "umask=022", str(volume), str(mnt)], check=True)
    try:
        status = run_cli("status", mnt)
        assert status.returncode in (0, 1) and b"never restored" not in status.stderr, status
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_target_diffimg_never_restored_is_emptied_only_with_yes(tmp_path):
    """The wrong partition given as TARGET (a data disk: diffimg never restored it) is refused,
    its files named, nothing deleted; --dry-run says so; --yes restores; a target diffimg
    restored (a killed restore's too) needs no --yes."""
    from conftest import assert_one_line_error
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("model")
    run_cli("create", "-q", "--format", "dir", tree, tmp_path / "base", check_rc=0)
    data = tmp_path / "data"
    data.mkdir()
    for n in range(5):
        (data / f"thesis-{n}.odt").write_text("years of work")
    line = assert_one_line_error(run_cli("restore", tmp_path / "base", data), 14)
    assert "was never restored by diffimg" in line and "thesis-0.odt" in line, line
    assert "and 2 more" in line and "--yes" in line, line
    assert len(os.listdir(data)) == 5
    dry = run_cli("restore", "--dry-run", tmp_path / "base", data, check_rc=0)
    assert b"asks for --yes" in dry.stderr and len(os.listdir(data)) == 5
    run_cli("restore", "-q", "--yes", tmp_path / "base", data, check_rc=0)
    assert sorted(os.listdir(data)) == [".diffimg", "f"]
    (data / "new").write_text("made since")
    run_cli("restore", "-q", tmp_path / "base", data, check_rc=0)      # its own: no --yes
    assert sorted(os.listdir(data)) == [".diffimg", "f"]


@pytest.mark.root
def test_a_partition_mounted_elsewhere_is_named_by_its_mount_point(tmp_path):
    from conftest import assert_one_line_error
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    run_cli("create", "-q", tree, tmp_path / "base.img", check_rc=0)
    volume = _ext4(tmp_path / "pc.ext4", "8M")
    with _Mounted(volume, tmp_path / "mnt") as mnt:
        for args in (("restore", tmp_path / "base.img", volume),
                     ("create", volume, tmp_path / "pc.img"),
                     ("status", volume)):
            line = assert_one_line_error(run_cli(*args), 17)
            assert f"{volume} is mounted at {mnt}: give that folder instead" in line, line
        assert not (tmp_path / "pc.img").exists()
        assert sorted(os.listdir(mnt)) == ["lost+found"]


@pytest.mark.root
def test_a_restore_killed_while_it_fetches_leaves_proofs_the_next_one_uses(tmp_path):
    """kill -9 while a web restore fetches (its state then says incomplete): the next restore
    still sees a student's edit that kept size and mtime (the rows from before the killed run
    prove the rest), and converges."""
    import signal
    import sys
    import time

    tree, image, target = _imaged_and_restored(tmp_path)
    f5 = target / "f5"
    st = os.stat(f5)
    f5.write_bytes(b"S" * st.st_size)
    os.utime(f5, ns=(st.st_atime_ns, st.st_mtime_ns))
    (target / "f7").unlink()                    # something to fetch
    server = _serve_metadata_ranges_only(image, stall=30)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "diffimg", "restore", "-q",
                                 f"http://127.0.0.1:{server.server_port}/base.img", target],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not any(n.startswith(".diffimg-fetch") for n in os.listdir(target)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        server.shutdown()
    status = run_cli("status", target)
    assert status.returncode == 16, status           # INCOMPLETE
    run_cli("restore", "-q", image, target, check_rc=0)
    assert f5.read_bytes() == (tree / "f5").read_bytes()
    assert (target / "f7").read_bytes() == (tree / "f7").read_bytes()
    run_cli("status", target, check_rc=0)


def test_a_web_restore_that_failed_half_way_resumes_without_fetching_again(tmp_path):
    """The server fails half-way through the content: nothing of the tree changed, what came
    whole is kept in .diffimg/ (no part of the tree); the next restore fetches only the rest,
    and a restore that finishes leaves nothing kept."""
    from conftest import assert_one_line_error
    from snapshot import snapshot
    from webserver import Nginx

    from diffimg.image.format import Image
    tree = tmp_path / "tree"
    tree.mkdir()
    for n in range(40):
        (tree / f"f{n:02d}").write_bytes(os.urandom(50_000))
    image = tmp_path / "www" / "base.img"
    image.parent.mkdir()
    run_cli("create", "-q", tree, image, check_rc=0)
    target = tmp_path / "target"
    target.mkdir()
    server = _serve_metadata_ranges_only(image, cut=True)
    try:
        proc = run_cli("restore", f"http://127.0.0.1:{server.server_port}/base.img", target,
                       env={**os.environ, "DIFFIMG_HTTP_RETRIES": "1"}, timeout=120)
    finally:
        server.shutdown()
    line = assert_one_line_error(proc, 18)
    assert "nothing was changed" in line, line
    assert snapshot(target).keys() == {b""}
    assert sorted(os.listdir(target / ".diffimg")) == ["fetched"]      # (no state of its own)
    kept = os.listdir(target / ".diffimg" / "fetched")
    assert 10 <= len(kept) <= 30, kept
    # a second failure keeps what the first kept, and what it added
    server = _serve_metadata_ranges_only(image, cut=True)
    try:
        proc = run_cli("restore", f"http://127.0.0.1:{server.server_port}/base.img", target,
                       env={**os.environ, "DIFFIMG_HTTP_RETRIES": "1"}, timeout=120)
    finally:
        server.shutdown()
    assert_one_line_error(proc, 18)
    again = os.listdir(target / ".diffimg" / "fetched")
    assert set(kept) < set(again), (kept, again)
    www = Nginx(tmp_path / "www", tmp_path / "nginx").start()
    try:
        run_cli("restore", "-q", f"{www.url}/base.img", target, check_rc=0)
        container = Image(image).container["length"]
        starts = [(row[3], row[4].split("=")[-1].split("-")[0]) for row in www.log()]
        sent = sum(n for n, start in starts if start.isdigit() and int(start) < container)
    finally:
        www.stop()
    assert sent <= container * 0.75, (sent, container)
    from snapshot import assert_same_tree
    assert_same_tree(snapshot(target), snapshot(tree))
    assert not os.path.exists(target / ".diffimg" / "fetched")


@pytest.mark.root
def test_the_room_check_counts_what_a_replacement_holds_and_root_s_reserve(tmp_path):
    """On a 16 MiB ext4: a new 10 MiB file replacing another cannot fit beside it (the old one
    goes only once the new one is written): refused, nothing changed; a restore that fits only
    in root's reserved blocks runs (review: F2, F4); content moved into place frees nothing
    (F3)."""
    from conftest import assert_one_line_error
    from snapshot import snapshot

    def image(name, files):
        tree = tmp_path / f"tree-{name}"
        for path, data in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_bytes(data)
        run_cli("create", "-q", "--format", "dir", tree, tmp_path / name, check_rc=0)
        return tmp_path / name
    big = os.urandom(9 << 20)
    base1 = image("base1", {"big": big})
    base2 = image("base2", {"big": os.urandom(10 << 20)})
    base3 = image("base3", {"sub/moved": big, "new": os.urandom(5500 << 10)})
    base4 = image("base4", {"big": big, "only": os.urandom(4200 << 10)})
    target = _ext4(tmp_path / "t.ext4", "16M")
    with _Mounted(target, tmp_path / "mnt") as mnt:
        run_cli("restore", "-q", base1, mnt, check_rc=0)
        before = snapshot(mnt)
        for refused in (base2, base3):
            line = assert_one_line_error(run_cli("restore", refused, mnt), 7)
            assert "has not enough room" in line and "nothing was changed" in line, line
            assert snapshot(mnt) == before
            run_cli("status", mnt, check_rc=0)
        st = os.statvfs(mnt)
        assert st.f_bavail * st.f_frsize < (4200 << 10) < st.f_bfree * st.f_frsize
        run_cli("restore", "-q", base4, mnt, check_rc=0)
        assert (mnt / "only").stat().st_size == 4200 << 10


def test_a_record_taking_content_from_a_parent_file_of_other_content_is_refused(tmp_path):
    """A crafted diff whose `parent` record names a source of other content: verify says so,
    apply refuses it (exit 8) before anything changes, never blaming the target (review F6)."""
    import dataclasses

    from conftest import assert_one_line_error, rewrite_delta
    from snapshot import snapshot

    from diffimg.image.format import Image
    from diffimg.tree.delta import PARENT
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("AAAA")
    (tree / "b").write_text("BBBB")
    run_cli("create", "-q", "--format", "dir", tree, tmp_path / "base", check_rc=0)
    target = machine_at_base(tmp_path)
    (tree / "c").write_text("AAAA")
    for name in "xyz":
        (tree / name).write_text(name * 100)
    run_cli("diff", "-q", "--format", "dir", tree, tmp_path / "base", "-o", tmp_path / "d1",
            check_rc=0)
    image = Image(tmp_path / "d1")
    changes = image.delta()
    assert any(c.path == b"c" and c.action == PARENT and c.source == b"a" for c in changes)
    rewrite_delta(image, [dataclasses.replace(c, source=b"b") if c.path == b"c" else c
                          for c in changes], tmp_path)
    verified = run_cli("verify", tmp_path / "base", tmp_path / "d1")
    assert verified.returncode == 1 and b"b: a record takes content from it" in verified.stdout, \
        verified
    before = snapshot(target)
    line = assert_one_line_error(run_cli("apply", tmp_path / "d1", target), 8)
    assert "nothing was changed" in line, line
    assert snapshot(target) == before
    run_cli("status", target, check_rc=0)


def test_apply_without_a_state_refuses_a_parent_record_whose_source_holds_other_content(tmp_path):
    """A target apply cannot prove by a state (a copy of the parent): a crafted `parent` record
    whose source holds other content is refused before anything changes, whether the diff
    also changes the source (exit 8) or not (the source is hashed: exit 14), never written
    under a real name (re-attack F-1)."""
    import dataclasses
    import shutil

    from conftest import assert_one_line_error, rewrite_delta
    from snapshot import snapshot

    from diffimg.image.format import Image
    from diffimg.tree.delta import PARENT
    for x_changes, rc in ((True, 8), (False, 14)):
        work = tmp_path / f"x-changes-{x_changes}"
        tree = work / "tree"
        tree.mkdir(parents=True)
        (tree / "x").write_bytes(b"A" * 1000)
        (tree / "y").write_bytes(b"B" * 1000)
        for n in range(5):
            (tree / f"z{n}").write_text(str(n))
        run_cli("create", "-q", "--format", "dir", tree, work / "base", check_rc=0)
        target = work / "target"
        shutil.copytree(tree, target, symlinks=True)
        if x_changes:
            (tree / "x").write_bytes(b"E" * 1000)
        (tree / "y").write_bytes(b"Z" * 1000)
        (tree / "z0").unlink()
        (tree / "a").write_text("new")
        run_cli("diff", "-q", "--format", "dir", tree, work / "base", "-o", work / "diff",
                check_rc=0)
        image = Image(work / "diff")
        rewrite_delta(image, [dataclasses.replace(c, action=PARENT, source=b"x")
                              if c.path == b"y" else c for c in image.delta()], work)
        before = snapshot(target)
        line = assert_one_line_error(run_cli("apply", work / "diff", target), rc)
        assert "x" in line, line
        assert snapshot(target) == before


@pytest.mark.root
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one writer writes one file at a time")
def test_the_room_check_allows_for_files_written_at_once(tmp_path):
    """Two large files in two writers' batches are written at once: a target with room for
    one at a time only is refused before anything changes (re-attack F-2)."""
    from conftest import assert_one_line_error
    from snapshot import snapshot
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a_big").write_bytes(os.urandom(10 << 20))
    for n in range(63):
        (tree / f"m{n:02d}").write_text(f"tiny{n}")
    (tree / "n_big").write_bytes(os.urandom(10 << 20))
    run_cli("create", "-q", "--format", "dir", tree, tmp_path / "img", check_rc=0)
    target = tmp_path / "t"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30M", "tmpfs", str(target)], check=True)
    try:
        for n in range(63):
            (target / f"m{n:02d}").write_bytes(os.urandom(200_000))
        before = snapshot(target)
        line = assert_one_line_error(run_cli("restore", "--yes", tmp_path / "img", target), 7)
        assert "has not enough room" in line and "nothing was changed" in line, line
        assert snapshot(target) == before
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_warnings_reach_stderr_under_json(tmp_path):
    """--json silences progress, never warnings: stdout is the document, stderr says what an
    admin must know (here a --keep pattern that keeps nothing)."""
    import json
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    run_cli("create", "-q", "--format", "dir", tree, tmp_path / "base", check_rc=0)
    (tmp_path / "target").mkdir()
    proc = run_cli("restore", "--json", "--keep", "/nowhere", tmp_path / "base",
                   tmp_path / "target", check_rc=0)
    assert json.loads(proc.stdout)["counts"]["files_written"] == 1
    assert b"'/nowhere' matches nothing" in proc.stderr, proc.stderr
    quiet = run_cli("restore", "-q", "--keep", "/nowhere", tmp_path / "base", tmp_path / "target",
                    check_rc=0)
    assert quiet.stderr == b"", quiet.stderr
