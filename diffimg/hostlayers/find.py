"""Host layers: a machine's own diff (host name, a driver, a licence) kept as DIR/NAME.diff,
restored as the last layer on top of the model's chain when its parent is the chain's tree
(spec/cli.md, "Host layers"). rebase.py carries one onto a new chain."""

import os
import re
import stat

from ..errors import DiffimgError, ImageError, InputNotFound, show_path
from ..image.chain import open_image
from ..image.format import ImageKind
from ..system.osinfo import computer_name
from ..system.safefs import open_dir, open_regular

SUFFIX = ".diff"
# a host name as Linux and Windows give them (RFC 1123 labels, NetBIOS names): also a safe
# file name, never a path
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_MAX_HOSTNAME_FILE = 4096


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None and ".." not in name


def name_of(target) -> str | None:
    """The machine name the tree at target holds: the first word of etc/hostname (never
    through a symlink), else the Windows computer name in its SYSTEM hive; None when neither
    gives a valid name."""
    target = os.fsencode(target)
    try:
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        name = _etc_hostname(root_fd)
    finally:
        os.close(root_fd)
    if name is None:
        name = computer_name(target)
    return name if name is not None and valid_name(name) else None


def _etc_hostname(root_fd: int) -> str | None:
    """The name etc/hostname gives (hostname(5): comment lines ignored), its first label: a
    machine is named by its short name, as Windows names it."""
    try:
        etc = open_dir(root_fd, b"etc")
    except OSError:
        return None
    try:
        fd = open_regular(etc, b"hostname", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    finally:
        os.close(etc)
    with open(fd, "rb") as f:
        text = f.read(_MAX_HOSTNAME_FILE)
    for line in text.splitlines():
        words = line.split()
        if words and not words[0].startswith(b"#"):
            name = words[0].split(b".")[0].decode("ascii", "replace")
            return name if valid_name(name) else None
    return None


def find(directory, name: str, tree_id: bytes, warn) -> bytes | None:
    """DIR/NAME.diff when it is a diff made on tree_id (the chain's tree), else None: a missing
    one is no error (a machine without changes of its own has none), one made on another tree
    is left out with a warning (it needs a rebase); one that is not a diff image is an
    ImageError; two names matching in any case and none exactly, a DiffimgError."""
    if not valid_name(name):
        raise DiffimgError(f"{name!r} is not a host name (letters, digits, '.', '-', '_')")
    directory = os.fsencode(directory)
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise InputNotFound(f"no such folder of host layers: {show_path(directory)}") from None
    except OSError as exc:
        raise DiffimgError(f"host layers folder {show_path(directory)}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DiffimgError(f"host layers folder {show_path(directory)} is not a folder")
    wanted = os.fsencode(name + SUFFIX)
    path = os.path.join(directory, wanted)
    if not os.path.lexists(path):
        # Windows keeps names in capitals, admins name files as they like: a match in any case
        matches = sorted(n for n in os.listdir(directory) if n.lower() == wanted.lower())
        if len(matches) > 1:
            raise DiffimgError(f"{len(matches)} host layers in {show_path(directory)} match "
                               f"{name} in some case ({', '.join(map(show_path, matches))}): "
                               "keep one")
        if not matches:
            return None
        path = os.path.join(directory, matches[0])
    layer = open_image(path)              # ImageError when it is not an image
    if layer.kind != ImageKind.DIFF:
        raise ImageError(f"{show_path(path)} is a full image, not a host layer (a diff)")
    if layer.parent_id != tree_id:
        warn(f"{show_path(path)} was not made on this chain's tree ({tree_id.hex()}): restored "
             "without it; carry it onto the chain with diffimg rebase")
        return None
    return path
