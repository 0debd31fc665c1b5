"""Running the external tools an imaging server has (mksquashfs, mkfs.*, mount)."""

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile

from ..errors import NeedsRoot, OutputError, ToolError
from .interrupts import HELD, signals_held
from .safefs import LIBC  # loaded before any fork: a child only calls it

# Debian package of each tool, for the error that says how to get it
PACKAGE = {"mksquashfs": "squashfs-tools", "unsquashfs": "squashfs-tools",
           "mkfs.btrfs": "btrfs-progs", "mkfs.ext4": "e2fsprogs", "mount": "mount",
           "umount": "mount", "udp-sender": "udpcast", "udp-receiver": "udpcast"}


def run(argv: list, what: str) -> str:
    """Run a tool; its combined output on success, ToolError (or OutputError for a full disk)
    naming what failed otherwise."""
    return start(argv, what).wait()


class Running:
    """A tool started in the background (see start); with fed, stdin is a pipe the caller
    writes (and its output goes to a temporary file, so that a tool that talks while it reads
    can never block the writer)."""

    def __init__(self, argv: list, what: str, fed: bool = False):
        if shutil.which(argv[0]) is None:
            raise ToolError(f"{argv[0]} is not installed (Debian package "
                            f"{PACKAGE.get(argv[0], argv[0])})")
        self.what = what
        self._output = tempfile.TemporaryFile() if fed else None  # noqa: SIM115  (closed in wait)
        self._proc = spawn([os.fsencode(a) if isinstance(a, bytes) else a for a in argv],
                           stdin=subprocess.PIPE if fed else subprocess.DEVNULL,
                           stdout=self._output or subprocess.PIPE, stderr=subprocess.STDOUT)
        self.stdin = self._proc.stdin

    def wait(self) -> str:
        """Its output once it has ended well; ToolError or OutputError otherwise."""
        out = self._proc.communicate()[0] or b""
        if self._output is not None:
            self._output.seek(0)
            out = self._output.read()
            self._output.close()
        out = out.decode("utf-8", "replace")
        if self._proc.returncode != 0:
            lines = [" ".join(line.split()) for line in out.strip().splitlines() if line.strip()]
            detail = "; ".join(lines[-3:])[-400:] if lines else f"exit {self._proc.returncode}"
            if "No space left" in out or "ENOSPC" in out:
                raise OutputError(f"{self.what}: no space left on the device ({detail})",
                                  tool_output=out)
            raise ToolError(f"{self.what} failed: {detail}", tool_output=out)
        return out

    def stop(self):
        """End it if it still runs (an earlier step failed)."""
        if self._proc.returncode is not None:
            return                      # already waited for
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(OSError):
            self._proc.communicate()
        if self._output is not None:
            self._output.close()


_PR_SET_PDEATHSIG = 1


def spawn(argv: list, **popen) -> subprocess.Popen:
    """subprocess.Popen of a tool that dies with diffimg (die_with_parent). Ctrl-C and SIGTERM
    are held while it is started: one that arrives inside the fork would be raised where
    Python ignores exceptions (its at-fork hooks), and be lost; they take effect just after."""
    with signals_held():
        return subprocess.Popen(argv, preexec_fn=functools.partial(die_with_parent, os.getpid()),
                                **popen)


def die_with_parent(parent: int):
    """In a child process: be killed when the process that started it (parent) dies (a killed
    diffimg must not leave mksquashfs writing on); at once if it died before this was set.
    Ctrl-C and SIGTERM, held while it was started (spawn), reach it again."""
    LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
    if os.getppid() != parent:
        os._exit(1)


def start(argv: list, what: str, fed: bool = False) -> Running:
    return Running(argv, what, fed)


def require_root(what: str):
    if os.geteuid() != 0:
        raise NeedsRoot(f"{what} needs root (it mounts the image read-only with a loop device)")
