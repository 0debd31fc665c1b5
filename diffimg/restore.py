"""restore and apply: make a target equal to an image chain's tree (see applier)."""

import contextlib
import os

from .applier import content_index, execute, locked_target, plan
from .errors import Refused, show_path
from .image import Image, open_chain
from .scanner import scan


def restore(images, target, *, checksum=False, dry_run=False, on_progress=None, on_warning=None,
            on_phase=None, _diff=None, _parent_id=None):
    """Make target equal to the tree of the chain images (base, diff...); return the Plan.
    dry_run: plan only. (apply passes _diff, the one diff image, and the _parent_id the target
    must have, or None for --force.)"""
    layers = [_diff] if _diff is not None else open_chain(images)
    parent_id = _parent_id
    target = os.fsencode(target)
    phase = on_phase or (lambda what: None)
    with locked_target(target) as root_fd:
        phase("reading the images")
        index = content_index(layers)
        final = layers[-1]
        phase("scanning the target")
        entries = scan(target, previous=None if checksum else final.file_hints(), checksum=checksum,
                       on_progress=on_progress, on_warning=on_warning)
        p = plan(entries, final.entries(), index, target_id=parent_id is not None)
        if parent_id is not None and p.target_id != parent_id:
            raise Refused(f"{show_path(target)} is not the tree {show_path(images[0])} was made on "
                          f"(its tree ID is {p.target_id.hex()}, the diff's parent is "
                          f"{parent_id.hex()}); nothing was changed. Use --force to restore the "
                          "diff's tree anyway")
        if dry_run:
            return p
        needed = {source[1] for _, source in p.writes if source[0] == "layer"}
        with contextlib.ExitStack() as mounts:
            if needed:
                phase("mounting images")
            roots = {n: mounts.enter_context(layers[n].content()) for n in sorted(needed)}
            execute(p, target, root_fd, roots, phase, on_progress)
        return p


def apply(diff, target, *, force=False, **options):
    """Apply one diff to the tree it was made on; with force, restore its tree regardless."""
    image = Image(diff)
    if image.kind != "diff":
        raise Refused(f"{show_path(diff)} is a full image; use restore")
    return restore([diff], target, _diff=image, _parent_id=None if force else image.parent_id,
                   **options)
