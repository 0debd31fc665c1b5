"""Worker processes for per-file work (hashing, copying, writing files) in batches.

Many small files cost more in per-file Python work than in the work itself, and threads would
serialize that work on the GIL; worker processes run it on every core. They are started by a
forkserver, which is safe even when the calling process has threads.
"""

import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import threading
from concurrent.futures import ProcessPoolExecutor

from . import runs
from .interrupts import signals_held

# imported once by the forkserver, so each worker starts with it: the module whose batches
# most runs send (named, not imported: it lies above this one)
PRELOAD = ["diffimg.scan.hashing"]


def _worker_start(parent: int):
    """In each worker: Ctrl-C is the parent's to handle; and when the parent dies (kill -9),
    the worker ends too. Its own parent is the forkserver, which lives as long as a worker
    does, and it waits on a queue whose writing end it holds itself: without this it would
    wait forever, holding the caller's stdout and stderr open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(1)
    threading.Thread(target=_exit_when_ready, args=(pidfd,), daemon=True).start()


def _exit_when_ready(pidfd: int):
    select.select([pidfd], [], [])      # readable once that process has ended
    os._exit(1)


def _forkserver_context():
    # the forkserver's socket goes in this run's folder (runs.py), not a /tmp/pymp-* of its own
    config = multiprocessing.process.current_process()._config
    if config.get("tempdir") is None:
        config["tempdir"] = runs.multiprocessing_folder()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def prestart_workers():
    """Start the server that forks the worker processes, if it is not running: in the
    background, so a pool started later gets its workers at once instead of waiting for a new
    interpreter's imports.

    It starts with Ctrl-C ignored, as the workers it forks are: a new interpreter keeps an
    ignored SIGINT ignored, so a Ctrl-C at the terminal while it imports cannot make it print a
    traceback (it ignores SIGINT itself only once its imports are done)."""
    _forkserver_context()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


class WorkerPool:
    """Worker processes running batches (hashing.hash_batch, copy_batch, writer.write_batch);
    started on first use, so a scan that hashes nothing (all quick-checked) starts none."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 2
        self._executor = None

    def submit(self, fn, items: list):
        """Run fn(items) in a worker; return its future."""
        # A submit may start a worker, and a worker still starting when this process exits
        # fails to attach to the pool's queues (a traceback on our stderr): an interrupt waits
        # until the start is done, and close() waits for every started worker
        if self._executor is None:
            prestart_workers()
        with signals_held():
            if self._executor is None:
                self._executor = ProcessPoolExecutor(self.workers, mp_context=_forkserver_context(),
                                                     initializer=_worker_start,
                                                     initargs=(os.getpid(),))
            return self._executor.submit(fn, items)

    def close(self):
        with signals_held():
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


def run_pooled(fn, items, check, batch_size: int = 256):
    """Run fn (hash_batch or copy_batch) over the args of items, (args, tag) pairs, in worker
    processes, a few batches ahead; call check(tag, result) for each, in order."""
    pool = WorkerPool()
    pending = []

    def settle(limit):
        while len(pending) > limit or (pending and pending[0][1].done()):
            tags, future = pending.pop(0)
            for tag, result in zip(tags, future.result()):
                check(tag, result)

    try:
        args, tags = [], []
        for arg, tag in items:
            args.append(arg)
            tags.append(tag)
            if len(args) >= batch_size:
                pending.append((tags, pool.submit(fn, args)))
                args, tags = [], []
                settle(2 * pool.workers)
        if args:
            pending.append((tags, pool.submit(fn, args)))
        settle(0)
    finally:
        pool.close()
