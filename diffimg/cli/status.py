"""diffimg status TARGET: which tree diffimg last made TARGET, and the drift since."""

import json
import time

import click

from ..errors import Exit, show_path
from ..progress import ProgressLine
from ..target.status import status
from . import as_folders, cli, progress_option
from .compare import difference_json, difference_line


def _when(ns) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9)) if ns else None


@cli.command("status")
@progress_option
@click.argument("target", type=click.Path(path_type=bytes))
@click.option("--checksum", is_flag=True, help="Hash every file, even one whose stat proves it unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (spec/cli.md).")
@click.option("-q", "--quiet", is_flag=True, help="No progress.")
def status_command(target, checksum, as_json, quiet):
    """Which tree diffimg last made TARGET (restore or apply), and what changed since.

    Exit 0 when nothing changed, 1 when something did, 15 when diffimg never restored TARGET
    (or its state is damaged), 16 when the last restore or apply did not finish."""
    progress = ProgressLine("checking", quiet or as_json, warnings=not quiet)
    try:
        with as_folders([target]) as (folder,):
            st = status(folder, checksum=checksum, on_progress=progress, on_warning=progress.warn)
    finally:
        progress.clear()
    state = st.state
    command = show_path(state.command)         # (a state is read from the target: escaped)
    layers = ", ".join(show_path(layer["file"]) + (f" (host layer of {show_path(layer['host'])})"
                                                   if "host" in layer else "")
                       for layer in state.chain)
    if as_json:
        click.echo(json.dumps({
            "target": show_path(target), "complete": state.complete,
            "tree_id": state.tree_id.hex() if state.tree_id else None, "chain": state.chain,
            "command": state.command, "started": _when(state.started_ns),
            "finished": _when(state.finished_ns), "kept": [show_path(p) for p in st.kept],
            "clean": state.complete and not st.differences,
            "differences": [difference_json(d) for d in st.differences]}, indent=2))
    elif not state.complete:
        click.echo(f"{show_path(target)}: INCOMPLETE: {command} of {layers} started "
                   f"{_when(state.started_ns)} did not finish; restore again to make it exact")
    else:
        for d in st.differences:
            click.echo(difference_line(d))
        drift = f"{len(st.differences):,} paths changed since" if st.differences else "unchanged since"
        click.echo(f"{show_path(target)}: tree {state.tree_id.hex()} ({command} of {layers}, "
                   f"{_when(state.finished_ns)}); {drift}", err=bool(st.differences))
    if not state.complete:
        return Exit.INCOMPLETE
    return Exit.DIFFERENT if st.differences else Exit.OK
