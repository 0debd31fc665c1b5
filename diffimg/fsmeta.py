"""Extended attributes (every namespace, POSIX ACLs and capabilities included) and mount facts."""

import errno
import os

_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP)


def read_xattrs(path: bytes) -> dict[bytes, bytes] | None:
    """All xattrs of path (not following a symlink), sorted by name; None when it has none.

    Raises FileNotFoundError when path vanished, OSError for other failures.
    """
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return None
        raise
    if not names:
        return None
    found = {}
    for name in sorted(os.fsencode(n) for n in names):
        try:
            found[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.ENODATA:   # removed between list and get: it is simply gone
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
                    return {"mountpoint": _unescape(fields[4]), "fstype": fields[sep + 1].decode(),
                            "device": _unescape(fields[sep + 2])}
    except (OSError, ValueError, IndexError):
        pass
    return {}


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
                point = os.fsencode(_unescape(line.split()[4]))
                if point.startswith(prefix) and len(point) > len(prefix):
                    found.add(point[len(prefix):])
    except (OSError, IndexError):
        pass
    return found


def _unescape(field: bytes) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...)
    return os.fsdecode(field.decode("unicode_escape").encode("latin-1"))


def source_info(tree) -> dict:
    """What a manifest's header says of where a tree came from."""
    info = {"path": os.fsdecode(os.path.abspath(tree))}
    try:
        info.update(mount_of(os.lstat(tree).st_dev))
    except OSError:
        pass
    return info
