"""Carry out a Plan on a target, in a safe order.

Keep aside target content that a write needs but whose path is going away, delete, make
folders, make symlinks and special files, write files (worker processes; temporary name, digest
check, rename), link hardlinks, fix metadata, and last the folders' metadata, deepest first, so
their times stay as recorded. Every path is resolved from the target root's fd (safefs).
"""

import contextlib
import errno
import fcntl
import functools
import itertools
import os
import stat

from ..entry import KIND_OF_FMT
from ..errors import Busy, DiffimgError, ImageError, InputNotFound, OutputError, show_path
from ..progress import Phase
from ..scan.hashing import Problem, copy_file
from ..system.safefs import (
    Dirs,
    make_special,
    open_dir,
    proc_path,
    pwrite_all,
    remove,
    set_meta_at,
    set_meta_fd,
    split,
)
from ..system.workers import run_pooled
from ..windows import ntfs, streams
from ..windows.streams import STORE_DIR, large
from . import fetchkeep
from .planner import Plan
from .writer import From, Job, Root, place, write_batch

RESCUE_DIR = b".diffimg-rescue"
FETCH_DIR = b".diffimg-fetch"
TMP_PREFIX = b".diffimg-tmp-"


@contextlib.contextmanager
def locked_target(target: bytes):
    """The target root's fd, with an exclusive lock: a second restore of it refuses. TARGET
    itself is never followed when it is a symlink (restore and apply alike): it is refused,
    naming where it points."""
    name = target                   # (a trailing "/" or "/." would follow a symlink)
    while name.endswith((b"/", b"/.")) and name not in (b"/", b"/."):
        name = name[:-1] if name.endswith(b"/") else name[:-2]
    name = name or b"/"
    if os.path.islink(name):
        raise OutputError(f"{show_path(target)} is a symlink (to {show_path(os.readlink(name))}):"
                          " give the folder itself; nothing was changed")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise InputNotFound(f"no such folder: {show_path(target)}") from None
    except NotADirectoryError:
        raise OutputError(f"{show_path(target)} is not a folder") from None
    except OSError as exc:                 # (ELOOP: made a symlink since)
        raise OutputError(f"cannot open {show_path(target)}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another diffimg is restoring {show_path(target)}; try again when it "
                       "has finished") from None
        yield fd
    finally:
        os.close(fd)


class _RunNames:
    """The names of one run's own in the target: a leftover of a killed run with the same pid is
    an extra entry, deleted after this run's rescue folder is made, and must not be
    taken for it."""

    def __init__(self):
        token = b"%d-%s" % (os.getpid(), os.urandom(6).hex().encode())
        self.rescue_dir = RESCUE_DIR + b"-" + token
        self.fetch_dir = FETCH_DIR + b"-" + token     # content fetched from remote layers
        self.fetch_fd = None
        self._tmp_names = (TMP_PREFIX + b"%s-%d" % (token, n) for n in range(1 << 62))

    def tmp_name(self) -> bytes:
        return next(self._tmp_names)

    def rescue_path(self, digest: bytes) -> bytes:
        """Where content kept aside lies, inside the target."""
        return self.rescue_dir + b"/" + digest.hex().encode()


def execute(p: Plan, target: bytes, root_fd: int, layer_roots: dict, on_phase=None,
            on_progress=None, on_warning=None, unchanged=None):
    """Carry out plan p (_execute_plan, below). When it fails before it changes the target (while
    content is fetched from a web server), unchanged() is called, and the error says that
    nothing was changed (its `unchanged` set)."""
    started = []
    try:
        _execute_plan(p, target, root_fd, layer_roots, on_phase, on_progress, on_warning,
                      lambda: started.append(True))
    except DiffimgError as exc:
        if not started:
            if unchanged is not None:
                unchanged()
            exc.message += "; nothing was changed"
            exc.unchanged = True
        raise
    except BaseException:
        if not started and unchanged is not None:
            unchanged()
        raise


def stream_layers(p, layers, root_fd: int) -> dict:
    """digest -> the newest layer that stores it, for each large stream of the entries the
    plan writes or gives metadata (streams.py); none where the target cannot hold them."""
    if not streams.windows_interface(root_fd):
        return {}
    entries = itertools.chain((w.entry for w in p.writes), p.metas, p.dir_metas)
    return streams.layers_storing(layers, {digest for e in entries
                                           for _, _, digest in streams.large(e.xattrs)})


def execute_on_layers(p, layers, target, root_fd, phase, on_progress, after_failure: str,
                      warn=None, unchanged=None, carry_out=None):
    """Carry out plan p, mounting the layers whose content it copies, and only those (with
    carry_out(layer roots) when given: ntfsexec.py; else execute, below). A failure
    once the target may have changed says what to do next (after_failure); one before (a layer
    that cannot be mounted, a web server failing while content is fetched) calls unchanged()."""
    needed = p.layers_read()
    with contextlib.ExitStack() as mounts:
        if any(not layers[n].remote for n in needed):
            phase(Phase.MOUNTING)
        try:
            roots = {n: layers[n].content_reader() if layers[n].remote
                     else mounts.enter_context(layers[n].content()) for n in sorted(needed)}
        except BaseException as exc:
            if unchanged is not None:
                unchanged()
                if isinstance(exc, DiffimgError):
                    exc.message += "; nothing was changed"
            raise
        try:
            if carry_out is not None:
                carry_out(roots)
            else:
                execute(p, target, root_fd, roots, phase, on_progress, warn, unchanged)
        except (OutputError, ImageError) as exc:
            if not getattr(exc, "unchanged", False):
                exc.message += after_failure
            raise


def _execute_plan(p: Plan, target: bytes, root_fd: int, layer_roots: dict, on_phase,
                  on_progress, on_warning, changing):
    """Carry out plan p on the target (root_fd). layer_roots: layer number -> mounted tree, or a
    remote.ContentReader (a layer on a web server: what the writes need of it is fetched first,
    into this run's fetch folder in the target). on_progress(files, bytes) is called as files
    are fetched and written; on_warning(message) for a short name that cannot be given
    (_GivenOnce)."""
    phase = on_phase or (lambda phase, detail=None, total=None: None)
    dirs = Dirs(root_fd)
    run = _RunNames()
    given_once = _GivenOnce()
    try:
        # content from a web server is fetched before anything of the target changes: a server
        # that fails (stops honouring ranges, goes away) leaves the target as it was. Only when
        # the target has no room for it beside the entries to delete are those deleted first
        fetched, fetch_later = {}, False
        if any(not isinstance(r, bytes) for r in layer_roots.values()):
            try:
                layer_roots, fetched = _fetch(p, root_fd, run, layer_roots, phase, on_progress)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or not p.deletes:
                    raise
                (on_warning or (lambda message: None))(
                    "the target has no room for the content to fetch beside the entries this "
                    "run deletes: deleting them first")
                fetch_later = True
        changing()
        if p.rescues:
            phase(Phase.RESCUING)
            _rescue(root_fd, dirs, run, p.rescues)
        phase(Phase.DELETING)
        for path in p.deletes:
            parent, name = split(path)
            remove(dirs.fd(parent), name)
        dirs.close()
        if fetch_later:
            layer_roots, fetched = _fetch(p, root_fd, run, layer_roots, phase, on_progress)
        phase(Phase.MAKING_FOLDERS)
        _make_folders(dirs, p.dirs)
        phase(Phase.MAKING_SPECIALS)
        _make_specials(dirs, run, p.specials, ntfs.is_ntfs(root_fd), given_once, p.no_replace)
        sources = {digest: layer_roots[n] for digest, n in p.stream_layers.items()}
        counts = p.counts()
        phase(Phase.WRITING_FILES, total=(counts["files_written"], counts["bytes_written"]))
        _write_files(p, Root.of(root_fd), run, layer_roots, sources, on_progress, given_once,
                     fetched)
        phase(Phase.LINKING)
        for e in p.links:
            _link(root_fd, dirs, e, run.tmp_name(), p.no_replace)
        phase(Phase.SETTING_METADATA)
        for e in p.metas:
            parent, name = split(e.path)
            set_meta_at(dirs.fd(parent), name, e, sources)
            given_once.add(e)
        for e in p.dir_metas:
            given_once.add(e)
        if p.rescues:           # (first: a rescued inode may still hold an object ID to give)
            remove(root_fd, run.rescue_dir)
        given_once.give(dirs, on_warning or (lambda message: None))   # (a folder's mtime moves)
        if fetched:
            remove(root_fd, run.fetch_dir)
        fetchkeep.drop(root_fd)              # what an unfinished run kept is needed no more
        dirs.close()                         # the rescue folder is gone
        for e in reversed(p.dir_metas):      # deepest first: a folder after its content
            if e.path:
                parent, name = split(e.path)
                set_meta_at(dirs.fd(parent), name, e, sources)
            else:
                set_meta_fd(root_fd, e, (root_fd, b""), sources)
        os.sync()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"the target is full: {exc.strerror}") from None
        where = f" ({show_path(os.fsencode(exc.filename))})" if exc.filename else ""
        raise OutputError(f"cannot change {show_path(target)}: {exc.strerror}{where}") from None
    finally:
        dirs.close()
        if run.fetch_fd is not None:
            os.close(run.fetch_fd)


class _GivenOnce:
    """The NTFS values a volume lets one entry hold each (ntfs.GIVEN_ONCE: a short name in its
    folder, an object ID in the volume) of the entries this run made or changed, given once
    they all have their final names (ntfs-3g drops a short name with a temporary name), by this
    process: first each of them lets go of a value it has that is not its own, then each gets
    its own, so two entries that swapped theirs get them back. A value held by anything else (a
    kept path, what Windows makes again, a mount) is never taken from it: that entry is left
    without one, with a warning."""

    _WHAT = {ntfs.DOS_NAME: "short name", ntfs.OBJECT_ID: "object ID"}

    def __init__(self):
        self._wanted = []           # (path, name, value or None for none, the entry's xattrs)

    def add(self, e):
        """An entry this run made or changed: with NTFS values (from an NTFS image, onto NTFS)
        it must end with exactly the values it has in the image, or none."""
        if e.xattrs and e.link is None and (ntfs.ATTRIB in e.xattrs or ntfs.ACL in e.xattrs):
            for name in ntfs.GIVEN_ONCE:
                if e.path or name != ntfs.DOS_NAME:       # (the root has no short name)
                    self._wanted.append((e.path, name, e.xattrs.get(name), e.xattrs))

    def give(self, dirs: Dirs, warn):
        for path, name, value, _ in self._wanted:
            ntfs.let_go_of(self._where(dirs, path), name, value)
        for path, name, value, xattrs in self._wanted:
            if value is None:
                continue
            try:
                ntfs.give(self._where(dirs, path), name, value)
                if path:                    # (a short name is a link: ARCHIVE comes with it)
                    parent, entry_name = split(path)
                    ntfs.keep_unarchived(dirs.fd(parent), entry_name, xattrs)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.EMLINK):
                    raise
                held = ("another entry of its folder has it" if name == ntfs.DOS_NAME else
                        "another entry of the volume has it") if exc.errno == errno.EEXIST \
                    else "it has other links"
                shown = show_path(value) if name == ntfs.DOS_NAME else value[:16].hex()
                warn(f"{show_path(path)}: left without its {self._WHAT[name]} {shown}: {held}")
        self._wanted = []

    @staticmethod
    def _where(dirs: Dirs, path: bytes) -> bytes:
        if not path:
            return proc_path(dirs.fd(b""), b".")
        parent, name = split(path)
        return proc_path(dirs.fd(parent), name)


def _make_folders(dirs: Dirs, folders):
    for e in folders:
        parent, name = split(e.path)
        if e.path:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=dirs.fd(parent))


def _make_specials(dirs: Dirs, run: _RunNames, specials, on_ntfs: bool,
                   given_once: "_GivenOnce", no_replace: bool = False):
    """Symlinks, devices, FIFOs and sockets: made under a temporary name with their metadata,
    then renamed into place (on NTFS, a junction from its reparse data: safefs.make_special)."""
    for e in specials:
        parent, name = split(e.path)
        dir_fd = dirs.fd(parent)
        tmp = run.tmp_name()
        make_special(dir_fd, tmp, e, on_ntfs)
        set_meta_at(dir_fd, tmp, e)
        place(dir_fd, tmp, name, no_replace, e)
        given_once.add(e)


def _rescue(root_fd: int, dirs: Dirs, run: _RunNames, rescues: dict):
    """Hardlink target content that a write needs but that is going away into this run's rescue
    folder (copy it, from a filesystem mounted inside the target); the writes take it from there."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(run.rescue_dir, 0o700, dir_fd=root_fd)
    keep_fd = os.open(run.rescue_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
    try:
        for digest, path in rescues.items():
            parent, name = split(path)
            keep = digest.hex().encode()
            try:
                os.link(name, keep, src_dir_fd=dirs.fd(parent), dst_dir_fd=keep_fd,
                        follow_symlinks=False)
            except FileExistsError:
                pass
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # on a filesystem mounted inside the target: a copy (the writes check its digest)
                copied = copy_file(proc_path(dirs.fd(parent), name), proc_path(keep_fd, keep))
                if copied.problem is not None:
                    raise OutputError(f"cannot keep {show_path(path)} aside: {copied.message}") \
                        from None
    finally:
        os.close(keep_fd)


def _fetch(p: Plan, root_fd: int, run: _RunNames, layer_roots: dict, phase, on_progress):
    """Fetch what the plan reads of each remote layer (stored files, large streams) into the
    run's fetch folder, each file checked against its digest as it arrives; (the layer roots,
    remote ones now their folder there, seen from the workers; the fetched layers' folders
    inside the target, for the writes to take the fetched inodes themselves)."""
    remote = {n: r for n, r in layer_roots.items() if not isinstance(r, bytes)}
    wanted = {n: {} for n in remote}
    for w in p.writes:
        if w.source.origin is From.LAYER and w.source.layer in remote:
            wanted[w.source.layer][w.source.path] = (w.entry.digest, w.entry.size)
    for e in itertools.chain((w.entry for w in p.writes), p.metas, p.dir_metas):
        for _, size, digest in large(e.xattrs):
            n = p.stream_layers.get(digest)
            if n in remote:
                wanted[n][STORE_DIR + b"/" + digest.hex().encode()] = (digest, size)
    total = (sum(len(w) for w in wanted.values()),
             sum(size for w in wanted.values() for _, size in w.values()))
    phase(Phase.FETCHING, total=total)
    root_st = os.fstat(root_fd)
    os.mkdir(run.fetch_dir, 0o700, dir_fd=root_fd)
    fetch_fd = os.open(run.fetch_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=root_fd)
    roots, folders = dict(layer_roots), {}
    done = [0, 0]
    fetched = []          # (layer folder, path, digest) of each file fetched whole

    def progress(files: int, nbytes: int):     # as bytes arrive: a large file shows progress
        done[0] += files
        done[1] += nbytes
        if on_progress is not None:
            on_progress(*done)
    try:
        for n, reader in remote.items():
            name = b"%d" % n
            os.mkdir(name, 0o700, dir_fd=fetch_fd)
            layer_dirs = Dirs(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                      | os.O_CLOEXEC, dir_fd=fetch_fd))

            def staged(path, size, layer=name, of=wanted[n], layer_dirs=layer_dirs):
                return StagedFile(layer_dirs, progress, path, size, lambda: fetched.append(
                    (layer, path, of[path][0])))
            try:
                left = []
                for path, (digest, size) in sorted(wanted[n].items()):
                    if _take_kept(root_fd, layer_dirs, path, digest, size):
                        progress(1, size)          # kept by a run that did not finish
                        fetched.append((name, path, digest))     # (kept again on a failure)
                    else:
                        left.append((path, digest, size))
                reader.read(left, staged)
            finally:
                layer_dirs.close()
                os.close(layer_dirs.root)
            roots[n] = b"/proc/%d/fd/%d/%s" % (os.getpid(), fetch_fd, name)
            folders[n] = run.fetch_dir + b"/" + name
    except BaseException:
        _keep_fetched(root_fd, fetch_fd, fetched)   # for the next run: nothing fetched twice
        os.close(fetch_fd)
        with contextlib.suppress(OSError):
            remove(root_fd, run.fetch_dir)     # and the root's times, as if it was never made
            os.utime(root_fd, ns=(root_st.st_atime_ns, root_st.st_mtime_ns))
        raise
    run.fetch_fd = fetch_fd
    return roots, folders


def _take_kept(root_fd: int, dirs: Dirs, path: bytes, digest: bytes, size: int) -> bool:
    """Put at path in the layer's fetch folder the file an earlier run fetched of this content
    and kept (fetchkeep.py), when there is one; whether it did."""
    folder, name = _made_folders(dirs, path)
    return fetchkeep.take(root_fd, digest, size, dirs.fd(folder), name)


def _made_folders(dirs: Dirs, path: bytes) -> tuple[bytes, bytes]:
    """(path's folder, its name), the folder made (private) where it is missing, beneath dirs'
    root without following anything."""
    parent, name = split(path)
    folder = b""
    for part in parent.split(b"/") if parent else ():
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o700, dir_fd=dirs.fd(folder))
        folder = folder + b"/" + part if folder else part
    return folder, name


def _keep_fetched(root_fd: int, fetch_fd: int, fetched: list):
    """Keep what this run fetched whole for the next one (a failure, Ctrl-C: fetchkeep.py)."""
    for layer, path, digest in fetched:
        parent, name = split(path)
        try:
            folder_fd = open_dir(fetch_fd, layer + b"/" + parent if parent else layer)
        except OSError:
            continue
        try:
            fetchkeep.put(root_fd, folder_fd, name, digest)
        finally:
            os.close(folder_fd)


class StagedFile:
    """A fetched file, written where it lies in its layer's tree (beneath the layer's folder
    in the fetch folder, folders made as needed, nothing followed): remote.ContentReader's sink."""

    writes_holes = False          # a block of zeros stays a hole

    def __init__(self, dirs: Dirs, progress, path: bytes, size: int, on_done=None):
        folder, name = _made_folders(dirs, path)
        # the folder is named again by abort: Dirs may close its fd (and the number be reused)
        # while other files are fetched
        self._dirs, self._folder, self._name, self._progress = dirs, folder, name, progress
        self._fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o600, dir_fd=dirs.fd(folder))
        self._size, self._counted, self._on_done = size, 0, on_done

    def write(self, offset: int, data):
        self._progress(0, len(data))
        self._counted += len(data)
        pwrite_all(self._fd, data, offset)

    def close(self):
        try:
            os.ftruncate(self._fd, self._size)
        finally:
            os.close(self._fd)
        self._progress(1, self._size - self._counted)     # (its holes)
        if self._on_done is not None:
            self._on_done()

    def abort(self):
        os.close(self._fd)
        with contextlib.suppress(OSError):
            os.unlink(self._name, dir_fd=self._dirs.fd(self._folder))


def _jobs(p: Plan, run: _RunNames, layer_roots: dict, sources: dict, fetched: dict):
    """(Job, Write) for each write: where the worker reads the content. Content fetched from a
    remote layer is taken as rescued content is: its first write may take the fetched inode."""
    linked = set()       # rescued content: its first write may take the rescued inode itself
    for w in p.writes:
        origin = w.source.origin
        may_link = False
        layer_root = None
        if origin is From.LAYER and w.source.layer in fetched:
            origin = From.RESCUE
            where = fetched[w.source.layer] + b"/" + w.source.path
            may_link = where not in linked
            linked.add(where)
        elif origin is From.LAYER:
            where, layer_root = w.source.path, layer_roots[w.source.layer]
        elif origin is From.RESCUE:
            where = run.rescue_path(w.entry.digest)
            may_link = w.entry.digest not in linked
            linked.add(w.entry.digest)
        else:
            where = w.source.path
        streams = tuple((d, sources[d]) for _, _, d in large(w.entry.xattrs) if d in sources)
        yield Job(run.tmp_name(), w.entry, origin, where, may_link, layer_root, streams,
                  p.no_replace), w


def _write_files(p: Plan, target: Root, run: _RunNames, layer_roots: dict, sources: dict,
                 on_progress, given_once: "_GivenOnce", fetched: dict):
    done = [0, 0]

    def check(w, written):
        if written.problem is None:
            done[0] += 1
            done[1] += w.entry.size
            if on_progress is not None:
                on_progress(*done)
            given_once.add(w.entry)
            return
        raise _write_failure(w, written)

    run_pooled(functools.partial(write_batch, target), _jobs(p, run, layer_roots, sources, fetched), check,
               batch_size=64)


def _write_failure(w, written):
    """The error for a write that failed: a damaged layer (its content unreadable or not what
    its record says), content in the target that is not what its size and time promised, or
    the target itself."""
    path = show_path(w.entry.path)
    problem = written.problem
    if problem is Problem.NO_SPACE:
        return OutputError(f"the target is full while writing {path}")
    if w.source.origin is From.LAYER and problem in (Problem.BAD_CONTENT, Problem.UNREADABLE):
        return ImageError(f"{path}: {written.message} in image {w.source.layer + 1} (a damaged "
                          "image?); the target file was left as it was")
    if problem is not Problem.BAD_CONTENT:
        return OutputError(f"cannot write {path}: {written.message}")
    # taken from the target, trusted for its size and time
    where = show_path(w.source.path) if w.source.origin is From.TARGET else "a path that goes away"
    return OutputError(f"{path}: its content, taken from {where} in the target, does not match "
                       "its digest: that file was changed without its size or time changing; run "
                       "again with --checksum")


def _link(root_fd, dirs, e, tmp, no_replace: bool = False):
    lparent, lname = split(e.link)
    parent, name = split(e.path)
    leader_dir = open_dir(root_fd, lparent)
    try:
        dir_fd = dirs.fd(parent)
        leader = os.stat(lname, dir_fd=leader_dir, follow_symlinks=False)
        if KIND_OF_FMT.get(stat.S_IFMT(leader.st_mode)) is not e.kind:
            raise OSError(errno.EINVAL, f"its hardlink's first member is not a {e.kind.name.lower()}",
                          e.path)
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == (leader.st_dev, leader.st_ino):
                return          # already a link to it (rename would leave tmp behind)
        os.link(lname, tmp, src_dir_fd=leader_dir, dst_dir_fd=dir_fd, follow_symlinks=False)
        place(dir_fd, tmp, name, no_replace, e)
    finally:
        os.close(leader_dir)
