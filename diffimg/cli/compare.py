"""diffimg compare A B: itemize the differences between two trees or manifests."""

import base64
import json

import click

from ..entry import path_key
from ..errors import Exit, show_path
from ..image.chain import open_chain
from ..image.sides import compare_sides
from ..progress import ProgressLine
from ..tree.compare import compare, is_xattr_label
from . import allow_unclean_option, as_folders, cli, progress_option, trust_mtime_option, windows_files_option


def show_value(name: str, value):
    """A field's value as text (and as JSON): modes in octal, bytes escaped or in hex."""
    if value is None:
        return None
    if name == "mode":
        return f"{value:04o}"
    if name == "content" or is_xattr_label(name):
        return value.hex()
    if isinstance(value, bytes):
        return show_path(value)
    return value


def _short(name: str, a, b) -> str:
    if name == "content" or is_xattr_label(name):
        return name
    return f"{name} {show_value(name, a)} -> {show_value(name, b)}"


def difference_line(diff) -> str:
    """One difference as a line: + added, - removed, ~ changed with what changed."""
    mark = {"added": "+", "removed": "-", "changed": "~"}[diff.change]
    detail = ", ".join(_short(n, va, vb) for n, (va, vb) in diff.fields.items())
    return f"{mark} {show_path(diff.path) or '.'}" + (f": {detail}" if detail else "")


def difference_json(d) -> dict:
    return {"path": show_path(d.path), "path_b64": base64.b64encode(d.path).decode(),
            "change": d.change,
            "fields": {n: [show_value(n, va), show_value(n, vb)] for n, (va, vb) in d.fields.items()}}


@cli.command("compare")
@progress_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("--checksum", is_flag=True,
              help="Hash all the content of tree sides, even files whose stat proves it unchanged.")
@trust_mtime_option
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Leave out matching entries of tree sides.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (spec/cli.md).")
@windows_files_option
@allow_unclean_option
@click.option("-q", "--quiet", is_flag=True, help="No progress.")
def compare_command(paths, checksum, trust_mtime, excludes, as_json, windows_files, allow_unclean,
                    quiet):
    """Compare A and B: compare A B, each a tree, a manifest or an image (its tree); or compare
    IMAGE DIFF... B, a chain's tree with B. Exit 0 when identical, 1 when they differ."""
    if len(paths) < 2:
        raise click.UsageError("give two things to compare (or an image chain and a tree)")
    if len(paths) > 2:
        open_chain(paths[:-1])           # the layers must form a chain: its tree is the last one's
    a, b = paths[-2], paths[-1]
    progress = ProgressLine("comparing", quiet)
    found = []
    try:
        # a partition side is mounted read-only while it is compared
        with as_folders([a, b], allow_unclean=allow_unclean) as (folder_a, folder_b):
            side_a, side_b = compare_sides(folder_a, folder_b, checksum=checksum,
                                           trust_mtime=trust_mtime, excludes=excludes,
                                           on_progress=progress, on_warning=progress.warn,
                                           windows_files=windows_files)
            for diff in compare(side_a, side_b):
                if as_json:
                    found.append(diff)
                    continue
                progress.clear()
                click.echo(difference_line(diff))
                found.append(None)
    finally:
        progress.clear()
    if as_json:
        doc = {
            "identical": not found,
            "a": {"path": show_path(a), "kind": side_a.kind, "tree_id": side_a.tree_id.hex(),
                  "entries": side_a.entries},
            "b": {"path": show_path(b), "kind": side_b.kind, "tree_id": side_b.tree_id.hex(),
                  "entries": side_b.entries},
            "differences": [difference_json(d) for d in sorted(found, key=lambda d: path_key(d.path))],
        }
        click.echo(json.dumps(doc, indent=2))
    elif not quiet:
        summary = (f"identical; tree id {side_a.tree_id.hex()}" if not found
                   else f"{len(found):,} differences")
        click.echo(summary, err=True)
    return Exit.DIFFERENT if found else Exit.OK
