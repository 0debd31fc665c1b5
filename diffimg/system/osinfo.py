"""What operating system a tree holds, for an image's info.

The tree is anyone's: a file of it is read only as a regular file reached beneath its root
without following a symlink (a FIFO would block, /dev/zero never ends), and only so much of it
(MAX_OS_RELEASE)."""

import os
import re
import shutil
import subprocess

from .safefs import open_dir, open_regular

# os-release(5) is a few hundred bytes; what lies beyond this is not read
MAX_OS_RELEASE = 64 * 1024

# where Windows keeps its product name, edition and version (SOFTWARE hive)
_VERSION_KEY = "Microsoft\\Windows NT\\CurrentVersion"
# value -> what info calls it; DisplayVersion (Windows 10 20H2 on) before ReleaseId
_VERSION_VALUES = (("ProductName", "product"), ("EditionID", "edition"),
                   ("DisplayVersion", "version"), ("ReleaseId", "version"), ("CurrentBuild", "build"))
# where it keeps the computer name (SYSTEM hive)
_NAME_KEY = "Control\\ComputerName\\ComputerName"


def detect(root) -> dict:
    root = os.fsencode(root)
    kernel = _windows_kernel(root)
    if kernel is not None:
        return {"family": "windows", **_windows_version(root, os.path.dirname(kernel)),
                "evidence": os.fsdecode(kernel)}
    # os-release(5): etc/os-release, else usr/lib/os-release (where etc's is most often a
    # symlink to, which is never followed)
    text = read_beneath(root, b"etc/os-release", MAX_OS_RELEASE)
    if text is None:
        text = read_beneath(root, b"usr/lib/os-release", MAX_OS_RELEASE)
    if text is not None:
        fields = dict(_os_release(text.decode("utf-8", "replace")))
        return {"family": "linux", "id": fields.get("ID", ""), "version": fields.get("VERSION_ID", ""),
                "name": fields.get("PRETTY_NAME", fields.get("NAME", ""))}
    return {"family": "unknown"}


def open_beneath(root: bytes, rel: bytes) -> int:
    """An fd of the regular file rel beneath the folder root, reached without following a
    symlink below root and never opening anything else (a FIFO, a device);
    OSError otherwise."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent, _, name = rel.rpartition(b"/")
        dir_fd = open_dir(root_fd, parent)
    finally:
        os.close(root_fd)
    try:
        return open_regular(dir_fd, name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(dir_fd)


def read_beneath(root: bytes, rel: bytes, limit: int) -> bytes | None:
    """At most limit bytes of the regular file rel beneath root (open_beneath); None when it
    is not one or cannot be read."""
    try:
        fd = open_beneath(root, rel)
    except OSError:
        return None
    try:
        with open(fd, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def is_windows(root) -> bool:
    return _windows_kernel(os.fsencode(root)) is not None


def _windows_version(root: bytes, system32: bytes) -> dict:
    """Product name, edition, version and build from the SOFTWARE hive; what it cannot say is
    absent."""
    values = _hive_values(root, system32, b"software", _VERSION_KEY)
    found = {}
    for name, called in _VERSION_VALUES:
        if name in values and called not in found:
            found[called] = values[name]
    if "build" in found and "UBR" in values:
        found["build"] += "." + values["UBR"]
    return found


def computer_name(root) -> str | None:
    """The Windows computer name of the tree at root (SYSTEM hive), or None."""
    root = os.fsencode(root)
    kernel = _windows_kernel(root)
    if kernel is None:
        return None
    system32 = os.path.dirname(kernel)
    # the control set Windows boots with (Select\Current), 1 when that cannot be read
    current = _hive_values(root, system32, b"system", "Select").get("Current", "1")
    number = int(current) if current.isdigit() and 0 < int(current) < 1000 else 1
    key = f"ControlSet{number:03d}\\{_NAME_KEY}"
    return _hive_values(root, system32, b"system", key).get("ComputerName")


def _hive_values(root: bytes, system32: bytes, hive_name: bytes, key: str) -> dict:
    """The plain text and number values of key in the hive System32/config/HIVE_NAME (in any
    case, never through a symlink), read by hivexget (Debian's libhivex-bin, made for hives
    from anyone) when it is at hand; {} when it cannot be read."""
    tool = shutil.which("hivexget")
    hive = _child(root, _child(root, system32, b"config"), hive_name)
    if tool is None or hive is None:
        return {}
    try:
        fd = open_beneath(root, hive)       # hivexget reads this very file, through its fd
    except OSError:
        return {}
    try:
        shown = subprocess.run([tool, f"/proc/self/fd/{fd}", key], pass_fds=(fd,),
                               capture_output=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    finally:
        os.close(fd)
    values = {}
    for line in shown.decode("utf-8", "replace").splitlines():
        # regedit format: "Name"="text" or "Name"=dword:0000abcd; plain text only is kept
        match = re.fullmatch(r'"(\w+)"=(?:"([\w .()-]{1,200})"|dword:([0-9a-f]{8}))', line)
        if match is not None:
            values[match[1]] = match[2] if match[2] is not None else str(int(match[3], 16))
    return values


def _child(root: bytes, parent: bytes | None, wanted: bytes) -> bytes | None:
    """parent's entry named wanted in any case (not a symlink), or None."""
    if parent is None:
        return None
    try:
        names = os.listdir(os.path.join(root, parent))
    except OSError:
        return None
    for name in names:
        if name.lower() == wanted and not os.path.islink(os.path.join(root, parent, name)):
            return os.path.join(parent, name)
    return None


def _windows_kernel(root: bytes) -> bytes | None:
    """The path of Windows/System32/ntoskrnl.exe in root, spelt in any case (Windows trees
    have WINDOWS/system32 too), or None; never through a symlink."""
    path = b""
    for wanted in (b"windows", b"system32", b"ntoskrnl.exe"):
        try:
            names = os.listdir(os.path.join(root, path) if path else root)
        except OSError:
            return None
        found = [n for n in names if n.lower() == wanted]
        if not found:
            return None
        path = os.path.join(path, found[0]) if path else found[0]
        if os.path.islink(os.path.join(root, path)):
            return None
    return path if os.path.isfile(os.path.join(root, path)) else None


def _os_release(text: str):
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            yield key.strip(), value.strip().strip('"').strip("'")
