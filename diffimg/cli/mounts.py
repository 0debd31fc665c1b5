"""diffimg mount / umount: a chain's tree shown read-only at a mount point (image/mountserver.py;
loaded only when asked for: it brings pyfuse3)."""

import sys

import click

from . import cli


@cli.command("mount")
@click.argument("args", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("--foreground", is_flag=True, help="Serve the tree until it is unmounted or "
              "Ctrl-C, instead of in the background.")
def mount_command(args, foreground):
    """Show the tree of IMAGE [DIFF...] read-only at MOUNTPOINT (the last argument), with all
    its metadata; `diffimg umount MOUNTPOINT` (or umount) undoes it."""
    *images, mountpoint = args
    if not images:
        raise click.UsageError("mount: give IMAGE [DIFF...] MOUNTPOINT")
    from ..errors import show_path
    from ..image import mountserver
    mountserver.check_mount(images, mountpoint)   # a bad chain is said here, in the foreground
    if foreground:
        mountserver.serve_in_foreground(images, mountpoint)
        return 0
    mountserver.serve_detached(images, mountpoint)
    click.echo(f"mounted at {show_path(mountpoint)}; undo with: diffimg umount "
               f"{show_path(mountpoint)}", err=True)
    return 0


@cli.command("umount")
@click.argument("mountpoint", type=click.Path(path_type=bytes))
def umount_command(mountpoint):
    """Undo `diffimg mount`: unmount MOUNTPOINT and wait for its server to undo the rest."""
    from ..image import mountserver
    mountserver.unmount(mountpoint, lambda m: print(f"diffimg: warning: {m}", file=sys.stderr))
    return 0
