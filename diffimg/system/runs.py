"""What a run leaves behind if it is killed (kill -9, a power cut), and its cleanup by the next.

Each diffimg process that makes temporary things gets a run folder, /tmp/diffimg-run-PID-XXXX,
holding a lock file it keeps locked while it lives, the mount points of the images it mounts,
the multiprocessing's socket, and a list of the temporary paths it makes elsewhere (an image
being written, its manifest and staging folder, beside the output). Any later diffimg command
first looks for run folders whose lock is free: their run is dead, and what they list (and
only that) is unmounted and removed.
"""

import atexit
import contextlib
import fcntl
import os
import stat
import subprocess
import tempfile
import threading
import time

from .safefs import private_to_us, remove

PREFIX = "diffimg-run-"
_LOCK = b"lock"
_MADE = b"made"        # one temporary path per line, hex-encoded (any bytes a path may hold)

_lock = threading.Lock()
_current: "Run | None" = None


class Run:
    """This process's run folder (see the module's doc)."""

    def __init__(self):
        self.pid = os.getpid()
        self.folder = os.fsencode(tempfile.mkdtemp(prefix=f"{PREFIX}{self.pid}-"))
        # locked before it gets its name: a lock file seen unlocked is a dead run's
        self._lock_fd = os.open(os.path.join(self.folder, b"lock.new"),
                                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        os.rename(os.path.join(self.folder, b"lock.new"), os.path.join(self.folder, _LOCK))
        self._mounts = 0

    def mount_point(self) -> bytes:
        """A new empty folder to mount an image on."""
        with _lock:
            self._mounts += 1
            path = os.path.join(self.folder, b"mnt-%d" % self._mounts)
        os.mkdir(path, 0o700)
        return path

    def made(self, path):
        """Note a temporary path (made next, outside the run folder; its name holds -PID) for a
        later run's cleanup."""
        line = os.path.abspath(os.fsencode(path)).hex().encode() + b"\n"
        with _lock, open(os.path.join(self.folder, _MADE), "ab") as f:
            f.write(line)

    def close(self):
        """At a normal end: what it listed and still exists is a leftover of an interrupted
        step, and goes with the folder (its mounts were undone by their owners)."""
        if os.getpid() != self.pid:
            return                      # a forked child inherited the atexit hook
        with contextlib.suppress(OSError):
            _clean(self.folder, self.pid)
        os.close(self._lock_fd)


def current() -> Run:
    """This process's run, made on first use and removed at exit."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = Run()
            atexit.register(_current.close)
        return _current


def multiprocessing_folder() -> str:
    """Where multiprocessing keeps its socket: inside the run folder, so a killed run's is
    cleaned up too (it would make /tmp/pymp-* of its own)."""
    return os.fsdecode(current().folder)


STALE_NS = 60 * 10**9      # a run folder without a lock file this old was never finished


def clean_dead_runs(on_warning=None) -> int:
    """Unmount and remove what killed runs left (in this TMPDIR and in /tmp, where a run with
    another TMPDIR may have been); the number of runs cleaned."""
    cleaned = 0
    for top in {os.fsencode(tempfile.gettempdir()), b"/tmp"}:
        try:
            names = [n for n in os.listdir(top) if n.startswith(PREFIX.encode())]
        except OSError:
            continue
        for name in names:
            folder = os.path.join(top, name)
            pid = _owned_run(folder, name)
            claim = _claim(folder) if pid is not None else None
            if claim is None:
                continue
            try:
                problems = _clean(folder, pid)
            finally:
                if claim >= 0:
                    os.close(claim)
            if problems and on_warning is not None:
                on_warning(f"cannot clean up after a killed diffimg ({os.fsdecode(folder)}): "
                           + "; ".join(problems))
            cleaned += 1
    return cleaned


def _owned_run(folder: bytes, name: bytes) -> int | None:
    """The PID in a run folder's name, when the folder is one this user made (a real folder,
    owned by us, writable by no one else): what another user planted there is never acted on."""
    try:
        st = os.lstat(folder)
        pid = int(name[len(PREFIX):].split(b"-")[0])
    except (OSError, ValueError):
        return None
    if not stat.S_ISDIR(st.st_mode) or not private_to_us(st):
        return None
    return pid


def _claim(folder: bytes) -> int | None:
    """The dead run's lock, taken (held while its leftovers are cleaned, so two runs never
    clean one folder at once); -1 for a folder that never got its lock file and is older than
    STALE_NS; None while the run lives (or its folder is being made)."""
    try:
        fd = os.open(os.path.join(folder, _LOCK), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            old = time.time_ns() - os.lstat(folder).st_mtime_ns > STALE_NS
        except OSError:
            return None
        return -1 if old else None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _clean(folder: bytes, pid: int) -> list[str]:
    """Unmount what is mounted below folder, remove the temporary paths it lists (whose names
    hold -pid), then the folder; its lock file goes last, and stays when anything could not be
    removed, so that a later run tries again."""
    problems = []
    for point in _mounts_below(folder):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    try:
        with open(os.path.join(folder, _MADE), "rb") as f:
            made = [bytes.fromhex(line.strip().decode()) for line in f if line.strip()]
    except FileNotFoundError:
        made = []
    except (OSError, ValueError) as exc:
        problems.append(f"its list is unreadable ({exc})")
        made = []
    for path in made:
        if b"-%d" % pid not in os.path.basename(path):
            continue                    # not a name this run gives its temporary paths
        try:
            _remove_quietly(path)
        except OSError as exc:
            problems.append(f"{os.fsdecode(path)}: {exc.strerror}")
    try:
        for name in os.listdir(folder):
            if name != _LOCK:
                _remove_quietly(os.path.join(folder, name))
        if not problems:
            _remove_quietly(os.path.join(folder, _LOCK))
            os.rmdir(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(f"{os.fsdecode(folder)}: {exc.strerror}")
    return problems


def _mounts_below(folder: bytes) -> list[bytes]:
    from .fsmeta import mount_points_below
    return [os.path.join(folder, p) for p in sorted(mount_points_below(folder), reverse=True)]


def _remove_quietly(path: bytes):
    """Remove path (a folder with its subtree, never across a mount point) if it exists."""
    parent, name = os.path.split(path)
    try:
        fd = os.open(parent or b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        remove(fd, name)
    finally:
        os.close(fd)
