"""Write an NTFS volume through libntfs-3g in a process of its own, which a kill of diffimg
does not cut in half.

libntfs-3g keeps no journal: a process killed inside one of its calls (an index split half
written) leaves the volume damaged. ntfs-3g's FUSE daemon is safe from a kill of the program
writing through it, because it is another process that finishes each call; the library, used
in diffimg's own process, would not be. So the writing runs in a child: it ignores Ctrl-C,
SIGTERM and SIGHUP (the terminal sends them to the whole group), and between two entries
asks whether diffimg wants it to stop or is gone (the pipe's other end closed, by diffimg or
by the kernel at its death); then it closes the volume cleanly and ends. Only a kill of the
child itself (or of its whole group with SIGKILL) can still cut a call in half.
"""

import os
import select
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection

from ..errors import DiffimgError, OutputError, show_path

PROGRESS_EVERY = 0.05          # seconds between two progress messages of the child


class Stopped(Exception):
    """diffimg asked the child to stop, or is gone."""


def run(path: bytes, work, phase, on_progress):
    """work(volume, say, stopping) with the volume at path opened writable, in a child process
    (the module's docstring); what it returns. say(Phase, total=None) reaches phase, say(None,
    files, bytes) on_progress; stopping() is true once the child should stop (work then raises
    Stopped). A DiffimgError of the child is raised here as it was raised there."""
    if threading.active_count() > 1:            # (a fork copies no other thread)
        def say(step, *counts, total=None):
            if step is not None:
                phase(step, total=total)
            elif on_progress is not None:
                on_progress(*counts)
        return _opened(path, lambda volume: work(volume, say, lambda: False))
    messages_r, messages_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(messages_r)
        os.close(stop_w)
        _child(path, work, Connection(messages_w, readable=False), stop_r)
    os.close(messages_w)
    os.close(stop_r)
    messages = Connection(messages_r, writable=False)
    try:
        while True:
            try:
                kind, *args = messages.recv()
            except EOFError:
                raise OutputError(f"the process writing {show_path(path)} ended without a "
                                  "word") from None
            if kind == "phase":
                phase(args[0], total=args[1])
            elif kind == "progress":
                if on_progress is not None:
                    on_progress(*args)
            elif kind == "done":
                return args[0]
            elif kind == "error":
                raise args[0](args[1])
            else:                                   # a bug, with the child's traceback
                raise RuntimeError(f"the process writing {show_path(path)} failed:\n{args[0]}")
    finally:
        os.close(stop_w)                 # (it stops at the next entry, if it still runs)
        messages.close()
        _wait(pid)


def _child(path: bytes, work, messages: Connection, stop_r: int):
    """The child's whole life: it never returns into diffimg's code (os._exit)."""
    code = 1
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        last = [0.0]

        def say(step, *counts, total=None):
            if step is not None:
                messages.send(("phase", step, total))
            elif time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                messages.send(("progress", *counts))

        def stopping() -> bool:
            return bool(select.select([stop_r], [], [], 0)[0])
        result = _opened(path, lambda volume: work(volume, say, stopping))
        messages.send(("done", result))
        code = 0
    except Stopped:
        code = 0
    except DiffimgError as exc:
        _send(messages, ("error", type(exc), exc.message))
    except BaseException:
        _send(messages, ("bug", traceback.format_exc()))
    finally:
        os._exit(code)


def _opened(path: bytes, work):
    """work(volume) on the volume opened writable in this process; closed cleanly whatever
    happens."""
    from ..windows._ntfsvol import Volume
    try:
        volume = Volume(path, writable=True)
    except OSError as exc:
        raise OutputError(f"cannot open {show_path(path)} to write it: {exc.strerror}; nothing "
                          "was changed") from None
    failed = True
    try:
        result = work(volume)
        failed = False
        return result
    finally:
        try:
            volume.close()
        except OSError as exc:
            if not failed:
                raise OutputError(f"cannot write {show_path(path)} back whole: "
                                  f"{exc.strerror}") from None


def _send(messages: Connection, message):
    try:
        messages.send(message)
    except OSError:
        pass                                        # diffimg is gone


def _wait(pid: int):
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        except KeyboardInterrupt:
            continue                     # (the child is stopping: its volume must be closed)
