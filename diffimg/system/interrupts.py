"""Hold Ctrl-C, SIGTERM and SIGHUP over a step that must not be cut in half."""

import contextlib
import signal
import threading

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM for the block; one that arrived meanwhile takes effect (as
    KeyboardInterrupt) when the block ends.

    Two locks, because either alone leaks: the thread mask keeps the signal from the commands
    the block runs (they inherit it), and swapping the Python handlers catches a signal the
    kernel delivered to another thread, which Python would still raise in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield                       # only the main thread receives Python signal handlers
        return
    arrived = []
    handlers = {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum))
                for signum in HELD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # a blocked one runs the recorder now
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if arrived:
            handler = handlers[arrived[0]]
            if callable(handler):
                handler(arrived[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(arrived[0])
