"""Exit codes, and the exception tree: each class carries the code the CLI returns for it.

    DiffimgError (exit 10)
    ├── BadUsage (2)              a value no command line may give (--keep outside the root...)
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
    ├── UnsafeVolume (17)         a partition that must not be read or written as it is
    ├── RemoteError (18)          a server could not be reached, or answered with an error
    │   └── RangesNotHonoured (19)  a server sent whole files where byte ranges were asked for
    └── Conflicts (20)            rebase: the host's and the chain's changes of a path conflict

Every code the CLI returns is an Exit member: spec/cli.md's table lists the same codes (a test
compares them).
"""

import enum
import os


class Exit(enum.IntEnum):
    OK = 0                  # compare: identical; verify: all good; diff: an image was made
    DIFFERENT = 1           # compare: differ; verify: problems; diff, rebase: nothing to make
    USAGE = 2               # click's usage error, and BadUsage
    INPUT_NOT_FOUND = 3
    BAD_MANIFEST = 4
    NEWER_VERSION = 5
    UNREADABLE_TREE = 6
    OUTPUT_FAILED = 7
    BAD_IMAGE = 8
    BROKEN_CHAIN = 9
    OTHER = 10              # any other error, a bug included
    TOOL_FAILED = 11
    NEEDS_ROOT = 12
    BUSY = 13
    REFUSED = 14
    NO_STATE = 15
    INCOMPLETE = 16         # status: the last restore or apply did not finish
    UNSAFE_VOLUME = 17
    SERVER_FAILED = 18
    NO_RANGES = 19
    CONFLICTS = 20
    INTERRUPTED = 130


class DiffimgError(Exception):
    exit_code = Exit.OTHER
    tool_output = ""        # what an external tool printed, when its failure is the cause

    def __init__(self, message: str, *, tool_output: str = ""):
        super().__init__(message)
        self.message = message
        self.tool_output = tool_output


class BadUsage(DiffimgError, ValueError):
    """A value given on the command line that no run may take: a usage error."""
    exit_code = Exit.USAGE


class InputNotFound(DiffimgError):
    exit_code = Exit.INPUT_NOT_FOUND


class ManifestError(DiffimgError):
    exit_code = Exit.BAD_MANIFEST


class UnsupportedVersion(ManifestError):
    exit_code = Exit.NEWER_VERSION


class ScanError(DiffimgError):
    exit_code = Exit.UNREADABLE_TREE


class OutputError(DiffimgError):
    exit_code = Exit.OUTPUT_FAILED


class ImageError(DiffimgError):
    exit_code = Exit.BAD_IMAGE


class ChainError(DiffimgError):
    exit_code = Exit.BROKEN_CHAIN


class ToolError(DiffimgError):
    exit_code = Exit.TOOL_FAILED


class NeedsRoot(DiffimgError):
    exit_code = Exit.NEEDS_ROOT


class Busy(DiffimgError):
    exit_code = Exit.BUSY


class Refused(DiffimgError):
    exit_code = Exit.REFUSED

    def __init__(self, message: str, *, differences=()):
        super().__init__(message)
        self.differences = list(differences)    # (path, what differs) of each path, if known


class NoState(DiffimgError):
    exit_code = Exit.NO_STATE


class UnsafeVolume(DiffimgError):
    """A partition that must not be read or written as it is (spec/cli.md, exit codes)."""
    exit_code = Exit.UNSAFE_VOLUME


class RemoteError(DiffimgError):
    exit_code = Exit.SERVER_FAILED


class RangesNotHonoured(RemoteError):
    exit_code = Exit.NO_RANGES


class Conflicts(DiffimgError):
    exit_code = Exit.CONFLICTS

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
