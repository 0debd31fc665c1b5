"""restore and apply: make a target equal to an image chain's tree.

Both lock the target, plan every action first (planner), then carry the plan out (executor),
mounting only the layers whose content it reads. restore plans from a scan of the target; apply
checks the target at the paths one diff's delta touches (parentcheck) and plans from the delta.
"""

import itertools
import os
import stat
import tempfile

from ..entry import Kind, path_key
from ..errors import ChainError, ImageError, NeedsRoot, OutputError, Refused, show_path
from ..image.chain import index_chain, open_chain, open_image
from ..image.format import ImageKind
from ..progress import Phase, human_bytes
from ..scan import leftout
from ..scan.ntfswalk import written_stats
from ..scan.scanner import scan
from ..system.fsmeta import mount_of, mount_points_below
from ..system.safefs import regular_files, split
from ..system.workers import prestart_workers
from ..target.keep import Kept, defaults_for, find_kept, folds_case, literal_pattern
from ..target.state import (
    RecordedTree,
    State,
    begin,
    confirm,
    finish,
    has_state_file,
    layer_record,
    recorded_hints,
    unfinished_rows,
    usable_state,
)
from ..tree import statcache
from ..tree.delta import DELETE, LINK, META, PARENT, check_applied, check_delta
from ..tree.manifest import STATE_DIR
from ..tree.merge import PathLookup
from ..windows import ntfs
from .executor import execute_on_layers, locked_target, stream_layers
from .parentcheck import SHOWN, check_parent, entry_at, untracked_below
from .planner import plan_delta, plan_restore
from .writer import From

_RESTORE_AGAIN = ("; once the cause is mended, run the restore again: it takes up where this one "
                  "stopped")
_FINISH_WITH_FORCE = ("; the target is now partly changed, no longer the diff's parent: once the "
                      "cause is mended, finish with apply --force (or restore)")


def restore(images, target, *, checksum=False, dry_run=False, keep=(), on_progress=None,
            on_warning=None, on_phase=None, command="restore", host=None, yes=False):
    """Make target equal to the tree of the chain images (base, diff...); return the Plan.
    dry_run: plan only. keep: --keep patterns (keep.py). host: the machine name whose host
    layer the last image is (hostlayers/find.py), for the state. yes: delete what a target diffimg
    never restored holds beyond the chain (else Refused: a partition given by mistake)."""
    return _restore_layers(open_chain(images), target, checksum=checksum, dry_run=dry_run,
                           keep=keep, on_progress=on_progress, on_warning=on_warning,
                           on_phase=on_phase, command=command, host=host, yes=yes)


def apply(diff, target, *, force=False, checksum=False, dry_run=False, keep=(), on_progress=None,
          on_warning=None, on_phase=None, command="apply", host=None, then=None):
    """Apply one diff to the tree it was made on, reading and writing only the paths its delta
    touches; with force, restore its tree regardless of what target holds (then: a host layer
    made on its tree, restored with it). host: as restore's."""
    image = open_image(diff)
    if image.kind != ImageKind.DIFF:
        raise Refused(f"{show_path(diff)} is a full image; use restore")
    if force:
        layers = [image] if then is None else [image, open_image(then)]
        if layers[-1].parent_id != image.tree_id and then is not None:
            raise ChainError(f"{show_path(then)} was not made on {show_path(diff)}")
        return _restore_layers(layers, target, checksum=checksum, dry_run=dry_run, keep=keep,
                               on_progress=on_progress, on_warning=on_warning, on_phase=on_phase,
                               command=command, host=host, yes=True)    # (--force says so)
    target = os.fsencode(target)
    phase = on_phase or (lambda phase, detail=None, total=None: None)
    warn = on_warning or (lambda message: None)
    with locked_target(target) as root_fd:
        prestart_workers()          # while the target is checked
        phase(Phase.CHECKING_TARGET)
        kept, patterns = _kept(root_fd, target, keep, warn, holds_ntfs(image))
        delta = image.delta()
        mismatched = check_delta(image.entries(), delta)
        if mismatched:
            raise ImageError(f"{show_path(diff)}: its delta and its manifest are not one tree "
                             f"({mismatched[0]}; {len(mismatched):,} in all); nothing was changed")
        changes = _outside_kept(delta, kept)
        _refuse_images_inside(target, [image], kept, [c.path for c in changes
                                                      if c.action == DELETE or c.replaces])
        fs = statcache.identity(root_fd)
        state, _ = usable_state(root_fd, fs)
        if state is not None and state.tree_id != image.parent_id:
            state = None
        if state is not None:           # (the records as made: before they are fitted)
            _check_makes_manifest(root_fd, image, delta, diff)
        fit = ntfs.fitter(root_fd, warn)
        wanted_data, held_data = {}, {}      # (reparse points' data: the mount cannot write it)
        unholdable = set()              # paths whose change is all in what the target cannot hold
        for c in changes:               # (the records' entries are changed in place)
            differed = c.before != c.after
            fit(ntfs.note_reparse_data(c.before, held_data))
            fit(ntfs.note_reparse_data(c.after, wanted_data))
            if c.action == META and differed and c.before == c.after:
                unholdable.add(c.path)
        # such a change (a reparse point's streams, a file Windows compressed) is left: made
        # anew, the entry would lose what it has
        changes = [c for c in changes if c.path not in unholdable]
        said = ntfs.left_as_they_are(wanted_data, held_data)
        if said:
            warn(said)
        proofs = _proofs(root_fd, changes, fs) if state is not None and not checksum else None
        shared = check_parent(root_fd, target, changes, checksum, proofs, holds_ntfs(image))
        if state is not None:       # the parent's records say what a removed folder may hold
            _refuse_untracked(root_fd, target, changes)
        p = plan_delta(changes, image.info["entries"], shared, kept)
        p.stream_layers = stream_layers(p, [image], root_fd)
        if p.renewed:
            _keep_folder_times(root_fd, p, p.renewed)
        _check_rights(target, p, dry_run, warn)
        _check_room(root_fd, target, p, [image])
        if not dry_run:
            run = State(False, None, (state.chain if state else []) + [layer_record(image, host)],
                        command, keep=patterns)
            with RecordedTree(root_fd) as previous:        # the rows of untouched paths carry over
                carried = _Carried(previous, fs) if state is not None else None
                try:
                    undo = begin(root_fd, run)
                    execute_on_layers(p, [image], target, root_fd, phase, on_progress,
                                      _FINISH_WITH_FORCE, warn, undo)
                    finish(root_fd, run, image, kept,
                           _applied_verifier(changes, checksum or proofs is not None, carried),
                           written_stats(target))
                finally:
                    if carried is not None:
                        carried.close()
        return p


def _refuse_foreign(target: bytes, deletes, dry_run: bool, warn):
    """A target diffimg never restored (no state) holding paths the chain lacks: they would be
    deleted, and the partition may be the wrong one (a data disk, another machine's). Refused
    (exit 14, nothing changed) unless --yes; a dry run says it and goes on."""
    shown = ", ".join(show_path(path) for path in deletes[:3])
    more = f" and {len(deletes) - 3:,} more" if len(deletes) > 3 else ""
    said = (f"{show_path(target)} was never restored by diffimg and holds paths the image "
            f"lacks ({shown}{more}), which the restore deletes")
    if dry_run:
        warn(f"{said}: the restore itself asks for --yes")
        return
    raise Refused(f"{said}: check that it is the right partition (--dry-run lists every change), "
                  "then run again with --yes; nothing was changed")


def _check_rights(target: bytes, p, dry_run: bool, warn):
    """Refuse (exit 12, nothing changed) a plan a user other than root cannot carry out: entries
    of other owners or groups, devices, trusted or security xattrs (capabilities); a dry run
    says so and goes on."""
    if os.geteuid() == 0:
        return
    groups = {os.getegid(), *os.getgroups()}
    for e in itertools.chain((w.entry for w in p.writes), p.specials, p.dirs, p.metas,
                             p.dir_metas, p.links):
        why = (f"is owned by user {e.uid}" if e.uid != os.geteuid()
               else f"belongs to group {e.gid}" if e.gid not in groups
               else "is a device" if e.kind in (Kind.CHAR, Kind.BLOCK)
               else "has trusted or security xattrs" if any(
                   name.startswith((b"trusted.", b"security.")) for name in e.xattrs or ())
               else None)
        if why is not None:
            said = (f"restoring {show_path(target)} needs root: {show_path(e.path) or '.'} {why} "
                    "in the image")
            if dry_run:
                warn(said)
                return
            raise NeedsRoot(f"{said}; run it as root; nothing was changed")


def _check_room(root_fd: int, target: bytes, p, layers):
    """Refuse (exit 7, nothing changed) a plan whose writes cannot fit, so a restore never stops
    half-way for want of room it could have known of. The writes copy content from the images
    into temporary files renamed over what they replace: at each write, what the copies so far
    hold less what they replaced must fit in the free room (root's reserve too, for root) plus
    what the deletes free (files with no other link; content moved into place frees nothing).
    Content from a web server is all fetched into the target before it is put in place."""
    need = p.needs()
    st = os.fstatvfs(root_fd)
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    if need <= free:
        return
    deleted = set(p.deletes)
    rescued = set(p.rescues.values())          # kept aside, then moved into place
    freed = _blocks(root_fd, p.deletes, subtrees=True) \
        - _blocks(root_fd, [path for path in rescued if _at_or_below(path, deleted)], subtrees=False)
    remote = any(layers[n].remote for n in p.layers_read())
    peak = need if remote else _peak(root_fd, p, deleted | rescued)
    if peak > free + freed:
        advice = ("content from a web server is fetched into the target before it replaces "
                  "anything: fetch the images first (diffimg fetch) and restore from the copies, "
                  "or make room" if remote else "make room, or restore onto a larger partition")
        raise OutputError(
            f"{show_path(target)} has not enough room: this run writes {human_bytes(need)} from "
            f"the images (at most {human_bytes(peak)} at once), and the target has "
            f"{human_bytes(free)} free (and {human_bytes(freed)} more once what it deletes is "
            f"gone); {advice}; nothing was changed")


WRITERS = os.cpu_count() or 1       # the processes that write files at once (workers.run_pooled)


def _peak(root_fd: int, p, gone: set) -> int:
    """The most the copies hold at once, in the order they are written: each new file's bytes,
    less the blocks of the file it replaced once renamed over it (none at paths gone: deleted
    already, or moved elsewhere)."""
    peak = running = 0
    largest: list[int] = []
    for w in p.writes:
        if w.source.origin is From.LAYER and not w.entry.sparse:
            running += w.entry.size
            peak = max(peak, running)
            largest = sorted([*largest, w.entry.size])[-WRITERS:]
        if not _at_or_below(w.entry.path, gone):
            running -= _blocks(root_fd, [w.entry.path], subtrees=False)
    # the writers work at once, each on a file of its own batch: as many temporary files as
    # writers may be whole before any of them replaces what it replaces
    return peak + sum(largest[:-1])


def _at_or_below(path: bytes, paths: set) -> bool:
    while True:
        if path in paths:
            return True
        if b"/" not in path:
            return False
        path = path.rpartition(b"/")[0]


def _blocks(root_fd: int, paths, subtrees: bool) -> int:
    """The bytes held by the regular files at paths (with subtrees: and below the folders
    among them) that have no other link; read without following anything."""
    return sum(st.st_blocks * 512 for st in regular_files(root_fd, paths, subtrees)
               if st.st_nlink == 1)


def _check_makes_manifest(root_fd: int, image, delta, diff):
    """Refuse (exit 8, nothing changed) a diff whose records do not turn its parent's tree, as
    the target's state records it, into its manifest's tree: apply acts on the records and
    records the manifest, so a change the records leave out would be recorded, never made."""
    with RecordedTree(root_fd) as recorded, recorded.reader() as parent:
        bad = check_applied(parent.entries(), delta, image.entries())
    if bad:
        raise ImageError(f"{show_path(diff)}: its delta does not make its manifest's tree from "
                         f"its parent's ({bad[0]}); nothing was changed")


def holds_ntfs(image) -> bool:
    """Whether the image's tree was read from NTFS, with its NTFS attributes: a target on NTFS
    is then read with them too, else as any other filesystem (so a Linux tree restored onto
    NTFS compares as one)."""
    return ntfs.read_from_ntfs(image.info.get("source"))


def _refuse_untracked(root_fd: int, target: bytes, changes):
    """Refuse (exit 14, nothing changed) when a folder the delta removes holds entries the
    parent tree (the target's state) lacks: apply changes only the diff's paths, and removing
    the folder would lose them."""
    folders = [c.path for c in changes
               if (c.action == DELETE or c.replaces) and c.before.kind is Kind.DIR]
    if not folders:
        return
    with RecordedTree(root_fd) as recorded, recorded.reader() as m:
        untracked = untracked_below(root_fd, folders, m.entries())
    if untracked:
        shown = "; ".join(f"{show_path(p)} {why}" for p, why in untracked[:SHOWN])
        more = f"; and {len(untracked) - SHOWN:,} more" if len(untracked) > SHOWN else ""
        raise Refused(f"{show_path(target)}: {len(untracked):,} paths would be lost: {shown}"
                      f"{more}; nothing was changed. Move them out, --keep them, or restore "
                      "(or apply --force) to delete them", differences=untracked)


def _keep_folder_times(root_fd: int, p, shared: set[bytes]):
    """The folders in which apply gives a shared inode's name a new inode (and the root, where
    content is kept aside) get their metadata back as it is now, as restore's plan does."""
    planned = {e.path for e in p.dir_metas}
    for folder in sorted(({split(path)[0] for path in shared} | {b""}) - planned):
        e = entry_at(root_fd, folder)
        if e is not None and e.kind is Kind.DIR:
            p.dir_metas.append(e)
    p.dir_metas.sort(key=lambda e: path_key(e.path))


def _kept(root_fd: int, target: bytes, keep, warn, windows_tree: bool) -> tuple[Kept, list[str]]:
    """The target's kept paths, and the patterns that name them: those given, lost+found on
    ext2/3/4, and every mount point inside the target, with what is mounted there (a restore
    never deletes or replaces across one), each named in a warning. The patterns are recorded
    in the state, so that status leaves them out too. Names match as Windows matches them on a
    Windows tree or an NTFS or FAT target (any case); a given pattern that matches nothing is
    said (it keeps nothing: the chain's entries are restored there)."""
    fstype = mount_of(os.fstat(root_fd).st_dev).get("fstype")
    given = [os.fsdecode(k) for k in keep]
    patterns = given + defaults_for(fstype)
    for point in sorted(mount_points_below(target), key=path_key):
        if point.split(b"/")[0] == STATE_DIR:
            continue                  # diffimg's own folder, never part of the tree
        warn(f"{show_path(os.path.join(target, point))}: a mount point inside the target, left "
             "as it is with what is mounted there")
        patterns.append("/" + os.fsdecode(literal_pattern(point)))
    unmatched: list[str] = []
    fold = folds_case(root_fd, windows_tree)
    kept = Kept(find_kept(root_fd, patterns, fold, unmatched))
    for pattern in unmatched:
        if pattern in given:
            warn(f"--keep {pattern!r} matches nothing in {show_path(target)}"
                 + (" (in any case)" if fold else "") + ": it keeps nothing")
    return kept, patterns


def _refuse_images_inside(target: bytes, layers, kept: Kept, removed=None):
    """Refuse when an image of the chain lies inside the target where the run may remove it:
    anywhere but a kept path for restore; below a path the delta removes for apply (removed);
    and when the target is an image or lies inside one (a dir image's folder)."""
    root = os.stat(target)
    for layer in layers:
        if layer.remote:
            continue
        rel = _path_inside(layer.path, (root.st_dev, root.st_ino))
        image = os.stat(layer.path)
        if rel is None and stat.S_ISDIR(image.st_mode) \
                and _path_inside(target, (image.st_dev, image.st_ino)) is not None:
            raise Refused(f"the target {show_path(target)} lies inside the image "
                          f"{show_path(layer.path)}; nothing was changed")
        if rel is None or (rel and kept.covers(rel)):
            continue
        if rel and removed is not None and not any(rel == r or rel.startswith(r + b"/")
                                                   for r in removed):
            continue
        raise Refused(f"the image {show_path(layer.path)} lies inside the target, at "
                      f"{show_path(rel) or '.'}, where this run would delete it; move it out of "
                      "the target (or --keep it); nothing was changed")
    if _path_inside(os.fsencode(tempfile.gettempdir()), (root.st_dev, root.st_ino)) is not None:
        raise Refused(f"the temporary folder {show_path(tempfile.gettempdir())} (TMPDIR) lies "
                      "inside the target, where this run would delete what it mounts there; "
                      "set TMPDIR to a folder outside it; nothing was changed")


def _path_inside(path: bytes, root: tuple[int, int]) -> bytes | None:
    """path's place at or below the folder root ((st_dev, st_ino)), symlinks resolved: b"" for
    root itself; None when it is not there."""
    folder = os.path.realpath(path)
    names = []
    while True:
        try:
            st = os.stat(folder)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) == root:
            return b"/".join(reversed(names))
        folder, name = os.path.split(folder)
        if not name:
            return None
        names.append(name)


def _outside_kept(changes, kept: Kept) -> list:
    """The delta's records less those at or below kept paths; Refused when a record would
    remove a folder that holds one."""
    if not kept:
        return changes
    for c in changes:
        if kept.holds(c.path) and (c.action == DELETE or c.replaces):
            raise Refused(f"the diff removes {show_path(c.path)}, which holds kept paths; "
                          "nothing was changed")
        if c.source is not None and c.action in (PARENT, LINK) and kept.covers(c.source):
            raise Refused(f"the diff takes {show_path(c.path)} from the kept path "
                          f"{show_path(c.source)}; nothing was changed")
    return [c for c in changes if not kept.covers(c.path)]


def _proofs(root_fd: int, changes, fs) -> dict:
    """path -> (ino, ctime_ns) from the target's state, for the files the delta touches."""
    wanted = {c.path for c in changes} | {c.source for c in changes if c.source is not None}
    return {h.path: (h.ino, h.ctime_ns) for h in recorded_hints(root_fd, fs)
            if h.path in wanted and h.ino is not None}


class _Carried:
    """The previous state's stat proofs, looked up by path in canonical order (one pass)."""

    def __init__(self, recorded, fs):
        self._hints = PathLookup(recorded.hints(fs))

    def proof(self, path: bytes):
        hint = self._hints.get(path)
        if hint is not None and hint.ino is not None:
            return hint.ino, hint.ctime_ns, hint.digest
        return None

    def close(self):
        self._hints.close()


def _applied_verifier(changes, checked: bool, carried: "_Carried | None"):
    """Whether apply verified a file's content: it wrote it from the image; or kept it (a meta
    record) or took it from the target (a parent record) having checked it (hashed, or proved
    by the state); or left it untouched and the previous state's row for it still holds."""
    written = {c.path for c in changes if c.after is not None and c.action not in (META, PARENT)}
    # content kept in place, or taken from the target (a move may keep the very inode, unread)
    kept_content = {c.path for c in changes if c.action in (META, PARENT)}

    def verified(index, e, st) -> bool:
        if e.path in written:
            return True
        if e.path in kept_content:
            return checked
        # (the previous state's row vouches for the content it recorded, which must be this)
        return carried is not None and carried.proof(e.path) == (st.st_ino, st.st_ctime_ns,
                                                                e.digest)
    return verified


def _restore_layers(layers, target, *, checksum, dry_run, keep, on_progress, on_warning, on_phase,
                    command, host=None, yes=False):
    """restore, on layers already opened as a chain."""
    target = os.fsencode(target)
    phase = on_phase or (lambda phase, detail=None, total=None: None)
    warn = on_warning or (lambda message: None)
    with locked_target(target) as root_fd:
        phase(Phase.READING_IMAGES)
        chain = index_chain(layers)
        final = layers[-1]
        kept, patterns = _kept(root_fd, target, keep, warn, holds_ntfs(final))
        _refuse_images_inside(target, layers, kept)
        phase(Phase.SCANNING_TARGET)
        had, previous, trust_mtime = _target_hints(root_fd, target, layers, chain.ambiguous,
                                                   checksum, warn)
        ours = has_state_file(root_fd)          # diffimg restored it (maybe not whole)
        # what Windows makes again stays on the target of an image that left it out (and only
        # then: an image that holds it, or holds no Windows, is restored whole)
        windows_own = leftout.present_in(target) if final.info.get("windows_defaults") is True \
            else set()
        entries = scan(target, previous=previous, checksum=checksum, trust_mtime=trust_mtime,
                       leave_out=kept.paths | windows_own, ntfs_attributes=holds_ntfs(final),
                       windows_files=True,
                       wanted_sizes=_FileSizes(final),
                       on_progress=on_progress, on_warning=on_warning)
        wanted_data, held_data = {}, {}      # (reparse points' data: the mount cannot write it)
        wanted = ntfs.fit_for_target((ntfs.note_reparse_data(e, wanted_data)
                                      for e in final.entries()), root_fd, warn)
        p = plan_restore(ntfs.without_reparse_data(entries, held_data), wanted, chain, kept,
                         holes_seen=not ntfs.is_ntfs(root_fd))
        said = ntfs.left_as_they_are(wanted_data, held_data)
        if said:
            warn(said)
        p.stream_layers = stream_layers(p, layers, root_fd)
        _check_rights(target, p, dry_run, warn)
        _check_room(root_fd, target, p, layers)
        if not ours and p.deletes and not yes:
            _refuse_foreign(target, p.deletes, dry_run, warn)
        if not dry_run:
            run = State(False, None, [layer_record(layer) for layer in layers[:-1]]
                        + [layer_record(final, host)], command,
                        keep=patterns)
            if p.changes_nothing() and had is not None and had.tree_id == final.tree_id \
                    and had.keep == run.keep:
                run.manifest_digest = had.manifest_digest
                confirm(root_fd, run, final.tree_id)     # its manifest and rows still hold
                return p
            undo = begin(root_fd, run)
            execute_on_layers(p, layers, target, root_fd, phase, on_progress, _RESTORE_AGAIN, warn, undo)
            finish(root_fd, run, final, kept, lambda index, e, st: not (
                p.unverified[index] or e.path in p.unverified_writes), written_stats(target))
        return p


class _FileSizes:
    """The sizes of the final tree's files: what target content can serve (read once, when a
    target file must be hashed; a restore that hashes nothing never reads them)."""

    def __init__(self, final):
        self._final = final
        self._sizes: set[int] | None = None

    def __contains__(self, size: int) -> bool:
        if self._sizes is None:
            self._sizes = {hint.size for hint in self._final.file_hints()}
        return size in self._sizes


def _target_hints(root_fd: int, target: bytes, layers, ambiguous: set[bytes], checksum: bool, warn):
    """(the target's usable state or None, the hints its scan may trust, whether size and mtime
    alone are enough): with a usable state (of any tree: a rollback to an earlier layer too),
    its stat rows (a file whose stat is unchanged holds what the state recorded); else the final
    manifest's hints, by size and mtime, less the paths the chain makes ambiguous; with
    checksum, none."""
    fs = statcache.identity(root_fd)
    had, why = usable_state(root_fd, fs)
    if checksum:
        return had, None, False
    if had is not None:
        return had, recorded_hints(root_fd, fs), False
    rows = unfinished_rows(root_fd, fs)
    if rows is not None:                # a stopped run: the rows from before it still prove
        return None, rows, False
    if why and not why.startswith("no state"):
        # diffimg's own target, whose state proves nothing here (copied, damaged, not trusted,
        # a run stopped at its very end): size and mtime would miss an edit that kept them
        warn(f"{show_path(target)}: {why}; hashing every file")
        return None, None, False
    return None, _trusted_hints(layers[-1], ambiguous), True


def _trusted_hints(final, ambiguous: set[bytes]):
    """The final manifest's quick-check hints, less the paths at which the chain knows another
    content with the same size and mtime: the scan hashes those."""
    if not ambiguous:
        return final.file_hints()
    return (hint for hint in final.file_hints() if hint.path not in ambiguous)
