"""restore and apply: make a target equal to an image chain's tree.

Both lock the target, plan every action first (planner), then carry the plan out (executor),
mounting only the layers whose content it reads. restore plans from a scan of the target; apply
checks the target at the paths one diff's delta touches (parentcheck) and plans from the delta.
"""

import contextlib
import os

from .errors import ImageError, OutputError, Refused, show_path
from .executor import execute, locked_target
from .hashing import prestart_workers
from .image import Image, open_chain
from .parentcheck import check_parent
from .planner import index_chain, plan_delta, plan_restore
from .progress import Phase
from .scanner import scan

_RESTORE_AGAIN = ("; once the cause is mended, run the restore again: it takes up where this one "
                  "stopped")
_FINISH_WITH_FORCE = ("; the target is now partly changed, no longer the diff's parent: once the "
                      "cause is mended, finish with apply --force (or restore)")


def restore(images, target, *, checksum=False, dry_run=False, on_progress=None, on_warning=None,
            on_phase=None):
    """Make target equal to the tree of the chain images (base, diff...); return the Plan.
    dry_run: plan only."""
    return _restore_layers(open_chain(images), target, checksum=checksum, dry_run=dry_run,
                           on_progress=on_progress, on_warning=on_warning, on_phase=on_phase)


def apply(diff, target, *, force=False, checksum=False, dry_run=False, on_progress=None,
          on_warning=None, on_phase=None):
    """Apply one diff to the tree it was made on, reading and writing only the paths its delta
    touches; with force, restore its tree regardless of what target holds."""
    image = Image(diff)
    if image.kind != "diff":
        raise Refused(f"{show_path(diff)} is a full image; use restore")
    if force:
        return _restore_layers([image], target, checksum=checksum, dry_run=dry_run,
                               on_progress=on_progress, on_warning=on_warning, on_phase=on_phase)
    target = os.fsencode(target)
    phase = on_phase or (lambda phase: None)
    with locked_target(target) as root_fd:
        prestart_workers()          # while the target is checked
        phase(Phase.CHECKING_TARGET)
        changes = image.delta()
        check_parent(root_fd, target, changes, checksum)
        p = plan_delta(changes, image.info["entries"])
        if not dry_run:
            _execute(p, [image], target, root_fd, phase, on_progress, _FINISH_WITH_FORCE)
        return p


def _restore_layers(layers, target, *, checksum, dry_run, on_progress, on_warning, on_phase):
    """restore, on layers already opened as a chain."""
    target = os.fsencode(target)
    phase = on_phase or (lambda phase: None)
    with locked_target(target) as root_fd:
        phase(Phase.READING_IMAGES)
        chain = index_chain(layers)
        final = layers[-1]
        phase(Phase.SCANNING_TARGET)
        entries = scan(target, previous=None if checksum else _trusted_hints(final, chain.ambiguous),
                       checksum=checksum, on_progress=on_progress, on_warning=on_warning)
        p = plan_restore(entries, final.entries(), chain.content)
        if not dry_run:
            _execute(p, layers, target, root_fd, phase, on_progress, _RESTORE_AGAIN)
        return p


def _trusted_hints(final, ambiguous: set[bytes]):
    """The final manifest's quick-check hints, less the paths at which the chain knows another
    content with the same size and mtime: the scan hashes those."""
    if not ambiguous:
        return final.file_hints()
    return (hint for hint in final.file_hints() if hint.path not in ambiguous)


def _execute(p, layers, target, root_fd, phase, on_progress, after_failure: str):
    """Carry out plan p, mounting the layers whose content it copies, and only those. A failure
    once the target may have changed says what to do next (after_failure)."""
    needed = p.layers_read()
    with contextlib.ExitStack() as mounts:
        if needed:
            phase(Phase.MOUNTING)
        roots = {n: mounts.enter_context(layers[n].content()) for n in sorted(needed)}
        try:
            execute(p, target, root_fd, roots, phase, on_progress)
        except (OutputError, ImageError) as exc:
            exc.message += after_failure
            raise
