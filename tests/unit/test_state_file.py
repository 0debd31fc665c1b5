"""A target's state in .diffimg/ (target/state.py), on tmp_path targets: written (begin, finish,
confirm) and read back, the undo of a run that changed nothing, the stat rows of a run that did
not finish, and what is refused: damaged, foreign (writable by others, not a regular file, sparse,
too large) or planted content, never followed through a symlink. No root: files of this user
only (a state owned by another user needs chown, and is left to the system tests)."""

import json
import os
import stat
import time

import pytest

from diffimg.entry import Kind
from diffimg.image.containers import dirfmt
from diffimg.image.format import Image, append_metadata
from diffimg.scan.hashing import digest_of
from diffimg.scan.scanner import scan
from diffimg.target import state as st
from diffimg.target.keep import Kept
from diffimg.target.state import State
from diffimg.tree import statcache
from diffimg.tree.manifest import write_manifest

T = 1_600_000_000_000_000_000          # an mtime well before any run
ID = bytes(range(16))
NTFS_HINT = ("; an NTFS volume mounted by hand shows every file so: mount it with ntfs-3g -o umask=022 "
             "(or give the partition itself, which diffimg mounts)")


@pytest.fixture
def target(tmp_path):
    root = tmp_path / "target"
    root.mkdir()
    return root


@pytest.fixture
def root_fd(target):
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def fill(root):
    """Files, a folder, a symlink and a FIFO, with old mtimes (a stat row records only what was
    not touched since the run began)."""
    (root / "sub").mkdir()
    (root / "k").mkdir()
    for name, data in [("a", b"alpha"), ("b", b"beta"), ("sub/c", b"gamma"), ("k/kept", b"kept"),
                       ("changed", b"will change")]:
        (root / name).write_bytes(data)
    os.link(root / "a", root / "a-link")               # hardlinks: of a file vouched for, and not
    os.link(root / "b", root / "b-link")
    os.symlink("a", root / "link")
    os.mkfifo(root / "pipe")
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(T, T), follow_symlinks=False)
    os.utime(root, ns=(T, T))
    time.sleep(0.05)                   # ctimes before what finish takes for now


def image_of(tmp_path, root) -> Image:
    """A dir-format image whose manifest is root's scan (as a restore would have made it)."""
    entries = list(scan(root))
    manifest = tmp_path / "image.manifest"
    trailer = write_manifest(manifest, entries)
    folder = tmp_path / "image"
    folder.mkdir()
    files = [e for e in entries if e.kind is Kind.FILE]
    info = {"kind": "full", "tree_id": trailer["tree_id"], "entries": len(entries),
            "files": len(files), "bytes": sum(e.size for e in files), "stored_files": len(files),
            "stored_bytes": sum(e.size for e in files), "format": "dir", "source": {},
            "created_ns": 0}
    with open(folder / os.fsdecode(dirfmt.META), "wb") as f:
        append_metadata(f, {"format": "dir", "length": 0}, manifest, None, info)
    return Image(folder)


def finished(tmp_path, target, root_fd, verified=lambda index, e, s: True, kept=None):
    fill(target)
    image = image_of(tmp_path, target)
    state = State(False, None, chain=[{"tree_id": image.tree_id.hex(), "file": "image", "kind": "full"}],
                  command="restore", keep=["/k"])
    st.finish(root_fd, state, image, kept, verified)
    return image, state


def state_bytes(target) -> bytes:
    return (target / ".diffimg" / "state.json").read_bytes()


def test_a_finished_run_records_its_tree_and_a_stat_row_for_what_it_vouches_for(tmp_path, target,
                                                                                 root_fd):
    fill(target)
    image = image_of(tmp_path, target)
    (target / "changed").write_bytes(b"changed!!!!")            # after the tree was recorded
    os.utime(target / "changed", ns=(T + 1, T + 1))
    time.sleep(0.05)
    state = State(False, None, chain=[{"tree_id": image.tree_id.hex(), "file": "image", "kind": "full"}],
                  command="restore", keep=["/k"])
    st.finish(root_fd, state, image, Kept({b"k"}), lambda index, e, s: e.path != b"b")
    fs = statcache.identity(root_fd)
    got, why = st.usable_state(root_fd, fs)
    hints = {h.path: (h.ino, h.ctime_ns) for h in st.recorded_hints(root_fd, fs)}

    def proof(name):
        s = os.lstat(target / name)
        return s.st_ino, s.st_ctime_ns
    manifest = target / ".diffimg" / "manifest"
    with open(manifest, "rb") as f:
        manifest_digest = digest_of(f.fileno())
    folder = os.lstat(target / ".diffimg")
    assert (got, why, hints, stat.S_IMODE(folder.st_mode), st.has_state_file(root_fd)) == (
        State(True, image.tree_id, state.chain, "restore", 0, got.finished_ns, ["/k"], manifest_digest),
        "", {b"a": proof("a"), b"a-link": proof("a"), b"b": (None, None), b"b-link": (None, None),
             b"changed": (None, None), b"k/kept": (None, None), b"sub/c": proof("sub/c")}, 0o700, True)
    assert got.finished_ns > 0 and json.loads(state_bytes(target))["tool"].startswith("diffimg ")


def test_a_state_of_another_filesystem_or_without_its_manifest_is_not_used(tmp_path, target, root_fd):
    image, _ = finished(tmp_path, target, root_fd)
    fs = statcache.identity(root_fd)
    other = {"fsid": 1, "dev": 2, "source": "/dev/elsewhere"}
    results = [st.usable_state(root_fd, other)[1], st.usable_state(root_fd, None)[1]]
    manifest = target / ".diffimg" / "manifest"
    data = manifest.read_bytes()
    manifest.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))       # other bytes: not the one recorded
    results.append(st.usable_state(root_fd, fs)[1])
    manifest.unlink()
    results.append(st.usable_state(root_fd, fs)[1])
    assert results == [st.ANOTHER_FILESYSTEM, "its filesystem keeps no usable change times",
                       "its state manifest is damaged", "its state has no manifest"]


def test_begin_marks_the_run_and_its_undo_leaves_the_target_as_it_was(target, root_fd):
    (target / "file").write_bytes(b"x")
    os.utime(target, ns=(T, T))
    undo = st.begin(root_fd, State(False, ID, chain=[{"tree_id": ID.hex(), "file": "a.img", "kind": "full"}],
                                   command="apply", keep=["/home"], finished_ns=5))
    during, why = st.read_state(root_fd)
    mode = stat.S_IMODE(os.lstat(target / ".diffimg").st_mode)
    times_during = os.stat(target).st_mtime_ns
    undo()
    assert (during.complete, during.tree_id, during.finished_ns, during.command, during.keep,
            during.started_ns > 0, why, mode, times_during, sorted(os.listdir(target)),
            os.stat(target).st_mtime_ns, st.read_state(root_fd)) == (
        False, None, None, "apply", ["/home"], True, "", 0o700, T, ["file"], T,
        (None, "no state (diffimg never restored it)"))


def test_a_run_that_did_not_finish_keeps_the_rows_of_the_last_one_and_its_undo_puts_it_back(
        tmp_path, target, root_fd):
    image, _ = finished(tmp_path, target, root_fd)
    fs = statcache.identity(root_fd)
    before = state_bytes(target)
    recorded = list(st.recorded_hints(root_fd, fs))
    undo = st.begin(root_fd, State(False, None, command="apply"))
    usable = st.usable_state(root_fd, fs)
    rows = list(st.unfinished_rows(root_fd, fs))
    other_fs = st.unfinished_rows(root_fd, {"fsid": 1, "dev": 2, "source": "x"})
    undo()
    after_undo = state_bytes(target)
    # a killed run's state again, and a manifest that is not the one it names: no rows
    st.begin(root_fd, State(False, None, command="apply"))
    with open(target / ".diffimg" / "manifest", "ab") as f:
        f.write(b"\0")
    damaged = st.unfinished_rows(root_fd, fs)
    assert (usable, rows, other_fs, after_undo, damaged, len(rows)) == (
        (None, "its last restore or apply did not finish"), recorded, None, before, None, 7)


def test_confirm_writes_the_state_anew_and_keeps_the_manifest(tmp_path, target, root_fd):
    image, state = finished(tmp_path, target, root_fd)
    manifest = (target / ".diffimg" / "manifest").read_bytes()
    first, _ = st.read_state(root_fd)
    st.confirm(root_fd, State(False, None, chain=state.chain, command="restore",
                              manifest_digest=first.manifest_digest), image.tree_id)
    again, why = st.read_state(root_fd)
    assert ((again.complete, again.tree_id, again.manifest_digest, again.finished_ns >= first.finished_ns,
             why), (target / ".diffimg" / "manifest").read_bytes(),
            st.usable_state(root_fd, statcache.identity(root_fd))[1]) == (
        (True, image.tree_id, first.manifest_digest, True, ""), manifest, "")


GOOD = {"format": 1, "complete": True, "tree_id": ID.hex(), "chain": [
    {"tree_id": ID.hex(), "file": "a.img", "kind": "full", "host": "pc07"}], "command": "restore",
    "started_ns": 1, "finished_ns": 2, "keep": ["/home"], "manifest_xxh3": ID.hex()}


def _with(**changes):
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not _GONE}).encode()


_GONE = object()


@pytest.mark.parametrize("data", [
    b"", b"not json", b"\xff\xfe{}", b"[]", b"{}", b"null", b'"text"', b"[" * 100_000 + b"]" * 100_000,
    _with(complete=_GONE), _with(tree_id=_GONE), _with(chain=_GONE), _with(complete="yes"),
    _with(complete=1), _with(tree_id=None), _with(tree_id="zz"), _with(tree_id="00" * 15),
    _with(tree_id=7), _with(chain={}), _with(chain=["a.img"]), _with(chain=[{"tree_id": "x"}]),
    _with(chain=[{"tree_id": "x", "file": "f", "kind": 3}]),
    _with(chain=[{"tree_id": "x", "file": "f", "kind": "full", "host": None}]),
    _with(keep="/home"), _with(keep=[1]), _with(keep=["../etc"]), _with(keep=["/.diffimg"]),
    _with(keep=[""]), _with(started_ns=-1), _with(started_ns=1 << 63), _with(started_ns="1"),
    _with(started_ns=1.5), _with(finished_ns=-5), _with(manifest_xxh3=None),
    _with(manifest_xxh3="abc"), _with(manifest_xxh3="00" * 8),
    b"{" + b'"complete": true, ' * 3 + b'"tree_id": NaN}',
    b" " * (st.MAX_STATE_BYTES - 10) + _with(),                    # longer than a state can be
])
def test_a_damaged_state_file_is_no_state(target, root_fd, data):
    st.begin(root_fd, State(False, None))
    (target / ".diffimg" / "state.json").write_bytes(data)
    assert st.read_state(root_fd) == (None, "its state file is damaged")


@pytest.mark.parametrize("doc, state", [
    (_with(), State(True, ID, GOOD["chain"], "restore", 1, 2, ["/home"], ID)),
    (json.dumps({"complete": False, "tree_id": None, "chain": []}).encode(),
     State(False, None, [], "", 0, None, [], None)),
    (_with(started_ns=None, finished_ns=None, keep=None, command=7, format=99, extra={"a": 1}),
     State(True, ID, GOOD["chain"], "7", 0, None, [], ID)),
])
def test_a_sound_state_file_reads_back_as_written(target, root_fd, doc, state):
    st.begin(root_fd, State(False, None))
    (target / ".diffimg" / "state.json").write_bytes(doc)
    assert st.read_state(root_fd) == (state, "")


def _sparse(path):
    with open(path, "wb") as f:
        f.truncate(1 << 20)
        f.seek((1 << 20) - 100)
        f.write(b" " * 100)


def _planted(target, how):
    """The state folder or file made otherwise than diffimg makes them."""
    state_dir = target / ".diffimg"
    state_file = state_dir / "state.json"
    outside = target.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "state.json").write_bytes(_with())
    if how == "folder is a file":
        state_dir.write_bytes(b"x")
        return
    if how == "folder is a symlink":
        state_dir.symlink_to(outside)
        return
    state_dir.mkdir(mode=0o700)
    if how == "folder writable by all":
        state_dir.chmod(0o777)
        state_file.write_bytes(_with())
    elif how == "folder writable by its group":
        state_dir.chmod(0o770)
        state_file.write_bytes(_with())
    elif how == "file writable by others":
        state_file.write_bytes(_with())
        state_file.chmod(0o646)
    elif how == "file is a FIFO":
        os.mkfifo(state_file, 0o600)
    elif how == "file is a folder":
        state_file.mkdir(mode=0o700)
    elif how == "file is a symlink":
        state_file.symlink_to(outside / "state.json")
    elif how == "file is sparse":
        _sparse(state_file)
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how, why", [
    ("folder is a file", "its state (.diffimg) is not a file diffimg wrote, and is not trusted"),
    ("folder is a symlink", "its state (.diffimg) is a symlink, which is never followed, so it is "
     "not trusted"),
    ("folder writable by all", "its state (.diffimg) is writable by others (mode 0777), so it is not "
     "trusted" + NTFS_HINT),
    ("folder writable by its group", "its state (.diffimg) is writable by others (mode 0770), so it is "
     "not trusted"),
    ("file writable by others", "its state (.diffimg/state.json) is writable by others (mode 0646), "
     "so it is not trusted"),
    ("file is a FIFO", "its state (.diffimg/state.json) is not a file diffimg wrote, and is not trusted"),
    ("file is a folder", "its state (.diffimg/state.json) is not a file diffimg wrote, and is not "
     "trusted"),
    ("file is a symlink", "its state (.diffimg/state.json) is a symlink, which is never followed, "
     "so it is not trusted"),
    ("file is sparse", "its state (.diffimg/state.json) is not a file diffimg wrote, and is not "
     "trusted"),
])
def test_a_state_diffimg_did_not_write_is_not_trusted(target, root_fd, how, why):
    _planted(target, how)
    assert st.read_state(root_fd) == (None, why)


@pytest.mark.parametrize("how", ["folder is a file", "folder is a symlink", "folder writable by all",
                                 "file is a FIFO", "file is a folder", "file is a symlink",
                                 "file is sparse"])
def test_a_run_writes_its_state_over_what_was_planted_never_through_it(target, root_fd, how):
    _planted(target, how)
    outside = target.parent / "outside"
    before = {p: p.read_bytes() for p in outside.iterdir()}
    if how not in ("folder is a file", "folder is a symlink"):
        (target / ".diffimg" / "state.json.tmp-99999").write_bytes(b"a killed run's")
    st.begin(root_fd, State(False, None, command="restore"))
    got, why = st.read_state(root_fd)
    folder = os.lstat(target / ".diffimg")
    assert ((got.complete, got.command, why), stat.S_ISDIR(folder.st_mode),
            stat.S_IMODE(folder.st_mode), sorted(os.listdir(target / ".diffimg")),
            {p: p.read_bytes() for p in outside.iterdir()}) == (
        (False, "restore", ""), True, 0o700, ["state.json"], before)
