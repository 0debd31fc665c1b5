"""A list kept mostly on disk: a restore's plan of a million entries in little memory.

A restore decides every action before it writes anything; at a million entries those actions,
as Python objects, took over a gigabyte. A SpillList keeps its last few thousand items as
objects and the rest pickled in zstd-compressed batches (about 30 bytes an entry), in an
unlinked file of this run's folder (runs.py): no one else can reach it, and nothing is left
after a crash. Only this process writes what it reads back, so pickle is safe here.
"""

import os
import pickle
import tempfile

import zstandard

from ..entry import Entry, Kind
from ..errors import OutputError, show_path
from . import runs
from .safefs import pwrite_all

BATCH = 4096


class SpillList:
    """append, len and iteration (in order, from the start, as often as wanted). encode turns
    an item into plain data (tuples, bytes, ints: what pickle packs in C, fast), decode turns
    it back: pickling objects of Python classes costs some 15 us each."""

    def __init__(self, encode=None, decode=None):
        self._encode = encode
        self._decode = decode
        self._tail: list = []                     # the newest items, not yet spilled
        self._batches: list[tuple[int, int]] = []  # (offset, length) of each spilled batch
        self._file = None
        self._end = 0
        self._len = 0

    def append(self, item):
        self._tail.append(item)
        self._len += 1
        if len(self._tail) >= BATCH:
            self._spill()

    def _spill(self):
        folder = runs.current().folder
        try:
            if self._file is None:   # closed by close(), or when the list goes
                self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115
            plain = self._tail if self._encode is None else [self._encode(i) for i in self._tail]
            data = _compressor.compress(pickle.dumps(plain, pickle.HIGHEST_PROTOCOL))
            start = self._end
            pwrite_all(self._file.fileno(), data, start)
            self._end = start + len(data)
        except OSError as exc:       # before anything is written to a target: nothing changed
            raise OutputError(f"cannot keep the plan in {show_path(folder)} (TMPDIR): "
                              f"{exc.strerror}; nothing was changed") from None
        self._batches.append((start, len(data)))
        self._tail = []

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self):
        for offset, length in self._batches:
            data = os.pread(self._file.fileno(), length, offset)
            plain = pickle.loads(_decompressor.decompress(data))
            yield from plain if self._decode is None else map(self._decode, plain)
        yield from list(self._tail)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


_compressor = zstandard.ZstdCompressor(level=1)
_decompressor = zstandard.ZstdDecompressor()


def entry_fields(e: Entry) -> tuple:
    """An Entry as plain data, every field (the stat cache's too)."""
    return (e.path, int(e.kind), e.mode, e.uid, e.gid, e.mtime_ns, e.size, e.digest, e.target,
            e.rdev, e.xattrs, e.link, e.sparse, e.ino, e.ctime_ns, e.nlink)


def entry_of(fields: tuple) -> Entry:
    e = Entry(fields[0], _KINDS[fields[1]], *fields[2:13])
    e.ino, e.ctime_ns, e.nlink = fields[13:]
    return e


def entries() -> SpillList:
    """A SpillList of Entries."""
    return SpillList(entry_fields, entry_of)


_KINDS = {int(kind): kind for kind in Kind}
