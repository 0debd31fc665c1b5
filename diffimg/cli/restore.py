"""diffimg restore / apply / extract / cat: a chain's tree, or some of its files, written out."""

import base64
import json
import sys

import click

from ..errors import Refused, show_path
from ..hostlayers import apply as hostlayer
from ..hostlayers.find import valid_name
from ..image.chain import is_image, open_chain, open_image
from ..progress import ProgressLine, human_bytes
from ..restore.extract import cat, extract
from ..restore.ntfsexec import restore_onto_empty
from ..restore.planner import From, Source
from ..restore.restore import restore
from . import as_folders, cli, progress_option

keep_option = click.option(
    "--keep", multiple=True, metavar="PATTERN",
    help="Leave target paths matching PATTERN as they are (never deleted, replaced or changed): "
         "anchored at the target's root, shell-style globs per component, e.g. /home or "
         "'/Users/*/Documents'. Repeatable. lost+found on ext2/3/4 is always kept.")


def _valid_host(ctx, param, value):
    if value is not None and not valid_name(value):
        raise click.BadParameter("a host name holds letters, digits, '.', '-' and '_' only")
    return value


host_layers_option = click.option(
    "--host-layers", type=click.Path(path_type=bytes), metavar="DIR",
    help="Also restore DIR/NAME.diff, this machine's host layer, as the last layer when it was "
         "made on the chain's tree (see --host; made by diff, carried onto a new chain by rebase).")
host_option = click.option(
    "--host", "host_name", metavar="NAME", callback=_valid_host,
    help="The machine's name for --host-layers (default: the target's etc/hostname or, for "
         "Windows, its computer name).")


def _host_layer(host_layers, host_name, target, tree_id: bytes, quiet: bool):
    """(the host layer to restore after the chain, the machine's name), or (None, None). Why
    none was chosen goes to stderr even with -q: a machine restored without its layer must not
    pass unseen (--json: in the document too)."""
    if host_layers is None:
        if host_name is not None:
            raise click.UsageError("--host goes with --host-layers")
        return None, None

    def say(message):               # (stderr: --json's document is on stdout)
        click.echo(f"diffimg: {message}", err=True)
    layer, name = hostlayer.choose(host_layers, host_name, target, tree_id, say,
                                   lambda m: say(f"warning: {m}"))
    if layer is not None and not quiet:
        say(f"host layer of {name}: {show_path(layer)}")
    return layer, name


def _options(quiet, as_json=False):
    progress = ProgressLine("scanning the target", quiet or as_json, warnings=not quiet)
    return dict(on_progress=progress, on_warning=progress.warn, on_phase=progress.phase), progress


def _actions(p):
    """(mark, path, detail) of every planned action, in the order they are carried out."""
    for path in p.deletes:
        yield "-", path, "delete"
    for e in p.dirs:
        yield "+", e.path, "make folder"
    for e in p.specials:
        yield "+", e.path, f"make {e.kind.name.lower()}"
    for w in p.writes:
        yield "w", w.entry.path, f"write {human_bytes(w.entry.size)} {_origin(w.source)}"
    for e in p.links:
        yield "l", e.path, f"hardlink to {show_path(e.link)}"
    for e in p.metas:
        yield "m", e.path, "metadata"
    for e in p.dir_metas:
        yield "m", e.path, "folder metadata"


def _origin(source: Source) -> str:
    if source.origin is From.LAYER:
        return f"from image {source.layer + 1}"
    if source.origin is From.TARGET:
        return f"from {show_path(source.path)} in the target"
    if source.origin is From.RESCUE:
        return "from the target (content that moves)"
    return "(empty)"


NOTHING_TO_DO = "nothing to do: the target already holds the tree"


def _report(p, dry_run, as_json, host_layer=None, through="filesystem"):
    counts = p.counts()
    if as_json:
        doc = {"dry_run": dry_run, "counts": counts, "kept": [show_path(k) for k in p.kept],
               "through": through}
        if host_layer is not None:          # --host-layers: the layer used, or null
            doc["host_layer"] = host_layer[0] and {"host": host_layer[1],
                                                   "path": show_path(host_layer[0])}
        if dry_run:
            doc["actions"] = [{"action": detail, "path": show_path(path)}
                              for _, path, detail in _actions(p)]
        click.echo(json.dumps(doc, indent=2))
        return
    if dry_run:
        for mark, path, detail in _actions(p):
            click.echo(f"{mark} {show_path(path) or '.'}: {detail}")
    kept = f"; kept as they were: {', '.join(show_path(k) for k in p.kept)}" if p.kept else ""
    if p.changes_nothing():
        click.echo(f"{NOTHING_TO_DO} ({counts['unchanged']:,} entries){kept}", err=not dry_run)
        return
    verb = "would" if dry_run else "did"
    click.echo(f"{verb}: {counts['deleted']:,} deleted, {counts['folders_made']:,} folders, "
               f"{counts['files_written']:,} files written ({human_bytes(counts['bytes_written'])}; "
               f"{counts['from_target']:,} from the target), {counts['specials_made']:,} links and "
               f"special files, {counts['hardlinks']:,} hardlinks, {counts['metadata_only']:,} "
               f"metadata only, {counts['unchanged']:,} unchanged{kept}", err=not dry_run)


@cli.command("restore")
@progress_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("--checksum", is_flag=True,
              help="Hash every target file, even one whose size and time (or stat, where the "
                   "target has diffimg's state) say it holds the right content.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the counts (and, with --dry-run, the actions) as JSON.")
@keep_option
@host_layers_option
@host_option
@click.option("--yes", is_flag=True,
              help="Delete what TARGET holds beyond the chain even when diffimg never restored "
                   "it (without --yes such a restore is refused: the wrong partition, perhaps).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def restore_command(paths, checksum, dry_run, as_json, keep, host_layers, host_name, yes, quiet):
    """Make TARGET equal to the tree of IMAGE [DIFF...]: restore IMAGE [DIFF...] TARGET.

    Writes only what differs; extra entries in TARGET are deleted."""
    if len(paths) < 2:
        raise click.UsageError("give the image(s), then the target folder")
    options, progress = _options(quiet, as_json)
    try:
        # a new NTFS partition: written through libntfs-3g, unmounted (ntfsexec.py)
        p = None if dry_run or host_layers is not None or host_name is not None \
            else restore_onto_empty(paths[:-1], paths[-1], keep=keep, **options)
        if p is not None:
            if not quiet or as_json:
                _report(p, dry_run, as_json, None, through="libntfs-3g")
            return 0
        with as_folders(paths[-1:], writable=not dry_run) as (target,):
            images = paths[:-1]
            layer, host = _host_layer(host_layers, host_name, target,
                                      open_chain(images)[-1].tree_id, quiet)
            if layer is not None:
                images = (*images, layer)
            p = restore(images, target, checksum=checksum, dry_run=dry_run, keep=keep,
                        command="restore", host=host, yes=yes, **options)
    finally:
        progress.clear()
    if not quiet or as_json:
        _report(p, dry_run, as_json, (layer, host) if host_layers is not None else None)
    return 0


@cli.command("apply")
@progress_option
@click.argument("diff", type=click.Path(path_type=bytes))
@click.argument("target", type=click.Path(path_type=bytes))
@click.option("--force", is_flag=True, help="Restore the diff's tree even if TARGET is not its parent.")
@click.option("--checksum", is_flag=True,
              help="Hash every target file, even one whose size and time (or stat, where the "
                   "target has diffimg's state) say it holds the right content.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@keep_option
@host_layers_option
@host_option
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def apply_command(diff, target, force, checksum, dry_run, as_json, keep, host_layers, host_name,
                  quiet):
    """Apply DIFF to TARGET, which must be the tree DIFF was made on (exit 14 otherwise).

    With --host-layers, the machine's host layer made on DIFF's tree is applied after it."""
    options, progress = _options(quiet, as_json)
    command = "apply --force" if force else "apply"
    try:
        with as_folders([target], writable=not dry_run) as (folder,):
            layer, host = _host_layer(host_layers, host_name, folder, open_image(diff).tree_id,
                                      quiet)
            p = hostlayer.apply_with_host(diff, folder, layer, host, dict(
                force=force, checksum=checksum, dry_run=dry_run, keep=keep, command=command,
                **options))
    except Refused as exc:
        if as_json and exc.differences:      # every differing path, as data
            click.echo(json.dumps({"refused": True, "differences": [
                {"path": show_path(path), "path_b64": base64.b64encode(path).decode(),
                 "problem": problem} for path, problem in exc.differences]}, indent=2))
        raise
    finally:
        progress.clear()
    if not quiet or as_json:
        _report(p, dry_run, as_json, (layer, host) if host_layers is not None else None)
    return 0


def _images_and_paths(args, kind: str):
    """The leading arguments that are images, and the rest (paths in their tree)."""
    count = 0
    while count < len(args) and is_image(args[count]):
        count += 1
    if count == 0:
        raise click.UsageError(f"{kind}: the first argument must be an image")
    return args[:count], args[count:]


@cli.command("extract")
@progress_option
@click.argument("args", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("-o", "--output", "dest", required=True, type=click.Path(path_type=bytes),
              help="The folder to copy into (made if absent): each PATH lands at DEST/PATH.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def extract_command(args, dest, quiet):
    """Copy PATH... of the tree of IMAGE [DIFF...] into DEST, with their metadata, without
    restoring the rest (the leading arguments that are images are the chain)."""
    images, paths = _images_and_paths(args, "extract")
    if not paths:
        raise click.UsageError("extract: give at least one PATH of the tree")
    opts, progress = _options(quiet)
    try:
        p = extract(images, paths, dest, **opts)
    finally:
        progress.clear()
    if not quiet:
        counts = p.counts()
        click.echo(f"extracted: {counts['folders_made']:,} folders, {counts['files_written']:,} "
                   f"files ({human_bytes(counts['bytes_written'])}), {counts['specials_made']:,} "
                   f"links and special files, {counts['hardlinks']:,} hardlinks", err=True)
    return 0


@cli.command("cat")
@click.argument("args", nargs=-1, required=True, type=click.Path(path_type=bytes))
def cat_command(args):
    """Write the content of the file PATH of the tree of IMAGE [DIFF...] to stdout, checked
    against its digest (exit 8, after the bytes, when it does not match)."""
    images, paths = _images_and_paths(args, "cat")
    if len(paths) != 1:
        raise click.UsageError("cat: give exactly one PATH after the images")
    sys.stdout.flush()
    cat(images, paths[0], sys.stdout.fileno())
    return 0
