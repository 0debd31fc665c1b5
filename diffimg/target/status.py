"""status: which tree diffimg last made a target, and what has changed in it since."""

import os
from dataclasses import dataclass, field

from ..errors import InputNotFound, ManifestError, NoState, show_path
from ..scan import leftout
from ..scan.scanner import scan
from ..system.partition import ntfs_volume_of
from ..tree import statcache
from ..tree.compare import ADDED, compare
from ..windows import ntfs
from .keep import Kept, find_kept, folds_case
from .state import RecordedTree, State, read_state


@dataclass
class Status:
    state: State
    differences: list = field(default_factory=list)   # compare.Difference: recorded -> now
    kept: list = field(default_factory=list)          # paths left out (the run's --keep)


def status(target, *, checksum: bool = False, on_progress=None, on_warning=None) -> Status:
    """The target's state and its drift: a scan of the target compared with the tree recorded.
    A file whose stat equals its row in the state is taken to hold the recorded content; every
    other file is hashed (every file with checksum). NoState when there is no usable state."""
    target = os.fsencode(target)
    try:
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)   # as restore does
    except FileNotFoundError:
        raise InputNotFound(f"no such folder: {show_path(target)}") from None
    except OSError as exc:
        raise NoState(f"{show_path(target)}: cannot open it as a folder: {exc.strerror}") from None
    try:
        state, why = read_state(root_fd)
        if state is None:
            raise NoState(f"{show_path(target)}: {why}")
        if not state.complete:
            return Status(state)
        with RecordedTree(root_fd, state.manifest_digest) as recorded:
            if not recorded.intact:
                raise NoState(f"{show_path(target)}: its state manifest is damaged")
            if recorded.fd is None:
                raise NoState(f"{show_path(target)}: its state has no manifest")
            try:
                with recorded.reader() as m:        # kept paths match as restore matched them
                    windows_tree = ntfs.read_from_ntfs(m.header.get("source"))
                kept = Kept(find_kept(root_fd, state.keep, folds_case(root_fd, windows_tree)))
                differences = _drift(target, recorded, kept, checksum, on_progress, on_warning,
                                     bool(state.chain) and state.chain[-1].get("windows_defaults")
                                     is True)
            except ManifestError as exc:
                raise NoState(f"{show_path(target)}: its state manifest is damaged "
                              f"({exc.message})") from None
        return Status(state, differences, sorted(kept.paths))
    finally:
        os.close(root_fd)


def _drift(target, recorded, kept: Kept, checksum, on_progress, on_warning,
           windows_defaults: bool) -> list:
    hints = None if checksum else recorded.hints(statcache.identity(target))
    with recorded.reader() as m:
        # read with the NTFS attributes only where the recorded tree has them (restore.py)
        from_ntfs = ntfs.read_from_ntfs(m.header.get("source"))
        # what Windows makes again is no drift where the image left it out (as restore does)
        regenerated = leftout.present_in(target) if windows_defaults else set()
        scanned = scan(target, previous=hints, checksum=checksum,
                       leave_out=kept.paths | regenerated, on_progress=on_progress,
                       on_warning=on_warning, ntfs_attributes=from_ntfs, windows_files=True)
        wanted = (e for e in m.entries() if not (kept and kept.covers(e.path)))
        if from_ntfs:              # restored without what the target cannot hold, with a warning
            # (a partition read through libntfs-3g holds all of it: fitter's None)
            wanted = ntfs.fit_for_target(wanted, None if ntfs_volume_of(target) else target,
                                         lambda message: None)
        # a folder the tree lacks that holds kept paths was left by the restore, on purpose
        return [d for d in map(_kept_links_left_out(kept), compare(wanted, scanned))
                if d is not None and not (d.change == ADDED and kept.holds(d.path))]


def _kept_links_left_out(kept: Kept):
    """A member whose group's first member is kept was restored as a file of its own, on
    purpose: its hardlink field is no drift."""
    def mend(d):
        link = d.fields.get("hardlink", (None,))[0]
        if link is not None and kept and kept.covers(link):
            del d.fields["hardlink"]
            if not d.fields:
                return None
        return d
    return mend
