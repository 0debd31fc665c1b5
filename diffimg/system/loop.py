"""Mount a container read-only with a loop device, and always unmount and detach it."""

import contextlib
import os
import subprocess
import time

from . import runs
from .interrupts import signals_held
from .tools import require_root, run


def mounted(image_path, fstype: str, length: int):
    """Yield the path of the container's tree, mounted read-only for the duration.

    The loop device covers exactly the container's bytes (sizelimit), not the metadata after it;
    mount's loop option detaches it again on unmount."""
    require_root(f"reading a {fstype} image")
    return mounted_by(lambda point: ["mount", "-t", fstype, "-o",
                                     f"loop,ro,nodev,nosuid,noexec,sizelimit={length}",
                                     os.fsencode(image_path), point],
                      f"mounting {os.fsdecode(image_path)}")


@contextlib.contextmanager
def mounted_by(argv, what: str):
    """Yield a new mount point of this run with argv(mount_point) (a command that mounts
    something there) run for the duration; unmounted at the end, whatever happens."""
    require_root(what)
    mountpoint = os.fsdecode(runs.current().mount_point())   # a killed run's is cleaned up
    # Ctrl-C and SIGTERM wait while the mount is made or undone; one held over the mount arrives
    # inside the try whose finally undoes it: an interrupt can never leave a mount behind
    is_mounted = False
    try:
        with signals_held():
            run(argv(mountpoint), what)
            is_mounted = True
        yield os.fsencode(mountpoint)
    finally:
        with signals_held():
            if is_mounted:
                _unmount(mountpoint)
            with contextlib.suppress(OSError):
                os.rmdir(mountpoint)


def _unmount(mountpoint: str):
    for delay in (0, 0.1, 0.5, 1, 2):
        time.sleep(delay)
        if subprocess.run(["umount", mountpoint], capture_output=True).returncode == 0:
            return
    # still busy: detach it lazily so it cannot linger once its last user is gone
    subprocess.run(["umount", "-l", mountpoint], capture_output=True)
