"""The diffimg command line: click commands, one module each; only parsing and printing here."""

import signal
import sys

EXIT_INTERRUPTED = 130
# Ctrl-C while the modules below load ends quietly with the interrupted code; main() then puts
# Python's own handler back (KeyboardInterrupt), which the commands' cleanups rely on
signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(EXIT_INTERRUPTED))

import click  # noqa: E402

from .. import __version__, runs  # noqa: E402
from ..errors import DiffimgError  # noqa: E402

trust_mtime_option = click.option(
    "--trust-mtime", is_flag=True,
    help="Trust a recorded digest for any file of the same size and mtime, as rsync does: right "
         "for a copy of the tree, but a change that kept both (an installer, a restored time) "
         "is missed. By default only a file whose inode and ctime also prove it untouched on "
         "the same filesystem is trusted, and every other file is hashed.")


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


def main(argv=None):
    """Run the CLI; expected errors become one line on stderr and their documented exit code."""
    _more_open_files()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runs.clean_dead_runs(lambda message: print(f"diffimg: warning: {message}", file=sys.stderr))
    signal.signal(signal.SIGTERM, _terminated)
    try:
        rc = cli.main(args=argv, prog_name="diffimg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        rc = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        rc = exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        print("diffimg: interrupted", file=sys.stderr)
        rc = EXIT_INTERRUPTED
    except DiffimgError as exc:
        print(f"diffimg: error: {exc.message}", file=sys.stderr)
        rc = exc.exit_code
    except BrokenPipeError:
        sys.stderr.close()   # the reader went away (| head): not an error worth a traceback
        rc = 0
    sys.exit(rc or 0)


from . import compare, images, inspect, restore, scan, status  # noqa: F401  (registers the commands)
