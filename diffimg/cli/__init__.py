"""The diffimg command line: one module per group of commands (click); options, output and exit
codes only, over the library."""

import contextlib
import errno
import os
import signal
import sys

from ..errors import Exit

# Ctrl-C while the modules below load ends quietly with the interrupted code; main() then puts
# Python's own handler back (KeyboardInterrupt), which the commands' cleanups rely on
signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(Exit.INTERRUPTED))

import click  # noqa: E402

from .. import __version__
from ..errors import DiffimgError, OutputError, name_mount_as  # noqa: E402
from ..image.chain import is_image  # noqa: E402
from ..progress import set_plain  # noqa: E402
from ..system import runs  # noqa: E402
from ..system.partition import is_partition, tree_of  # noqa: E402
from ..tree.manifest import is_manifest  # noqa: E402

trust_mtime_option = click.option(
    "--trust-mtime", is_flag=True,
    help="Trust a recorded digest for any file of the same size and mtime, as rsync does: right "
         "for a copy of the tree, but a change that kept both (an installer, a restored time) "
         "is missed. By default only a file whose inode and ctime also prove it untouched on "
         "the same filesystem is trusted, and every other file is hashed.")


windows_files_option = click.option(
    "--windows-files", is_flag=True,
    help="Keep in a Windows tree what it leaves out by default (pagefile.sys, hiberfil.sys, "
         "swapfile.sys, System Volume Information, $Recycle.Bin, ...; spec/manifest.md).")

progress_option = click.option(
    "--progress", is_flag=True, expose_value=False, is_eager=True,
    callback=lambda ctx, param, value: set_plain(value),
    help="Print progress as plain lines every 2 s even when stderr is not a terminal (for the "
         "web console of an imaging server).")

allow_unclean_option = click.option(
    "--allow-unclean", is_flag=True,
    help="Image an NTFS partition whose dirty bit is set (Windows did not close it) as it is, "
         "read-only; by default such a partition is refused.")


@contextlib.contextmanager
def as_folders(paths, *, writable: bool = False, allow_unclean: bool = False):
    """The paths, each partition among them (a block device, or a file holding a filesystem
    rather than an image or a manifest) replaced by its mount for the block (partition.py)."""
    with contextlib.ExitStack() as stack:
        folders = [stack.enter_context(tree_of(p, writable=writable, allow_unclean=allow_unclean))
                   if _names_partition(p) else p for p in paths]
        for given, folder in zip(paths, folders):
            if folder is not given:
                name_mount_as(folder, given)
                stack.callback(name_mount_as, folder, None)
        try:
            yield folders
        except DiffimgError as exc:      # name the partition as given, not where it is mounted
            for given, folder in zip(paths, folders):
                if folder is not given:
                    exc.message = exc.message.replace(os.fsdecode(folder), os.fsdecode(given))
            raise


def _names_partition(path) -> bool:
    if os.path.isdir(path) or not os.path.exists(path):
        return False
    return not is_image(path) and not is_manifest(path) and is_partition(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="diffimg")
def cli():
    """Differential filesystem images: exact manifests, full and differential images, restore."""


def _terminated(signum, frame):
    raise KeyboardInterrupt   # unwind: unmount, remove temporary files, as for Ctrl-C


def _more_open_files():
    """Removing a deep folder holds one fd per level: take the hard limit of open files."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 1 << 16) if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class _ClosedStdout:
    """sys.stdout when diffimg was started with it closed: what a command prints is an
    OutputError (exit 7), not silently lost."""
    encoding, errors = "utf-8", "strict"

    def write(self, text):
        raise OutputError("cannot write the output: stdout is closed")

    def fileno(self):
        raise OutputError("cannot write the output: stdout is closed")

    def flush(self):
        pass

    def isatty(self) -> bool:
        return False


def _standard_fds():
    """A closed stdin, stdout or stderr gets /dev/null (read-only for stdout: a write to it
    fails), so that no file diffimg opens takes its number: a message or a tool's output
    never lands in an image or a target."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open("/dev/null", os.O_WRONLY if fd == 2 else os.O_RDONLY)
            if null != fd:
                os.dup2(null, fd, inheritable=True)
                os.close(null)
            else:
                os.set_inheritable(fd, True)
            if fd == 1:
                sys.stdout = _ClosedStdout()
            elif fd == 2:           # (print to a None stderr would write on stdout)
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


# errors of a write that mean the output cannot be written (a full disk, /dev/full, a quota)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def main(argv=None):
    """Run the CLI; expected errors become one line on stderr and their documented exit code."""
    _standard_fds()
    _more_open_files()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runs.clean_dead_runs(lambda message: print(f"diffimg: warning: {message}", file=sys.stderr))
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)      # a closed terminal or ssh session too
    try:
        try:
            rc = cli.main(args=argv, prog_name="diffimg", standalone_mode=False)
            sys.stdout.flush()      # (a full disk is said here, not at exit)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            raise OutputError(f"cannot write the output: {exc.strerror}") from None
    except click.exceptions.Exit as exc:
        rc = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        rc = exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        print("diffimg: interrupted", file=sys.stderr)
        rc = Exit.INTERRUPTED
    except DiffimgError as exc:
        print(f"diffimg: error: {exc.message}", file=sys.stderr)
        rc = exc.exit_code
    except BrokenPipeError:
        sys.stderr.close()   # the reader went away (| head): not an error worth a traceback
        rc = 0
        _drop_stdout()
    except Exception:       # a bug: its traceback, and exit 10, never a code with a meaning
        import traceback
        traceback.print_exc()
        print("diffimg: error: an unexpected error (a bug in diffimg: please report it with the "
              "lines above)", file=sys.stderr)
        rc = Exit.OTHER
    # the work is done (or undone): a Ctrl-C or SIGTERM now would only cut the exit handlers
    # (unmounting, removing this run's folder) short, with a traceback
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    if rc:
        _drop_stdout()      # what is left in its buffer cannot be written: no second error
    sys.exit(rc or 0)


def _drop_stdout():
    """Let Python's exit not flush stdout again when its buffer holds what cannot be written
    (what can be is written first)."""
    try:
        sys.stdout.flush()
        return
    except (OSError, ValueError, DiffimgError):
        pass
    with contextlib.suppress(OSError):
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)


from . import compare, deploy, hostlayers, inspect, make, mounts, restore, scan, status  # noqa: F401,E501  (registers the commands)
