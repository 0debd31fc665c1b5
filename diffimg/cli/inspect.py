"""diffimg info / ls / verify: look into images."""

import base64
import datetime
import json
import os
import stat

import click

from ..entry import FMT_OF_KIND, Kind
from ..errors import Exit, InputNotFound, show_path
from ..image.chain import open_image
from ..image.verify import verify_chain
from ..progress import ProgressLine, human_bytes
from ..tree.manifest import ManifestReader, is_manifest
from . import cli, progress_option


def _jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@cli.command("info")
@click.argument("image", type=click.Path(path_type=bytes))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def info_command(image, as_json):
    """Show what IMAGE is: kind, format, tree and parent IDs, source, OS, sizes."""
    img = open_image(image)
    info = dict(img.info, container=img.container)
    if as_json:
        click.echo(json.dumps(_jsonable(info), indent=2))
        return 0
    created = datetime.datetime.fromtimestamp(info["created_ns"] / 1e9, datetime.timezone.utc)
    rows = [
        ("kind", f"{info['kind']} ({info['format']}, {info.get('compression', '')})"),
        ("tree id", info["tree_id"].hex()),
        ("parent id", info["parent_id"].hex() if info.get("parent_id") else "-"),
        ("created", f"{created:%Y-%m-%d %H:%M:%S} UTC by {info.get('tool', '?')}"),
        ("source", _source(info["source"])),
        ("os", " ".join(str(v) for v in info.get("os", {}).values() if v) or "?"),
        ("tree", f"{info['entries']:,} entries, {info['files']:,} files, {human_bytes(info['bytes'])}"),
        ("stored", f"{info['stored_files']:,} files, {human_bytes(info['stored_bytes'])}"),
        ("container", human_bytes(info.get("container_bytes", 0))),
    ]
    converted = info.get("converted_from")
    if converted:
        parts = converted.get("parts", 1)
        rows.append(("converted", f"from the partclone image {converted.get('path', '?')} ("
                     f"{converted.get('filesystem', '?')}, format {converted.get('image_version', '?')}, "
                     f"{converted.get('compression', '?')}" + (f", {parts} parts" if parts != 1 else "")
                     + ")"))
    if info.get("left_out"):
        rows.append(("left out", ", ".join(info["left_out"]) + " (Windows defaults)"))
    if "changes" in info:
        rows.append(("changes", ", ".join(f"{n:,} {a}" for a, n in sorted(info["changes"].items()))))
    for name, value in rows:
        click.echo(f"{name + ':':<11} {value}")
    return 0


def _mode_string(e) -> str:
    mode = FMT_OF_KIND[e.kind] | e.mode
    return stat.filemode(mode) if e.kind is not Kind.SOCKET else "s" + stat.filemode(mode)[1:]


def _time(ns: int) -> str:
    seconds, rest = divmod(ns, 10**9)
    when = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return f"{when:%Y-%m-%d %H:%M:%S}.{rest:09d}"


@cli.command("ls")
@click.argument("image", type=click.Path(path_type=bytes))
@click.argument("path", required=False, type=click.Path(path_type=bytes))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
def ls_command(image, path, as_json):
    """List the tree IMAGE (an image or a manifest) holds, with its metadata, like ls -l; with
    PATH, the entries of that folder (or that entry alone). A name that could be misread (a
    newline, ' -> ', quotes, bytes that are not UTF-8) is quoted as ls --quoting-style=c does."""
    entries = _manifest_entries(image) if is_manifest(image) else open_image(image).entries()
    shown = 0
    for e in _under(entries, path):
        shown += 1
        if as_json:
            click.echo(json.dumps(_ls_doc(e)))
            continue
        size = e.size if e.size is not None else ""
        if e.rdev is not None:
            size = f"{os.major(e.rdev)},{os.minor(e.rdev)}"
        line = f"{_mode_string(e)}{'+' if e.xattrs else ' '} {e.uid:>5} {e.gid:>5} {size!s:>12} " \
               f"{_time(e.mtime_ns)} {c_quoted(e.path) if e.path else '.'}"
        if e.target is not None:
            line += f" -> {c_quoted(e.target)}"
        if e.link is not None:
            line += f" => {c_quoted(e.link)}"
        click.echo(line)
    if path is not None and not shown:
        raise InputNotFound(f"{show_path(path)}: no such path in {show_path(image)}")
    return 0


def _manifest_entries(path):
    with ManifestReader(path) as m:
        yield from m.entries()


def _under(entries, path: bytes | None):
    """The entries to list: all; or, for path, the folder's own entries (the entry itself when
    it is not a folder)."""
    if path is None:
        yield from entries
        return
    path = path.strip(b"/")
    prefix = path + b"/" if path else b""
    for e in entries:
        inside = e.path.startswith(prefix) and e.path != path and b"/" not in e.path[len(prefix):]
        if inside or (e.path == path and e.kind is not Kind.DIR):
            yield e


def _ls_doc(e) -> dict:
    doc = {"path": show_path(e.path), "path_b64": base64.b64encode(e.path).decode(),
           "kind": e.kind.name.lower(), "mode": f"{e.mode:04o}", "uid": e.uid,
           "gid": e.gid, "mtime_ns": e.mtime_ns}
    for name in ("size", "rdev", "sparse"):
        if getattr(e, name) is not None:
            doc[name] = getattr(e, name)
    if e.digest is not None:
        doc["digest"] = e.digest.hex()
    if e.target is not None:
        doc["target"] = show_path(e.target)
        doc["target_b64"] = base64.b64encode(e.target).decode()
    if e.link is not None:
        doc["hardlink"] = show_path(e.link)
    if e.xattrs:
        doc["xattrs"] = {k.decode("utf-8", "backslashreplace"): v.hex() for k, v in e.xattrs.items()}
    return doc


_C_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n",
              11: "\\v", 12: "\\f", 13: "\\r"}


def c_quoted(name: bytes) -> str:
    """name as it is when nothing in it can be misread, else in double quotes with C escapes
    (as ls --quoting-style=c writes it): control characters, quotes, backslashes and bytes
    that are not UTF-8 escaped; a name with ' -> ' or ' => ', or spaces at its ends, quoted."""
    text = name.decode("utf-8", "surrogateescape")
    # (a byte that is not UTF-8 decodes to a lone surrogate, which is not printable)
    if (text.isprintable() and not any(c in text for c in '"\\') and " -> " not in text
            and " => " not in text and text.strip() == text):
        return text
    out = []
    for c in text:
        if "\udc80" <= c <= "\udcff":                      # a byte that is not UTF-8
            out.append(f"\\{ord(c) - 0xDC00:03o}")
        elif ord(c) in _C_ESCAPES:
            out.append(_C_ESCAPES[ord(c)])
        elif not c.isprintable():
            out.extend(f"\\{b:03o}" for b in c.encode("utf-8"))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


@cli.command("verify")
@progress_option
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
def verify_command(images, quiet):
    """Check IMAGE [DIFF...]: metadata intact, each diff on the layer before it, and every stored
    file's content; a DIFF alone (or a chain starting with one) in all that needs no parent.
    Exit 0 good, 1 bad (each problem named)."""
    progress = ProgressLine("checking", quiet, unit="files")

    def note(message):
        if not quiet:
            progress.clear()
            click.echo(f"note: {message}", err=True)
    try:
        problems = verify_chain(images, None, note, progress.phase, progress)
    finally:
        progress.clear()
    for problem in problems:
        click.echo(f"BAD: {problem}")
    if not quiet:
        click.echo("all good" if not problems else f"{len(problems)} problems", err=True)
    return Exit.DIFFERENT if problems else Exit.OK


def _source(source: dict) -> str:
    """Where the tree was read: the folder or partition as given, its type, UUID and label."""
    about = [str(source.get("fstype", "?"))]
    if type(source.get("uuid")) is str:
        about.append(f"UUID {source['uuid']}")
    if type(source.get("label")) is str:
        about.append(f"label {source['label']!r}")
    return f"{source.get('path', '?')} ({', '.join(about)})"
