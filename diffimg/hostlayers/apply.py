"""A machine's host layer restored with its chain: which layer (the machine's name, its file
in a folder of host layers) and, for apply, the diff then the layer made on its tree."""

import os

from ..errors import Refused, show_path
from ..image.chain import open_image
from ..restore.restore import apply
from ..target.state import read_state
from . import find


def choose(host_layers, host_name, target, tree_id: bytes, on_note, on_warning):
    """(the host layer to restore after the chain whose tree is tree_id, the machine's name),
    or (None, None), saying why none was chosen: the machine is named by host_name, else by
    the tree at target."""
    name = host_name or find.name_of(target)
    if name is None:
        on_warning(f"{show_path(target)} names no host (etc/hostname, a Windows computer name): "
                   "no host layer is restored; give --host NAME")
        return None, None
    layer = find.find(host_layers, name, tree_id, on_warning)
    if layer is None:
        on_note(f"no host layer of {name} to restore")
        return None, None
    return layer, name


def apply_with_host(diff, target, layer, host, how: dict):
    """apply diff, then the host layer made on its tree, if any (how: apply's options). A
    target whose state says it holds the diff's tree (a run stopped between the two) gets the
    layer alone; the layer's apply checks the target as any apply does."""
    if layer is None:
        return apply(diff, target, **how)
    if how["force"]:                # both trees restored at once whatever the target holds
        return apply(diff, target, **how, host=host, then=layer)
    done = _state_tree(target)
    if done == open_image(layer).tree_id:
        raise Refused(f"{show_path(target)}: its state says it holds {show_path(diff)} with the "
                      f"host layer {show_path(layer)} already; nothing was changed (diffimg "
                      "status shows what changed since; restore makes it exact)")
    if done == open_image(diff).tree_id:
        return apply(layer, target, **how, host=host)
    p = apply(diff, target, **how)
    if how.get("dry_run"):
        return p            # (the layer's own check needs the diff applied first)
    try:
        return apply(layer, target, **how, host=host)
    except Refused as exc:
        raise Refused(f"{show_path(diff)} was applied, its host layer {show_path(layer)} was "
                      f"not: {exc.message}", differences=exc.differences) from None


def _state_tree(target) -> bytes | None:
    """The tree the target's complete state says it holds, or None."""
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        state, _ = read_state(fd)
    finally:
        os.close(fd)
    return state.tree_id if state is not None and state.complete else None
