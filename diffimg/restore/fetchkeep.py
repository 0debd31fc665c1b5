"""Content fetched from a web server by a restore that did not finish (a failing server, Ctrl-C),
kept for the next run in the target's .diffimg/fetched/, one file per content named by its
digest: the next restore takes a kept file (checked against its digest) instead of fetching it
again, so a restore over a slow network resumes where it stopped. A restore that finishes
removes the folder. .diffimg/ is diffimg's own, never part of the tree, so nothing of the
tree changes by keeping them.
"""

import contextlib
import os
import stat

from ..scan.hashing import digest_of
from ..system.safefs import DIR_FLAGS, private_to_us, remove
from ..target.state import STATE_DIR, state_dir

KEPT_DIR = b"fetched"


def _open_kept(root_fd: int, make: bool) -> int | None:
    """An fd of .diffimg/fetched/ (made when make), or None."""
    if make:
        parent = state_dir(root_fd)
    else:
        try:
            parent = os.open(STATE_DIR, DIR_FLAGS, dir_fd=root_fd)
        except OSError:
            return None
    try:
        if make:
            with contextlib.suppress(FileExistsError):
                os.mkdir(KEPT_DIR, 0o700, dir_fd=parent)
        fd = os.open(KEPT_DIR, DIR_FLAGS, dir_fd=parent)
    except OSError:
        if make:
            raise
        return None
    finally:
        os.close(parent)
    if not private_to_us(os.fstat(fd)):
        os.close(fd)
        return None
    return fd


def take(root_fd: int, digest: bytes, size: int, dest_fd: int, dest_name: bytes) -> bool:
    """Move the kept file of content digest (size bytes) to dest_name in the folder dest_fd,
    when there is one and it holds that content: a regular file of this user's, with no other
    link (its inode becomes a file of the tree); whether it was taken."""
    kept = _open_kept(root_fd, make=False)
    if kept is None:
        return False
    name = digest.hex().encode()
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=kept)
    except OSError:
        os.close(kept)
        return False
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) and private_to_us(st) and st.st_nlink == 1
                and st.st_size == size and digest_of(fd) == digest):
            return False
        os.rename(name, dest_name, src_dir_fd=kept, dst_dir_fd=dest_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.close(kept)


def put(root_fd: int, src_fd: int, src_name: bytes, digest: bytes):
    """Keep the fetched file src_name (in the folder src_fd), of content digest, for the next
    run; a failure to keep it loses only the time to fetch it again."""
    with contextlib.suppress(OSError):
        kept = _open_kept(root_fd, make=True)
        if kept is None:
            return
        try:
            os.rename(src_name, digest.hex().encode(), src_dir_fd=src_fd, dst_dir_fd=kept)
        finally:
            os.close(kept)


def drop(root_fd: int):
    """Remove what an earlier run kept (once a restore has finished)."""
    with contextlib.suppress(OSError):
        parent = os.open(STATE_DIR, DIR_FLAGS, dir_fd=root_fd)
        try:
            remove(parent, KEPT_DIR)
        finally:
            os.close(parent)
