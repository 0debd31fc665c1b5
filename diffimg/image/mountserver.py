"""diffimg mount's server: a chain's tree served read-only by fusefs at a mount point, in a
detached process that outlives the command, and its end (unmount, then wait for the server to
undo the rest). Loaded only by mount and umount: fusefs brings pyfuse3 and trio."""

import os
import signal
import subprocess
import time

from ..errors import DiffimgError, Exit, InputNotFound, Refused, ToolError, show_path
from ..system import runs
from .chain import open_chain
from .fusefs import is_diffimg_mount, is_folder, mount_point_problem, serve

UNMOUNT_WAIT = 60       # seconds a server may take to undo what it did once unmounted


class ServerFailed(DiffimgError):
    """The detached server ended before mounting: its own error's message and exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code


def check_mount(images, mountpoint) -> list:
    """The chain's layers, once the chain and the mount point are found fit (in the
    foreground, before any server starts)."""
    if not is_folder(mountpoint):
        raise InputNotFound(f"no such folder to mount on: {show_path(mountpoint)}")
    layers = open_chain(images)
    problem = mount_point_problem(layers, mountpoint)
    if problem:
        raise Refused(f"{problem}; nothing was mounted")
    return layers


def serve_in_foreground(images, mountpoint):
    """Serve until unmounted or Ctrl-C."""
    serve(images, mountpoint)


def serve_detached(images, mountpoint):
    """Start the server in a process of its own and return once it has mounted the tree;
    ServerFailed (with the server's own exit code) when it could not. Ctrl-C meanwhile stops
    the server, which undoes what it did."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the server: detached, it answers once
        os.close(read_end)
        _serve_as_child(images, mountpoint, write_end)
    os.close(write_end)
    try:
        answer = b""
        while chunk := os.read(read_end, 4096):
            answer += chunk
    except KeyboardInterrupt:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_end)
    if answer.startswith(b"ok"):
        return
    os.waitpid(pid, 0)
    code, _, message = answer.partition(b" ")
    raise ServerFailed(message.decode(errors="replace") or "the server ended before mounting",
                       int(code) if code.isdigit() else Exit.OTHER)


def _serve_as_child(images, mountpoint, answer: int):
    """In the forked server: no terminal, no caller's stdio; say ok once mounted, or why not."""
    code = Exit.OK
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
        _tell(answer, b"%d %s" % (code, str(exc).encode()))
    finally:
        runs.current().close()
        os._exit(code)


def _tell(fd: int, message: bytes):
    try:
        os.write(fd, message)
        os.close(fd)
    except OSError:
        pass                            # it already said ok: no one listens any more


def unmount(mountpoint, on_warning):
    """Unmount a diffimg mount and wait for its server to end (on_warning when it has not
    within UNMOUNT_WAIT seconds)."""
    pid = is_diffimg_mount(mountpoint)
    if pid is None:
        raise InputNotFound(f"{show_path(mountpoint)} is not a diffimg mount")
    done = subprocess.run(["umount", mountpoint], capture_output=True)
    if done.returncode != 0:
        raise ToolError(f"umount {show_path(mountpoint)} failed: "
                        f"{done.stderr.decode(errors='replace').strip()}")
    deadline = time.monotonic() + UNMOUNT_WAIT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    on_warning(f"the server of {show_path(mountpoint)} (pid {pid}) has not ended yet")
