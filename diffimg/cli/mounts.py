"""diffimg mount / umount: a chain's tree shown read-only at a mount point (fusefs.py)."""

import os
import signal
import subprocess
import sys
import time

import click

from ..errors import DiffimgError, Exit, InputNotFound, Refused, ToolError, show_path
from ..image.chain import open_chain
from ..system import runs
from . import cli


@cli.command("mount")
@click.argument("args", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("--foreground", is_flag=True, help="Serve the tree until it is unmounted or "
              "Ctrl-C, instead of in the background.")
def mount_command(args, foreground):
    """Show the tree of IMAGE [DIFF...] read-only at MOUNTPOINT (the last argument), with all
    its metadata; `diffimg umount MOUNTPOINT` (or umount) undoes it."""
    from ..image.fusefs import is_folder, serve
    *images, mountpoint = args
    if not images:
        raise click.UsageError("mount: give IMAGE [DIFF...] MOUNTPOINT")
    if not is_folder(mountpoint):
        raise InputNotFound(f"no such folder to mount on: {show_path(mountpoint)}")
    from ..image.fusefs import mount_point_problem
    layers = open_chain(images)                   # a bad chain is said here, in the foreground
    problem = mount_point_problem(layers, mountpoint)
    if problem:
        raise Refused(f"{problem}; nothing was mounted")
    if foreground:
        serve(images, mountpoint)
        return 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the server: detached, it answers once
        os.close(read_end)
        _serve_detached(images, mountpoint, write_end)
    os.close(write_end)
    try:
        answer = b""
        while chunk := os.read(read_end, 4096):
            answer += chunk
    except KeyboardInterrupt:
        os.kill(pid, signal.SIGTERM)              # it undoes what it did
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_end)
    if answer.startswith(b"ok"):
        click.echo(f"mounted at {show_path(mountpoint)}; undo with: diffimg umount "
                   f"{show_path(mountpoint)}", err=True)
        return 0
    os.waitpid(pid, 0)
    code, _, message = answer.partition(b" ")
    raise _Failed(message.decode(errors="replace") or "the server ended before mounting",
                  int(code) if code.isdigit() else Exit.OTHER)


class _Failed(DiffimgError):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code


def _serve_detached(images, mountpoint, answer: int):
    """In the forked server: no terminal, no caller's stdio; say ok once mounted, or why not."""
    from ..image.fusefs import serve
    code = 0
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

        def ready():
            os.write(answer, b"ok\n")
            os.close(answer)
        serve(images, mountpoint, ready)
    except DiffimgError as exc:
        code = exc.exit_code
        _tell(answer, b"%d %s" % (code, exc.message.encode()))
    except KeyboardInterrupt:
        code = Exit.INTERRUPTED
    except BaseException as exc:       # noqa: BLE001  (the caller must hear of anything)
        code = Exit.OTHER
        _tell(answer, b"%d %s" % (Exit.OTHER, str(exc).encode()))
    finally:
        runs.current().close()
        os._exit(code)


def _tell(fd: int, message: bytes):
    try:
        os.write(fd, message)
        os.close(fd)
    except OSError:
        pass                            # it already said ok: no one listens any more


@cli.command("umount")
@click.argument("mountpoint", type=click.Path(path_type=bytes))
def umount_command(mountpoint):
    """Undo `diffimg mount`: unmount MOUNTPOINT and wait for its server to undo the rest."""
    from ..image.fusefs import is_diffimg_mount
    pid = is_diffimg_mount(mountpoint)
    if pid is None:
        raise InputNotFound(f"{show_path(mountpoint)} is not a diffimg mount")
    done = subprocess.run(["umount", mountpoint], capture_output=True)
    if done.returncode != 0:
        raise ToolError(f"umount {show_path(mountpoint)} failed: "
                        f"{done.stderr.decode(errors='replace').strip()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.05)
    print(f"diffimg: warning: the server of {show_path(mountpoint)} (pid {pid}) has not ended "
          "yet", file=sys.stderr)
    return 0
