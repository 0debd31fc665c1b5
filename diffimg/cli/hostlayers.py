"""diffimg rebase: a machine's host layer carried onto a new chain of the model's images."""

import os
import time

import click

from ..errors import Conflicts, Exit, show_path
from ..hostlayers.rebase import CHAIN, HOST, rebase
from . import cli, progress_option
from .make import changes_in_words, format_option, image_summary, level_option, pack_options, quiet_option


@cli.command("rebase", options_metavar="--onto IMAGE [DIFF...] -o OUT [OPTIONS]")
@progress_option
@click.argument("host_diff", type=click.Path(path_type=bytes))
@click.option("--onto", "chain", required=True, metavar="IMAGE [DIFF...]",
              help="The new chain (base first), holding the layer HOST_DIFF was made on; the "
                   "images after this option are the rest of it.")
@click.argument("rest", nargs=-1, metavar="", type=click.Path(path_type=bytes))
@click.option("-o", "--output", required=True, type=click.Path(path_type=bytes),
              help="The rebased differential image to make.")
@click.option("--prefer", type=click.Choice([HOST, CHAIN]),
              help="Where both sides changed a path differently, take this side's (default: "
                   "refuse, listing every such path).")
@format_option
@level_option
@quiet_option
def rebase_command(host_diff, chain, rest, output, prefer, fmt, level, quiet):
    """Carry the host layer HOST_DIFF (a machine's own diff) onto a new chain of the model's
    images: make OUTPUT, a diff whose parent is the chain's tree, holding the host's changes.

    Exit 0 when an image was made, 1 when none of the host's changes is left on the new
    chain (no image is made), 20 when the two sides changed a path differently and --prefer
    was not given (every such path is listed; no image is made)."""
    started = time.monotonic()
    opts, progress = pack_options(fmt, level, False, (), quiet)
    try:
        result = rebase(host_diff, [os.fsencode(chain), *rest], output, opts, prefer)
    except Conflicts as exc:
        progress.clear()
        for path, why in exc.conflicts:
            click.echo(f"conflict: {show_path(path) or '.'}: {why}", err=True)
        raise
    finally:
        progress.clear()
    if not quiet:
        for path, why in result.decided:
            click.echo(f"decided ({prefer}): {show_path(path) or '.'}: {why}")
    if result.info is None:
        if not quiet:
            click.echo("nothing of the host's changes is left on the new chain; no image made")
        return Exit.DIFFERENT
    if not quiet:
        click.echo(image_summary(result.info, started) + "; " + changes_in_words(result.info["changes"]))
    return 0
