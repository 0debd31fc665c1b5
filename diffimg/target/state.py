"""A target's state: what the last restore or apply made of it, in .diffimg/ at its root.

    .diffimg/state.json   the run: complete or not, the chain, the tree ID, when, which command
    .diffimg/manifest     the tree it made, with a stat section of the target's own entries

state.json is written with "complete": false before a run changes anything, and the manifest and
then state.json ("complete": true) last, after the final sync; each by temporary name, fsync and
rename. A run killed on the way leaves an incomplete state, which nothing trusts. The next
restore, apply, diff, compare or status trusts the recorded content of a file whose stat still
equals the manifest's stat row (statcache.py). Everything here goes through the target root's fd
without following symlinks: the target may hold anything, this folder too.
"""

import contextlib
import errno
import json
import os
import stat
import time
from dataclasses import dataclass, field

from .. import __version__
from ..entry import KIND_OF_FMT, Kind
from ..errors import ManifestError, OutputError, show_path
from ..scan.hashing import digest_of, has_holes
from ..system.safefs import DIR_FLAGS, Dirs, fd_path, names_in, private_to_us, remove, replace, split
from ..tree import statcache
from ..tree.manifest import STATE_DIR, ManifestReader
from .keep import parse as parse_patterns

STATE_FILE = b"state.json"
MANIFEST_FILE = b"manifest"
MAX_STATE_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 16 << 30      # a manifest of tens of millions of entries
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


@dataclass
class State:
    """state.json, as read."""
    complete: bool
    tree_id: bytes | None          # the tree the run made (None until complete)
    chain: list = field(default_factory=list)    # {"tree_id", "file", "kind"} per layer
    command: str = ""
    started_ns: int = 0
    finished_ns: int | None = None
    keep: list = field(default_factory=list)     # --keep patterns: paths left as they were
    manifest_digest: bytes | None = None         # xxh3-128 of .diffimg/manifest (complete only)

    def to_json(self) -> dict:
        return {"format": 1, "complete": self.complete,
                "tree_id": self.tree_id.hex() if self.tree_id else None, "chain": self.chain,
                "command": self.command, "started_ns": self.started_ns,
                "finished_ns": self.finished_ns, "keep": self.keep,
                "manifest_xxh3": self.manifest_digest.hex() if self.manifest_digest else None,
                "tool": f"diffimg {__version__}"}


def layer_record(image, host: str | None = None) -> dict:
    """What the state keeps of a layer; host: the machine name whose host layer it is."""
    record = {"tree_id": image.tree_id.hex(), "file": os.path.basename(os.fsdecode(image.path)),
              "kind": image.kind, "windows_defaults": image.info.get("windows_defaults") is True}
    if host is not None:
        record["host"] = host
    return record


def has_state_file(root_fd: int) -> bool:
    """Whether diffimg ever restored the target: it holds a .diffimg/state.json, trusted or not
    (an NTFS volume mounted by hand shows it writable by all), complete or not."""
    try:
        dir_fd = os.open(STATE_DIR, DIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.lstat(STATE_FILE, dir_fd=dir_fd).st_mode)
    except OSError:
        return False
    finally:
        os.close(dir_fd)


def _why_no_state(dir_fd: int, name: bytes) -> str:
    """Why the state folder or file name in dir_fd was not read: there is none, or what is there
    is not trusted (and how to mend that)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return "no state (diffimg never restored it)"
    shown = (STATE_DIR + b"/" + name).decode() if name != STATE_DIR else name.decode()
    if private_to_us(st):
        return f"its state ({shown}) is not a file diffimg wrote, and is not trusted"
    if stat.S_ISLNK(st.st_mode):        # (a symlink's own mode is 0777: no NTFS hint)
        return f"its state ({shown}) is a symlink, which is never followed, so it is not trusted"
    whose = (f"owned by user {st.st_uid}" if st.st_uid != os.geteuid()
             else f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})")
    hint = ("; an NTFS volume mounted by hand shows every file so: mount it with ntfs-3g "
            "-o umask=022 (or give the partition itself, which diffimg mounts)"
            if stat.S_IMODE(st.st_mode) == 0o777 else "")
    return f"its state ({shown}) is {whose}, so it is not trusted{hint}"


def _open_state_dir(root_fd: int) -> int | None:
    """An fd of .diffimg/, None when there is none to read (or it cannot be opened, or it is
    not diffimg's: owned by another user, or writable by others)."""
    try:
        fd = os.open(STATE_DIR, DIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return None
    if not private_to_us(os.fstat(fd)):
        os.close(fd)
        return None
    return fd


def state_dir(root_fd: int) -> int:
    """An fd of .diffimg/ (made when missing, this user's and closed to others)."""
    return _make_dir(root_fd)


def _make_dir(root_fd: int) -> int:
    """An fd of .diffimg/, made when missing, owned by this user and closed to others. Anything
    else with that name (a file, a symlink) is not diffimg's and is removed. Any other failure
    is raised: the state is never written anywhere else."""
    try:
        fd = os.open(STATE_DIR, DIR_FLAGS, dir_fd=root_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        with _root_times_kept(root_fd):
            if exc.errno != errno.ENOENT:
                os.unlink(STATE_DIR, dir_fd=root_fd)
            os.mkdir(STATE_DIR, 0o700, dir_fd=root_fd)
        fd = os.open(STATE_DIR, DIR_FLAGS, dir_fd=root_fd)
    try:
        os.fchown(fd, os.geteuid(), os.getegid())
        os.fchmod(fd, 0o700)
        # the target is locked by this run: a temporary file of this folder's (state.json.tmp-PID,
        # .manifest.tmp-PID) is a killed run's, gone now; what cannot go stays
        for name in names_in(fd):
            if b".tmp-" in name and name not in (STATE_FILE, MANIFEST_FILE):
                with contextlib.suppress(OSError):
                    remove(fd, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _root_times_kept(root_fd: int):
    """The root's times as they were: .diffimg/ is no part of the tree, nor is its coming."""
    st = os.fstat(root_fd)
    yield
    os.utime(root_fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _open_regular(dir_fd: int, name: bytes) -> int | None:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    st = os.fstat(fd)
    # a state file diffimg wrote: regular, its own, of a plausible size and without holes (a
    # planted 16 TiB sparse "manifest" would take hours to read)
    if not stat.S_ISREG(st.st_mode) or not private_to_us(st) or st.st_size > MAX_MANIFEST_BYTES \
            or has_holes(fd, st.st_size):
        os.close(fd)
        return None
    return fd


def read_state(root_fd: int) -> tuple[State | None, str]:
    """The target's state and, when there is none usable, why (for a message)."""
    dir_fd = _open_state_dir(root_fd)
    if dir_fd is None:
        return None, _why_no_state(root_fd, STATE_DIR)
    try:
        fd = _open_regular(dir_fd, STATE_FILE)
        if fd is None:
            return None, _why_no_state(dir_fd, STATE_FILE)
        with open(fd, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    finally:
        os.close(dir_fd)
    try:
        doc = json.loads(data) if len(data) <= MAX_STATE_BYTES else None
        state = _state_of(doc)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None, "its state file is damaged"
    return state, ""


def _state_of(doc) -> State:
    tree_id = bytes.fromhex(doc["tree_id"]) if doc["tree_id"] is not None else None
    chain = doc["chain"]
    if type(doc["complete"]) is not bool or type(chain) is not list or not all(
            type(layer) is dict and all(type(layer.get(k)) is str for k in ("tree_id", "file", "kind"))
            and type(layer.get("host", "")) is str for layer in chain) \
            or (doc["complete"] and (tree_id is None or len(tree_id) != 16)):
        raise ValueError("bad state")
    keep = doc.get("keep") or []
    if type(keep) is not list or not all(type(k) is str for k in keep):
        raise ValueError("bad state")
    parse_patterns(keep)                       # BadPattern is a ValueError too
    started, finished = doc.get("started_ns") or 0, doc.get("finished_ns")
    for ns in (started, finished):
        if ns is not None and (type(ns) is not int or not 0 <= ns < 1 << 63):
            raise ValueError("bad state")
    digest = doc.get("manifest_xxh3")
    digest = bytes.fromhex(digest) if digest is not None else None
    if doc["complete"] and (digest is None or len(digest) != 16):
        raise ValueError("bad state")
    return State(doc["complete"], tree_id, chain, str(doc.get("command", "")), started, finished,
                 keep, digest)


class RecordedTree:
    """The manifest of a complete state, opened safely: its reader, and a /proc path that
    names the very file opened (the target could swap names meanwhile). With digest (the
    state's manifest_digest), a file of other bytes counts as none (intact is False)."""

    def __init__(self, root_fd: int, digest: bytes | None = None):
        self.fd = None
        self.intact = True
        dir_fd = _open_state_dir(root_fd)
        if dir_fd is not None:
            try:
                self.fd = _open_regular(dir_fd, MANIFEST_FILE)
            finally:
                os.close(dir_fd)
        if self.fd is not None and digest is not None and digest_of(self.fd) != digest:
            self.intact = False
            self.close()
        self.path = fd_path(self.fd) if self.fd is not None else None

    def reader(self) -> ManifestReader:
        return ManifestReader(self.path)

    def hints(self, filesystem):
        """The recorded files' hints, with their stat proofs on filesystem (streamed)."""
        with self.reader() as m:
            yield from m.file_hints(filesystem)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def recorded_hints(root_fd: int, filesystem):
    """The hints of the target's recorded tree (see RecordedTree.hints), streamed."""
    with RecordedTree(root_fd) as recorded:
        yield from recorded.hints(filesystem)


# why a state is not usable that leaves nothing to trust: its rows were taken on another
# filesystem (not this one, remounted: statcache.identity), so it says nothing of these files
ANOTHER_FILESYSTEM = "its state was recorded on another filesystem"


def usable_state(root_fd: int, filesystem) -> tuple[State | None, str]:
    """The complete state whose stat rows were taken on this filesystem, or None and why."""
    state, why = read_state(root_fd)
    if state is None:
        return None, why
    if not state.complete:
        return None, "its last restore or apply did not finish"
    if filesystem is None:
        return None, "its filesystem keeps no usable change times"
    try:
        with RecordedTree(root_fd, state.manifest_digest) as recorded:
            if not recorded.intact:
                return None, "its state manifest is damaged"
            if recorded.fd is None:
                return None, "its state has no manifest"
            with recorded.reader() as m:
                section = m.stat_section()
            if section is None or section.filesystem != filesystem or section.tree_id != state.tree_id:
                return None, ANOTHER_FILESYSTEM
    except ManifestError:
        return None, "its state manifest is damaged"
    return state, ""


def unfinished_rows(root_fd: int, filesystem):
    """The stat rows' hints (see recorded_hints) of a target whose last run did not finish,
    when the manifest its state names is there, intact, with rows taken on this filesystem;
    else None. A row still proves its file: whatever the stopped run changed (wrote, renamed,
    linked, chmod, xattr) has a ctime of its own, and is hashed."""
    state, _ = read_state(root_fd)
    if state is None or state.complete or state.manifest_digest is None or filesystem is None:
        return None
    try:
        with RecordedTree(root_fd, state.manifest_digest) as recorded:
            if not recorded.intact or recorded.fd is None:
                return None
            with recorded.reader() as m:
                section = m.stat_section()
            if section is None or section.filesystem != filesystem:
                return None
    except ManifestError:
        return None
    return recorded_hints(root_fd, filesystem)


def begin(root_fd: int, state: State):
    """Mark the target as being changed: an incomplete state, before anything else is written.
    Returns what puts the state file back as it was, for a run that fails before it changes
    anything else (a web server that fails while content is fetched)."""
    had = _state_bytes(root_fd)
    try:
        os.lstat(STATE_DIR, dir_fd=root_fd)
        made_dir = False
    except FileNotFoundError:
        made_dir = True                 # (undo takes it away again)
    before, _ = read_state(root_fd)
    if state.manifest_digest is None and before is not None:
        # the manifest (and its stat rows) stay until finish replaces them: naming them lets a
        # run after a kill still prove what this one leaves untouched (unfinished_rows)
        state.manifest_digest = before.manifest_digest
    state.complete, state.tree_id, state.finished_ns = False, None, None
    state.started_ns = state.started_ns or time.time_ns()
    _write_state_file(root_fd, state)

    def undo():
        try:
            dir_fd = _make_dir(root_fd)
            try:
                if had is None:
                    os.unlink(STATE_FILE, dir_fd=dir_fd)
                else:
                    _write_atomically(dir_fd, STATE_FILE, had)
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            if made_dir:                # unless it keeps fetched content (fetchkeep.py)
                with _root_times_kept(root_fd), contextlib.suppress(OSError):
                    os.rmdir(STATE_DIR, dir_fd=root_fd)
        except OSError:
            pass            # an incomplete state is left: the next run trusts nothing of it
    return undo


def _state_bytes(root_fd: int) -> bytes | None:
    """state.json as it is (None when there is none), bounded."""
    dir_fd = _open_state_dir(root_fd)
    if dir_fd is None:
        return None
    try:
        fd = _open_regular(dir_fd, STATE_FILE)
        if fd is None:
            return None
        with open(fd, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
        return data if len(data) <= MAX_STATE_BYTES else None
    finally:
        os.close(dir_fd)


def finish(root_fd: int, state: State, image, kept, verified, stat_of=None):
    """Record the tree the run made, the image's: its manifest's records (as the image holds
    them), a stat row per entry taken now from the target (or from stat_of(entry), asked in
    order: a stat result, or None where there is none), then the complete state. A row
    vouches for a file's content, so a file gets one only when verified(index, entry, stat)
    says this run wrote or checked that content (a later hardlink member: its group's first);
    none for kept paths, or where the target's entry is not the recorded one."""
    try:
        dir_fd = _make_dir(root_fd)
    except OSError as exc:
        raise _state_error(exc) from None
    tmp = b".manifest.tmp-%d" % os.getpid()
    try:
        fd = _new_file(dir_fd, tmp)
        with open(fd, "wb") as f:
            # the filesystem's own clock: a change from now on gets a ctime at least this
            bound = os.fstat(fd).st_ctime_ns
            rows = statcache.StatRecorder(statcache.identity(root_fd), bound)
            start, end = image.manifest_records()
            with open(image.meta_path, "rb") as src:
                src.seek(start)
                f.write(src.read(end - start))
            _record_rows(root_fd, rows, image.entries(), kept, verified, stat_of)
            rows.write(f, end - start, image.tree_id)
            f.flush()
            os.fsync(f.fileno())
            state.manifest_digest = digest_of(f.fileno())
        replace(dir_fd, tmp, MANIFEST_FILE)
        state.complete, state.tree_id, state.finished_ns = True, image.tree_id, time.time_ns()
        _write_atomically(dir_fd, STATE_FILE, json.dumps(state.to_json(), indent=1).encode())
        os.fsync(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise _state_error(exc) from None
    finally:
        os.close(dir_fd)


def confirm(root_fd: int, state: State, tree_id: bytes):
    """A run that changed nothing on a target whose complete state is of tree_id: its manifest
    and stat rows still hold; only state.json is written anew (the chain, the time)."""
    state.complete, state.tree_id, state.finished_ns = True, tree_id, time.time_ns()
    state.started_ns = state.started_ns or state.finished_ns
    _write_state_file(root_fd, state)


def _write_state_file(root_fd: int, state: State):
    """state.json, written atomically in .diffimg/ (made if needed)."""
    try:
        dir_fd = _make_dir(root_fd)
        try:
            _write_atomically(dir_fd, STATE_FILE, json.dumps(state.to_json(), indent=1).encode())
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _state_error(exc) from None


def _record_rows(root_fd: int, stats, entries, kept, verified, stat_of=None):
    """A stat row for each entry: zero where the target's entry is not the recorded one (its
    kind, size or mtime differ), is kept, or is a file whose content this run did not verify.
    stat_of(entry): its stat, instead of asking the target."""
    dirs = Dirs(root_fd)
    unverified_leaders: set[bytes] = set()
    try:
        for index, e in enumerate(entries):
            parent, name = split(e.path)
            e.ino = e.ctime_ns = None
            if kept and kept.covers(e.path):
                if e.kind is Kind.FILE and e.link is None:
                    unverified_leaders.add(e.path)
                stats.add(e)
                continue
            if stat_of is not None:
                st = stat_of(e)
            else:
                try:
                    st = os.fstat(root_fd) if not e.path else os.lstat(name, dir_fd=dirs.fd(parent))
                except OSError:
                    st = None
            if st is not None and st.st_mtime_ns == e.mtime_ns and KIND_OF_FMT.get(
                    stat.S_IFMT(st.st_mode)) is e.kind and (e.kind is not Kind.FILE or st.st_size == e.size):
                if e.kind is not Kind.FILE:
                    e.ino, e.ctime_ns = st.st_ino, st.st_ctime_ns
                elif e.link is not None:
                    if e.link not in unverified_leaders:
                        e.ino, e.ctime_ns = st.st_ino, st.st_ctime_ns
                elif verified(index, e, st):
                    e.ino, e.ctime_ns = st.st_ino, st.st_ctime_ns
            if e.kind is Kind.FILE and e.link is None and e.ino is None:
                unverified_leaders.add(e.path)
            stats.add(e)
    finally:
        dirs.close()


def _state_error(exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"the target is full: cannot record its state in {show_path(STATE_DIR)}")
    return OutputError(f"cannot record the target's state in {show_path(STATE_DIR)}: {exc.strerror}")


def _new_file(dir_fd: int, name: bytes) -> int:
    """A new file name in .diffimg/, whatever a killed run (or anyone) left under that name."""
    remove(dir_fd, name)
    return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                   dir_fd=dir_fd)


def _write_atomically(dir_fd: int, name: bytes, data: bytes):
    tmp = name + b".tmp-%d" % os.getpid()
    fd = _new_file(dir_fd, tmp)
    with open(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    replace(dir_fd, tmp, name)
