"""diffimg create / diff / convert: make full and differential images (from a tree, or from a
partclone image)."""

import time

import click

from ..errors import Exit
from ..image.containers import FORMATS
from ..image.containers.squashfs import ZSTD_LEVEL
from ..make.convert import convert
from ..make.packer import PackOptions, create, diff
from ..progress import ProgressLine, human_bytes
from . import allow_unclean_option, as_folders, cli, progress_option, trust_mtime_option, windows_files_option

format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default="squashfs",
                             show_default=True, help="Container of the image's content.")
checksum_option = click.option("--checksum", is_flag=True,
                               help="Hash every file, even one whose stat proves it unchanged.")
exclude_option = click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
                              help="Leave out matching entries (see scan).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
level_option = click.option("--level", type=click.IntRange(1, 22), default=ZSTD_LEVEL, show_default=True,
                            help="zstd compression level of a squashfs image.")


def pack_options(fmt, level, checksum, excludes, quiet, trust_mtime=False, windows_files=False):
    progress = ProgressLine("scanning", quiet)
    opts = PackOptions(fmt=fmt, level=level, checksum=checksum, trust_mtime=trust_mtime,
                       excludes=excludes, windows_files=windows_files, on_progress=progress,
                       on_warning=progress.warn, on_phase=progress.phase)
    return opts, progress


def image_summary(info, started):
    stored = f"{info['stored_files']:,} files, {human_bytes(info['stored_bytes'])} stored"
    return (f"{info['kind']} image ({info['format']}): {info['entries']:,} entries, "
            f"{stored}, {time.monotonic() - started:.1f} s; tree id {info['tree_id'].hex()}")


@cli.command("create")
@progress_option
@click.argument("tree", type=click.Path(path_type=bytes))
@click.argument("image", type=click.Path(path_type=bytes))
@format_option
@level_option
@checksum_option
@exclude_option
@windows_files_option
@allow_unclean_option
@quiet_option
def create_command(tree, image, fmt, level, checksum, excludes, windows_files, allow_unclean,
                   quiet):
    """Make a full image of TREE (a folder, or a partition, mounted read-only for it) at IMAGE."""
    started = time.monotonic()
    opts, progress = pack_options(fmt, level, checksum, excludes, quiet, windows_files=windows_files)
    try:
        with as_folders([tree], allow_unclean=allow_unclean) as (folder,):
            info = create(folder, image, opts)
    finally:
        progress.clear()
    if not quiet:
        click.echo(image_summary(info, started))
    return 0


@cli.command("diff")
@progress_option
@click.argument("tree", type=click.Path(path_type=bytes))
@click.argument("chain", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("-o", "--output", required=True, type=click.Path(path_type=bytes),
              help="The differential image to make.")
@format_option
@level_option
@checksum_option
@trust_mtime_option
@exclude_option
@click.option("--keep", "keeps", multiple=True, metavar="PATTERN",
              help="Leave paths matching PATTERN as the chain has them: neither stored nor "
                   "deleted, whatever TREE holds there (a machine's own folders, e.g. /home or "
                   "'/Users/*/Documents'; the patterns of restore --keep). Repeatable.")
@windows_files_option
@allow_unclean_option
@quiet_option
def diff_command(tree, chain, output, fmt, level, checksum, trust_mtime, excludes, keeps,
                 windows_files, allow_unclean, quiet):
    """Make a differential image of TREE on top of CHAIN (BASE [DIFF...]).

    Exit 0 when an image was made, 1 when TREE equals the chain's tree (no image is made)."""
    started = time.monotonic()
    opts, progress = pack_options(fmt, level, checksum, excludes, quiet, trust_mtime, windows_files)
    opts.keeps = keeps
    try:
        with as_folders([tree], allow_unclean=allow_unclean) as (folder,):
            info = diff(folder, chain, output, opts)
    finally:
        progress.clear()
    if info is None:
        if not quiet:
            click.echo("nothing changed: the tree equals the chain's last tree; no image made")
        return Exit.DIFFERENT
    if not quiet:
        click.echo(image_summary(info, started) + "; " + changes_in_words(info["changes"]))
    return 0


# each delta action (spec/image.md) as a diff's summary says it
_IN_WORDS = (("store", "files with new content (stored)"),
             ("copy", "more files with content stored once for them"),
             ("parent", "files moved or copied from content the parent has"),
             ("meta", "entries with only their metadata changed"),
             ("new", "folders, symlinks or special files new or changed"),
             ("link", "hardlinks"), ("delete", "paths deleted (with what they held)"))


def changes_in_words(changes: dict) -> str:
    words = [f"{changes[action]:,} {text}" for action, text in _IN_WORDS if changes.get(action)]
    return "changes: " + (", ".join(words) if words else "none")


@cli.command("convert")
@progress_option
@click.argument("source", type=click.Path(path_type=bytes))
@click.argument("image", type=click.Path(path_type=bytes))
@format_option
@level_option
@exclude_option
@windows_files_option
@allow_unclean_option
@click.option("--tmp", type=click.Path(file_okay=False, path_type=bytes),
              help="Folder for the restored volume, a sparse file as large as the filesystem's "
                   "used blocks (default: IMAGE's folder).")
@quiet_option
def convert_command(source, image, fmt, level, excludes, windows_files, allow_unclean, tmp, quiet):
    """Make a full image at IMAGE of the filesystem in the partclone image SOURCE (raw or
    compressed with gzip, zstd, xz, lz4, lzo or bzip2; a split one as NAME.aa, NAME.ab, ...)."""
    started = time.monotonic()
    opts, progress = pack_options(fmt, level, False, excludes, quiet, windows_files=windows_files)
    try:
        info = convert(source, image, opts, tmp=tmp, allow_unclean=allow_unclean)
    finally:
        progress.clear()
    if not quiet:
        click.echo(image_summary(info, started) + f"; from a partclone image of "
                   f"{info['converted_from']['filesystem']}")
    return 0
