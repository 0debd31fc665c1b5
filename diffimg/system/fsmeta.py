"""Extended attributes (every namespace, POSIX ACLs and capabilities included) and mount facts."""

import errno
import os
import re
import stat
import subprocess

from ..errors import given_name
from ..windows.ntfs import get_xattr, is_ntfs

# (ntfs-3g serving streams as files answers ENODATA to a list of none)
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)
_NOT_HELD = (*_NO_XATTRS, errno.EPERM, errno.EMLINK)


def read_xattrs(path: bytes, asked=()) -> dict[bytes, bytes] | None:
    """All xattrs of path (not following a symlink), and those named in asked that it has (a
    filesystem may hold more than it lists: ntfs-3g), sorted by name; None when it has none.

    Raises FileNotFoundError when path vanished, OSError for other failures.
    """
    try:
        names = {os.fsencode(n) for n in os.listxattr(path, follow_symlinks=False)}
    except OSError as exc:
        if exc.errno not in _NO_XATTRS:
            raise
        names = set()
    listed = set(names)
    names.update(asked)
    found = {}
    for name in sorted(names):
        try:
            # a value of any size at once where names are asked (ntfs-3g: see ntfs.get_xattr)
            found[name] = get_xattr(path, name) if asked else \
                os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            # removed between list and get: it is simply gone; an asked name it cannot have
            # (ntfs-3g answers EPERM for the short name of the root, EMLINK for that of a
            # file with other links)
            if exc.errno != errno.ENODATA and not (name not in listed and exc.errno in _NOT_HELD):
                raise
    return found or None


def mount_of(st_dev: int) -> dict:
    """Mount point, filesystem type and source of the filesystem with device number st_dev."""
    wanted = f"{os.major(st_dev)}:{os.minor(st_dev)}"
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                if fields[2].decode() == wanted:
                    sep = fields.index(b"-")
                    return {"mountpoint": unescape_field(fields[4]), "fstype": fields[sep + 1].decode(),
                            "device": unescape_field(fields[sep + 2])}
    except (OSError, ValueError, IndexError):
        pass
    return {}


def probe(device) -> dict:
    """What blkid finds by probing device (a block device or a file holding a filesystem, read
    directly, no cache): {"type", "uuid", "label"}, each present only when found; {} when
    nothing is found or device cannot be read (not root). FileNotFoundError without blkid."""
    try:
        if not stat.S_ISBLK(os.stat(device).st_mode) and not stat.S_ISREG(os.stat(device).st_mode):
            return {}
        done = subprocess.run(["blkid", "-p", "-o", "export", os.fsencode(device)],
                              capture_output=True, timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        if isinstance(exc, FileNotFoundError) and exc.filename in ("blkid", b"blkid"):
            raise
        return {}
    found = {}
    if done.returncode == 0:
        for line in done.stdout.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            if key in ("TYPE", "UUID", "LABEL") and value:
                found[key.lower()] = re.sub(r"\\(.)", r"\1", value)    # shell-escaped
    return found


def mount_points_below(root) -> set[bytes]:
    """The paths, relative to the folder root, on which a filesystem is mounted below it (bind
    mounts of the same filesystem included: /proc/self/mountinfo lists every mount, where
    st_dev tells only other filesystems). Symlinks in root are resolved as the kernel did."""
    real = os.path.realpath(os.fsencode(root))
    prefix = real.rstrip(b"/") + b"/"
    found = set()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                point = os.fsencode(unescape_field(line.split()[4]))
                if point.startswith(prefix) and len(point) > len(prefix):
                    found.add(point[len(prefix):])
    except (OSError, IndexError):
        pass
    return found


def unescape_field(field: bytes) -> str:
    """A field of /proc/self/mountinfo as the path or name it stands for."""
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...)
    return os.fsdecode(field.decode("unicode_escape").encode("latin-1"))


def source_info(tree) -> dict:
    """What a manifest's header says of where a tree came from: the partition as the user named
    it when the tree is its mount for the command (never that temporary folder), and the
    filesystem's UUID and label when its device can be probed."""
    given = given_name(tree)
    info = {"path": os.fsdecode(os.path.abspath(given if given is not None else tree))}
    try:
        info.update(mount_of(os.lstat(tree).st_dev))
    except OSError:
        pass
    if given is not None:           # (a temporary folder, and the loop device it landed on)
        info.pop("mountpoint", None)
        device = info.pop("device", None)
    else:
        device = info.get("device")
    if info.get("fstype", "").startswith("fuse") and is_ntfs(tree):
        info["fstype"] = "ntfs"             # served by ntfs-3g, which mounts as fuse or fuseblk
    if device and device.startswith("/"):
        found = probe(device)
        info.update({key: found[key] for key in ("uuid", "label") if key in found})
    return info
