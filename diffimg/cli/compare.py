"""diffimg compare A B: itemize the differences between two trees or manifests."""

import base64
import json

import click

from ..compare import compare
from ..entry import path_key
from ..errors import show_path
from ..image import open_chain
from ..manifest import TreeId
from ..progress import ProgressLine
from ..sources import Recorded, compare_streams, kind_of
from . import cli

EXIT_IDENTICAL, EXIT_DIFFERENT = 0, 1


class _Counted:
    """A scanned tree's entries, encoded as they pass to learn the tree's ID and count."""

    def __init__(self, entries):
        self._stream = entries
        self._ids = TreeId()

    def __iter__(self):
        for entry in self._stream:
            self._ids.add(entry)
            yield entry

    @property
    def entries(self):
        return self._ids.entries

    @property
    def tree_id(self):
        return self._ids.digest()


def _side(stream):
    """A side whose tree ID is known once read: a Recorded as it is, a scan counted."""
    return stream if isinstance(stream, Recorded) else _Counted(stream)


def show_value(name: str, value):
    """A field's value as text (and as JSON): modes in octal, bytes escaped or in hex."""
    if value is None:
        return None
    if name == "mode":
        return f"{value:04o}"
    if name == "content" or name.startswith(("xattr:", "acl", "default_acl")):
        return value.hex()
    if isinstance(value, bytes):
        return show_path(value)
    return value


def _short(name: str, a, b) -> str:
    if name in ("content",) or name.startswith(("xattr:", "acl", "default_acl")):
        return name
    return f"{name} {show_value(name, a)} -> {show_value(name, b)}"


@cli.command("compare")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("--checksum", is_flag=True,
              help="Hash the content of tree sides instead of trusting size and mtime.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Leave out matching entries of tree sides.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (spec/cli.md).")
@click.option("-q", "--quiet", is_flag=True, help="No progress.")
def compare_command(paths, checksum, excludes, as_json, quiet):
    """Compare A and B: compare A B, each a tree, a manifest or an image (its tree); or compare
    IMAGE DIFF... B, a chain's tree with B. Exit 0 when identical, 1 when they differ."""
    if len(paths) < 2:
        raise click.UsageError("give two things to compare (or an image chain and a tree)")
    if len(paths) > 2:
        open_chain(paths[:-1])           # the layers must form a chain: its tree is the last one's
    a, b = paths[-2], paths[-1]
    progress = ProgressLine("comparing", quiet)
    kinds = kind_of(a), kind_of(b)
    stream_a, stream_b = compare_streams(a, b, checksum=checksum, excludes=excludes,
                                         on_progress=progress, on_warning=progress.warn)
    side_a, side_b = _side(stream_a), _side(stream_b)
    found = []
    try:
        for diff in compare(side_a, side_b):
            if as_json:
                found.append(diff)
                continue
            progress.clear()
            mark = {"added": "+", "removed": "-", "changed": "~"}[diff.change]
            detail = ", ".join(_short(n, va, vb) for n, (va, vb) in diff.fields.items())
            click.echo(f"{mark} {show_path(diff.path) or '.'}" + (f": {detail}" if detail else ""))
            found.append(None)
    finally:
        progress.clear()
    if as_json:
        doc = {
            "identical": not found,
            "a": {"path": show_path(a), "kind": kinds[0], "tree_id": side_a.tree_id.hex(),
                  "entries": side_a.entries},
            "b": {"path": show_path(b), "kind": kinds[1], "tree_id": side_b.tree_id.hex(),
                  "entries": side_b.entries},
            "differences": [{
                "path": show_path(d.path),
                "path_b64": base64.b64encode(d.path).decode(),
                "change": d.change,
                "fields": {n: [show_value(n, va), show_value(n, vb)] for n, (va, vb) in d.fields.items()},
            } for d in sorted(found, key=lambda d: path_key(d.path))],
        }
        click.echo(json.dumps(doc, indent=2))
    elif not quiet:
        summary = (f"identical; tree id {side_a.tree_id.hex()}" if not found
                   else f"{len(found):,} differences")
        click.echo(summary, err=True)
    return EXIT_DIFFERENT if found else EXIT_IDENTICAL
