"""Mount a container read-only with a loop device, and always unmount and detach it."""

import contextlib
import os
import signal
import subprocess
import tempfile
import time

from .tools import require_root, run


@contextlib.contextmanager
def mounted(image_path, fstype: str, length: int):
    """Yield the path of the container's tree, mounted read-only for the duration.

    The loop device covers exactly the container's bytes (sizelimit), not the metadata after it;
    mount's loop option detaches it again on unmount."""
    require_root(f"reading a {fstype} image")
    mountpoint = tempfile.mkdtemp(prefix="diffimg-mnt-")
    # Ctrl-C and SIGTERM wait while the mount is made or undone, and arrive inside the block that
    # undoes it: an interrupt can never leave a mount behind
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        run(["mount", "-t", fstype, "-o", f"loop,ro,nodev,nosuid,noexec,sizelimit={length}",
             os.fsencode(image_path), mountpoint], f"mounting {os.fsdecode(image_path)}")
    except BaseException:
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)   # a held Ctrl-C is raised here
        yield os.fsencode(mountpoint)
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            _unmount(mountpoint)
            with contextlib.suppress(OSError):
                os.rmdir(mountpoint)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _unmount(mountpoint: str):
    for delay in (0, 0.1, 0.5, 1, 2):
        time.sleep(delay)
        if subprocess.run(["umount", mountpoint], capture_output=True).returncode == 0:
            return
    # still busy: detach it lazily so it cannot linger once its last user is gone
    subprocess.run(["umount", "-l", mountpoint], capture_output=True)
