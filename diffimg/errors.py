"""The exception tree. Each class carries the exit code the CLI returns for it.

    DiffimgError (exit 10)
    ├── InputNotFound (3)         a path given on the command line does not exist
    ├── ManifestError (4)         not a manifest, corrupt or truncated
    │   └── UnsupportedVersion (5)  a manifest or image of a newer major format version
    ├── ScanError (6)             a tree could not be read (unreadable file, walk failure)
    ├── OutputError (7)           the output could not be written (full disk included)
    ├── ImageError (8)            not an image, or a corrupt or truncated one
    ├── ChainError (9)            a diff whose parent is not the layer before it
    ├── ToolError (11)            an external tool is missing or failed (mksquashfs, mount ...)
    ├── NeedsRoot (12)            the operation mounts images and needs root
    ├── Busy (13)                 another diffimg is restoring the same target
    ├── Refused (14)              apply: the target is not the diff's parent tree
    ├── NoState (15)              status: diffimg never restored the target (or its state is damaged)
    ├── RemoteError (18)          a server could not be reached, or answered with an error
    ├── RangesNotHonoured (19)    a server sent whole files where byte ranges were asked for
    └── Conflicts (20)            rebase: the host's and the chain's changes of a path conflict

Exit 0 and 1 belong to commands (identical / differ); 2 is click's usage error;
130 is an interrupt. The table lives in spec/cli.md.
"""

import os


class DiffimgError(Exception):
    exit_code = 10
    tool_output = ""        # what an external tool printed, when its failure is the cause

    def __init__(self, message: str, *, tool_output: str = ""):
        super().__init__(message)
        self.message = message
        self.tool_output = tool_output


class InputNotFound(DiffimgError):
    exit_code = 3


class ManifestError(DiffimgError):
    exit_code = 4


class UnsupportedVersion(ManifestError):
    exit_code = 5


class ScanError(DiffimgError):
    exit_code = 6


class OutputError(DiffimgError):
    exit_code = 7


class ImageError(DiffimgError):
    exit_code = 8


class ChainError(DiffimgError):
    exit_code = 9


class ToolError(DiffimgError):
    exit_code = 11


class NeedsRoot(DiffimgError):
    exit_code = 12


class Busy(DiffimgError):
    exit_code = 13


class Refused(DiffimgError):
    exit_code = 14

    def __init__(self, message: str, *, differences=()):
        super().__init__(message)
        self.differences = list(differences)    # (path, what differs) of each path, if known


class NoState(DiffimgError):
    exit_code = 15


class RemoteError(DiffimgError):
    exit_code = 18


class RangesNotHonoured(RemoteError):
    exit_code = 19


class Conflicts(DiffimgError):
    exit_code = 20

    def __init__(self, message: str, *, conflicts=()):
        super().__init__(message)
        self.conflicts = list(conflicts)    # (path, why) of each conflicting path


# where a partition the user named is mounted for a command -> the name given (as_folders):
# messages name what the user gave, never a temporary mount point
_GIVEN_NAMES: dict[bytes, bytes] = {}


def name_mount_as(folder, given):
    """Show paths at or below folder as below given from now on (None: forget folder)."""
    if given is None:
        _GIVEN_NAMES.pop(os.fsencode(folder), None)
    else:
        _GIVEN_NAMES[os.fsencode(folder)] = os.fsencode(given)


def given_name(folder) -> bytes | None:
    """The partition the user named, when folder is where it is mounted for the command."""
    return _GIVEN_NAMES.get(os.fsencode(folder))


def show_path(path) -> str:
    """A path as one printable line: invalid UTF-8 and control characters escaped; a path in a
    partition mounted for the command, as below the partition's name."""
    path = os.fsencode(path)
    for folder, given in _GIVEN_NAMES.items():
        if path == folder or path.startswith(folder.rstrip(b"/") + b"/"):
            path = given + (b":" + path[len(folder):] if len(path) > len(folder) else b"")
            break
    text = path.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
