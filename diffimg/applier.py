"""Make a target folder equal to the tree an image chain produces (restore, apply).

plan() merge-joins a scan of the target with the final manifest, in one pass, and decides
every action before anything is written (a bad manifest or a missing content is refused first).
execute() then works in a safe order: rescue content the target still needs from paths that
are going away, delete, make folders, write files (worker processes; temp name + rename),
make symlinks and special files, link hardlinks, fix metadata, and last the folders' metadata,
deepest first, so their times stay as recorded.
"""

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass, field

from .delta import STORE
from .entry import Entry, Kind, path_key
from .errors import Busy, ImageError, InputNotFound, OutputError, show_path
from .hashing import copy_file, run_pooled
from .manifest import unsafe_path
from .merge import merge_join
from .progress import Phase
from .safefs import Dirs, make_special, open_dir, proc_path, remove, replace, set_meta_at, set_meta_fd, split
from .writer import BAD_CONTENT, NO_SPACE, write_batch

RESCUE_DIR = b".diffimg-rescue"
TMP_PREFIX = b".diffimg-tmp-"


def _same_meta(t: Entry, f: Entry) -> bool:
    return (t.mode == f.mode and t.uid == f.uid and t.gid == f.gid and t.mtime_ns == f.mtime_ns
            and (t.xattrs or None) == (f.xattrs or None))


@dataclass
class Plan:
    deletes: list = field(default_factory=list)      # topmost target paths to remove
    dirs: list = field(default_factory=list)         # folders to make (canonical order)
    writes: list = field(default_factory=list)       # [entry, source] files to write
    specials: list = field(default_factory=list)     # symlinks, devices, FIFOs, sockets to make
    links: list = field(default_factory=list)        # later hardlink members to (re)link
    metas: list = field(default_factory=list)        # existing non-folders with other metadata
    dir_metas: list = field(default_factory=list)    # folders (new or not) to give their metadata
    rescues: dict = field(default_factory=dict)      # digest -> target path going away
    unchanged: int = 0

    def counts(self) -> dict:
        from_target = sum(1 for _, s in self.writes if s[0] in ("target", "rescue"))
        return {"deleted": len(self.deletes), "folders_made": len(self.dirs),
                "files_written": len(self.writes), "bytes_written": sum(e.size for e, _ in self.writes),
                "from_target": from_target, "from_images": sum(1 for _, s in self.writes if s[0] == "layer"),
                "specials_made": len(self.specials), "hardlinks": len(self.links),
                "metadata_only": len(self.metas) + len(self.dir_metas) - len(self.dirs),
                "unchanged": self.unchanged}


def content_index(layers) -> dict:
    """digest -> (layer number, path in its container): the newest layer storing it wins."""
    index = {}
    for number, layer in enumerate(layers):
        if layer.kind == "full":
            # the quick-check hints are the lightest read of a manifest; the first path with a
            # content is never a later hardlink member (its group's first member comes before it)
            # so the container holds it
            found = {}
            for path, _size, _mtime_ns, digest, _sparse in layer.file_hints():
                found.setdefault(digest, (number, path))
            index.update(found)
        else:
            for change in layer.delta():
                if change.action == STORE:
                    if unsafe_path(change.path) or change.digest is None:
                        raise ImageError(f"{show_path(layer.path)}: bad delta record "
                                         f"{show_path(change.path)!r}")
                    index[change.digest] = (number, change.path)
    return index


def plan(target_entries, final_entries, index: dict) -> Plan:
    """Decide every action that makes the target (its scan) equal to the final entries."""
    p = Plan()
    in_target: dict[bytes, bytes] = {}    # digest -> a target path holding it
    going: set[bytes] = set()             # target paths removed (with subtrees) or overwritten
    rewritten: set[bytes] = set()         # final paths whose inode will be new
    final_dirs: dict[bytes, Entry] = {}   # every folder of the final tree
    removed = None

    def create(f: Entry):
        if f.kind is Kind.DIR:
            p.dirs.append(f)
            p.dir_metas.append(f)
        elif f.link is not None:
            p.links.append(f)
        elif f.kind is Kind.FILE:
            p.writes.append([f, None])
            rewritten.add(f.path)
        else:
            p.specials.append(f)
            rewritten.add(f.path)

    for t, f in merge_join(target_entries, final_entries):
        if f is not None and f.kind is Kind.DIR:
            final_dirs[f.path] = f
        if t is not None:
            if t.kind is Kind.FILE and t.digest is not None:
                in_target.setdefault(t.digest, t.path)
            if removed is not None:
                if t.path.startswith(removed):
                    if f is None:
                        continue
                else:
                    removed = None
        if f is None:
            p.deletes.append(t.path)
            going.add(t.path)
            if t.kind is Kind.DIR:
                removed = t.path + b"/"
            continue
        if t is None:
            create(f)
            continue
        if t.kind != f.kind:
            p.deletes.append(t.path)
            going.add(t.path)
            if t.kind is Kind.DIR:
                removed = t.path + b"/"
            create(f)
            continue
        if f.kind is Kind.DIR:
            if not _same_meta(t, f):
                p.dir_metas.append(f)
            else:
                p.unchanged += 1
        elif f.link is not None:
            if t.link == f.link and f.link not in rewritten and _same_meta(t, f):
                p.unchanged += 1
            else:
                p.links.append(f)
        elif f.kind is Kind.FILE:
            if t.digest == f.digest and t.link is None and bool(t.sparse) == bool(f.sparse):
                if _same_meta(t, f):
                    p.unchanged += 1
                else:
                    p.metas.append(f)
            else:
                p.writes.append([f, None])
                rewritten.add(f.path)
                going.add(t.path)
        elif t.target != f.target or t.rdev != f.rdev or t.link is not None:
            p.specials.append(f)
            rewritten.add(f.path)
        elif not _same_meta(t, f):
            p.metas.append(f)
        else:
            p.unchanged += 1
    # every folder whose content the plan changes gets its metadata back at the end: creating,
    # renaming or deleting inside a folder changes its mtime
    touched = {split(path)[0] for path in p.deletes}
    for group in (p.dirs, p.specials, p.links, [w[0] for w in p.writes]):
        touched.update(split(e.path)[0] for e in group if e.path)
    touched.add(b"")   # the root: rescue folder and temporary names may come and go there
    planned = {e.path for e in p.dir_metas}
    p.dir_metas += [final_dirs[path] for path in touched - planned if path in final_dirs]
    p.dir_metas.sort(key=lambda e: path_key(e.path))

    for write in p.writes:
        f = write[0]
        if not f.size:
            write[1] = ("empty", None)
        elif f.digest in in_target:
            source = in_target[f.digest]
            if going_away(source, going) or source == f.path:
                p.rescues.setdefault(f.digest, source)
                write[1] = ("rescue", f.digest)
            else:
                write[1] = ("target", source)
        elif f.digest in index:
            write[1] = ("layer", *index[f.digest])
        else:
            raise ImageError(f"no image of the chain holds the content of {show_path(f.path)}")
    return p


def going_away(path: bytes, going: set[bytes]) -> bool:
    """path, or a folder above it, is in going: removed or replaced."""
    while path:
        if path in going:
            return True
        path = path.rpartition(b"/")[0]
    return False


@contextlib.contextmanager
def locked_target(target: bytes):
    """The target root's fd, with an exclusive lock: a second restore of it refuses."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputNotFound(f"no such folder: {show_path(target)}") from None
    except NotADirectoryError:
        raise OutputError(f"{show_path(target)} is not a folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another diffimg is restoring {show_path(target)}; try again when it "
                       "has finished") from None
        yield fd
    finally:
        os.close(fd)


def execute(p: Plan, target: bytes, root_fd: int, layer_roots: dict, on_phase=None,
            on_progress=None):
    """Carry out plan p on the target (root_fd). layer_roots: layer number -> mounted tree.
    on_progress(files, bytes) is called as files are written."""
    phase = on_phase or (lambda phase: None)
    dirs = Dirs(root_fd)
    # names of this run's own: a leftover of a killed run with the same pid is an extra entry,
    # deleted after the rescue folder is made, and must not be taken for it
    run = b"%d-%s" % (os.getpid(), os.urandom(6).hex().encode())
    tmp_names = (TMP_PREFIX + b"%s-%d" % (run, n) for n in range(1 << 62))
    rescue_dir = RESCUE_DIR + b"-" + run
    try:
        if p.rescues:
            phase(Phase.KEEPING_MOVED)
            _rescue(root_fd, dirs, rescue_dir, p.rescues)
        phase(Phase.DELETING)
        for path in p.deletes:
            parent, name = split(path)
            remove(dirs.fd(parent), name)
        dirs.close()
        phase(Phase.MAKING_FOLDERS)
        for e in p.dirs:
            parent, name = split(e.path)
            if e.path:
                try:
                    os.mkdir(name, 0o700, dir_fd=dirs.fd(parent))
                except FileExistsError:
                    pass
        phase(Phase.MAKING_SPECIALS)
        for e in p.specials:
            parent, name = split(e.path)
            dir_fd = dirs.fd(parent)
            tmp = next(tmp_names)
            make_special(dir_fd, tmp, e)
            set_meta_at(dir_fd, tmp, e)
            replace(dir_fd, tmp, name)
        phase(Phase.WRITING_FILES)
        _write_files(p, target, rescue_dir, layer_roots, tmp_names, on_progress)
        phase(Phase.LINKING)
        for e in p.links:
            _link(root_fd, dirs, e, next(tmp_names))
        phase(Phase.SETTING_METADATA)
        for e in p.metas:
            parent, name = split(e.path)
            set_meta_at(dirs.fd(parent), name, e)
        if p.rescues:
            remove(root_fd, rescue_dir)
        dirs.close()                         # the rescue folder is gone
        for e in reversed(p.dir_metas):      # deepest first: a folder after its content
            set_meta_fd(dirs.fd(e.path), e)
        os.sync()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"the target is full: {exc.strerror}") from None
        where = f" ({show_path(os.fsencode(exc.filename))})" if exc.filename else ""
        raise OutputError(f"cannot change {show_path(target)}: {exc.strerror}{where}") from None
    finally:
        dirs.close()


def _rescue(root_fd, dirs, rescue_dir, rescues):
    """Hardlink target content that a write needs but that is going away (copy it, from a
    filesystem mounted inside the target); the writes then take it from there."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(rescue_dir, 0o700, dir_fd=root_fd)
    keep_fd = os.open(rescue_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
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


def _write_files(p, target, rescue_dir, layer_roots, tmp_names, on_progress):
    items = []
    moved = set()       # content kept aside: its first write may take the inode itself
    for e, source in p.writes:
        kind = source[0]
        if kind == "layer":
            where = ("file", os.path.join(layer_roots[source[1]], source[2]))
        elif kind == "rescue":
            first = source[1] not in moved
            moved.add(source[1])
            where = ("move" if first else "target", rescue_dir + b"/" + source[1].hex().encode())
        else:
            where = (kind, source[1])
        items.append(((target, next(tmp_names), where, e), (e, source)))

    done = [0, 0]

    def check(tag, result):
        e, source = tag
        problem, message, _ = result
        if problem is None:
            done[0] += 1
            done[1] += e.size
            if on_progress is not None:
                on_progress(*done)
            return
        if problem == NO_SPACE:
            raise OutputError(f"the target is full while writing {show_path(e.path)}")
        if problem == BAD_CONTENT and source[0] == "layer":
            raise ImageError(f"{show_path(e.path)}: {message} (a damaged image?); the target "
                             "file was left as it was")
        if problem == BAD_CONTENT:      # taken from the target, trusted for its size and time
            where = show_path(source[1]) if source[0] == "target" else "a path that goes away"
            raise OutputError(f"{show_path(e.path)}: its content, taken from {where} in the "
                              "target, does not match its digest: that file was changed without "
                              "its size or time changing; run again with --checksum")
        raise OutputError(f"cannot write {show_path(e.path)}: {message}")

    run_pooled(write_batch, items, check, batch_size=64)


def _link(root_fd, dirs, e, tmp):
    lparent, lname = split(e.link)
    parent, name = split(e.path)
    leader_dir = open_dir(root_fd, lparent)
    try:
        dir_fd = dirs.fd(parent)
        leader = os.stat(lname, dir_fd=leader_dir, follow_symlinks=False)
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == (leader.st_dev, leader.st_ino):
                return          # already a link to it (rename would leave tmp behind)
        os.link(lname, tmp, src_dir_fd=leader_dir, dst_dir_fd=dir_fd, follow_symlinks=False)
        replace(dir_fd, tmp, name)
    finally:
        os.close(leader_dir)
