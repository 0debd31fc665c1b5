"""diffimg scan TREE -o MANIFEST"""

import time

import click

from ..progress import ProgressLine, human_bytes
from ..scan.scanner import scan
from ..system.fsmeta import source_info
from ..target.quickcheck import tree_hints
from ..tree.manifest import ManifestReader, write_manifest
from ..tree.statcache import StatRecorder
from . import allow_unclean_option, as_folders, cli, progress_option, trust_mtime_option, windows_files_option


@cli.command("scan")
@progress_option
@click.argument("tree", type=click.Path(path_type=bytes))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=bytes),
              help="Manifest file to write (replaced atomically).")
@click.option("--checksum", is_flag=True, help="Hash every file, even where a quick check would do.")
@click.option("--previous", type=click.Path(dir_okay=False, path_type=bytes),
              help="An earlier manifest of this tree: files its stat section proves untouched "
                   "keep its digests.")
@trust_mtime_option
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Leave out entries matching GLOB (a name, or a path from the root if it has '/').")
@windows_files_option
@allow_unclean_option
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def scan_command(tree, output, checksum, previous, trust_mtime, excludes, windows_files,
                 allow_unclean, quiet):
    """Record TREE (one filesystem: a folder, or a partition, mounted read-only for it) in a
    manifest file, with a stat section (spec/manifest.md)."""
    with as_folders([tree], allow_unclean=allow_unclean) as (folder,):
        return _scan(folder, output, checksum, previous, trust_mtime, excludes, windows_files,
                     quiet)


def _scan(tree, output, checksum, previous, trust_mtime, excludes, windows_files, quiet):
    progress = ProgressLine("scanning", quiet)
    started = time.monotonic()
    hints = None
    if previous and not checksum:
        hints, trust_mtime = tree_hints(tree, lambda: ManifestReader(previous), None, trust_mtime,
                                        progress.warn)
    stats = StatRecorder.for_scan(tree)
    entries = scan(tree, previous=hints, checksum=checksum, trust_mtime=trust_mtime,
                   excludes=excludes, on_progress=progress, on_warning=progress.warn,
                   windows_files=windows_files)
    try:
        trailer = write_manifest(output, entries, source_info(tree), stats)
    finally:
        progress.clear()
    if not quiet:
        click.echo(f"{trailer['entries']:,} entries, {trailer['files']:,} files, "
                   f"{human_bytes(trailer['bytes'])} in {time.monotonic() - started:.1f} s; "
                   f"tree id {trailer['tree_id'].hex()}")
    return 0
