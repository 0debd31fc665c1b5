"""Images on a web server, read in byte ranges.

    RemoteImage(url)     an Image whose metadata (footer, index, blobs) was fetched from the end
                         of the file into a sparse local copy: every metadata reader works on it
    ContentReader        the stored files of a squashfs container, located by the image's ranges
                         blob, fetched (or read from a local file) in merged byte ranges, their
                         blocks decoded, and each file given to a sink in order, checked against
                         its digest

Only what is asked for is fetched: the blocks of the wanted files, merged into ranges when the
gap between them is small (MERGE_GAP), many ranges per request (http.py); when the wanted bytes
are most of the container (WHOLE_FRACTION), one range over all of them instead.
"""

import array
import bisect
import os
import re
import sys

import xxhash
import zstandard

from .. import codec
from ..errors import DiffimgError, ImageError, show_path
from ..system import runs
from ..system.http import Server, Traffic
from ..system.safefs import pwrite_all
from ..tree.manifest import unsafe_path
from ..windows.streams import STORE_DIR
from . import squashmap
from .format import FOOTER, MAGIC, MAX_SMALL_BLOB, Image
from .squashmap import SIZE_MASK, UNCOMPRESSED_BLOCK

MERGE_GAP = 16 << 10          # fetch a gap this small rather than start another range
WHOLE_FRACTION = 0.5          # wanted bytes past this share of the container: one range
MAX_METADATA = 1 << 30        # blobs: beyond the manifest of ten million entries
MAX_FILES = 1 << 26
MAX_RANGES_BYTES = 512 << 20    # the ranges blob decoded: 2 TiB files of words, and more
TAIL = 64 << 10                # the first request: the footer, and with luck all the metadata
MAX_OPEN = 64                  # files whose pieces come apart, per pass of a read: open sinks

class RemoteImage(Image):
    """An image at an http(s) URL. Its path is the URL (for messages); its metadata lies in a
    sparse local file of the image's size (meta_path), holding the bytes from the first blob to
    the end; the container is read in ranges (content_reader)."""

    remote = True

    def __init__(self, url, traffic: Traffic | None = None):
        url = os.fsdecode(url)
        self.server = Server(url, traffic)
        tail = self.server.tail(TAIL)          # most images' whole metadata: one request
        size = self.server.size
        if len(tail) < FOOTER.size:
            raise ImageError(f"{url}: not a diffimg image (too short)")
        magic, _major, _minor, index_offset, index_length, _ = FOOTER.unpack(tail[-FOOTER.size:])
        if magic != MAGIC or index_offset + index_length > size - FOOTER.size:
            raise ImageError(f"{url}: not a diffimg image (no footer; truncated or another file)")
        if index_length > MAX_SMALL_BLOB or index_offset + index_length != size - FOOTER.size:
            raise ImageError(f"{url}: its index is corrupt (too large, or not before its footer)")
        folder = runs.current().folder          # removed at exit; a killed run's by the next
        local = os.path.join(folder, b"remote-%d.meta" % len(os.listdir(folder)))
        with open(local, "w+b") as f:
            try:
                f.truncate(size)
            except OSError as exc:
                raise ImageError(f"{url}: an image of {size:,} bytes cannot be read here "
                                 f"({exc.strerror})") from None
            have = size - len(tail)              # the tail's first byte
            if index_offset < have:              # (at most MAX_SMALL_BLOB: checked above)
                self._fetch_into(f, index_offset, have - index_offset)
            f.seek(have)
            f.write(tail)
            f.seek(index_offset)
            spans = _blob_spans(f.read(index_length + FOOTER.size), index_offset)
            # the ranges blob is fetched only when content is (a restore with nothing to do,
            # info, ls and compare never need it)
            wanted = [span for name, span in spans.items() if name != "ranges"]
            first = min((start for start, _ in wanted), default=index_offset)
            last = max((start + length for start, length in wanted), default=index_offset)
            if last - first > MAX_METADATA:
                raise ImageError(f"{url}: its metadata is too large ({last - first:,} bytes)")
            if first < have:
                self._fetch_into(f, first, min(have, last) - first)
        try:
            super().__init__(local)
        except DiffimgError as exc:            # named by its URL, not the local copy
            exc.message = exc.message.replace(show_path(local), url)
            raise
        self.path = os.fsencode(url)
        # (the part of it before the tail, which was fetched whole)
        self._lazy = {name: (start, min(start + length, have) - start)
                      for name, (start, length) in spans.items()
                      if name == "ranges" and start < have}

    def blob(self, name: str) -> bytes:
        self._fetch_lazy(name)
        return super().blob(name)

    def check_blobs(self) -> list[str]:
        for name in list(self._lazy):          # (each blob's digest is of all of its bytes)
            self._fetch_lazy(name)
        return super().check_blobs()

    def _fetch_lazy(self, name: str):
        span = self._lazy.pop(name, None)
        if span is not None:
            if span[1] > MAX_METADATA:
                raise ImageError(f"{show_path(self.path)}: its {name} blob is too large")
            with open(self.meta_path, "r+b") as f:
                self._fetch_into(f, span[0], span[1])

    def container_tables(self) -> bytes:
        """The local copy's path, now holding the squashfs container's superblock and tables
        (inode, directory, fragment: from the inode table to the end of the data squashfs
        uses), fetched, so that squashmap.read_map reads them there (SquashfsError when the
        superblock is not sound)."""
        length = self.container.get("length", 0)
        with open(self.meta_path, "r+b") as f:
            self._fetch_into(f, 0, min(squashmap.SUPERBLOCK.size, length))
            start, end = squashmap.tables_span(os.pread(f.fileno(), squashmap.SUPERBLOCK.size, 0),
                                               length)
            if end - start > MAX_METADATA:
                raise ImageError(f"{show_path(self.path)}: its container's tables are too large "
                                 f"({end - start:,} bytes)")
            self._fetch_into(f, start, end - start)
        return self.meta_path

    def _fetch_into(self, f, start: int, length: int):
        """Bytes of the image written at their place in the local copy, as they come."""
        fd = f.fileno()
        end = min(start + length, os.fstat(fd).st_size)

        def sink(offset, data):
            pwrite_all(fd, data, offset)
        self.server.fetch([(start, end - start)], sink)

    def content(self):
        raise DiffimgError(f"{show_path(self.path)}: an image on a web server is read in byte "
                           "ranges, never mounted; copy it first (diffimg fetch URL --cache DIR)")

    def content_reader(self) -> "ContentReader":
        if self.format != "squashfs" or "ranges" not in self.blobs:
            raise ImageError(f"{show_path(self.path)}: a {self.format} image without a ranges "
                             "blob cannot be read in byte ranges; copy it first (diffimg fetch "
                             "URL --cache DIR) and restore from the copy")
        return ContentReader(self, self.server.fetch)


def _blob_spans(index_bytes: bytes, index_offset: int) -> dict:
    """name -> (start, length) of each blob the index names, as far as they lie before the
    index (the index is checked in full by Image once fetched)."""
    try:
        index = codec.unpack(index_bytes[:-FOOTER.size])
    except codec.DecodeErrors:
        return {}
    if type(index) is not dict:
        return {}
    return {name: (v[0], v[1]) for name, v in index.items()
            if type(v) is list and len(v) == 3 and type(v[0]) is int and type(v[1]) is int
            and v[0] >= 0 and v[1] >= 0 and v[0] + v[1] <= index_offset}


class Blocks:
    """Where one stored file's bytes lie in the container."""
    __slots__ = ("start", "words", "fragment", "fragment_offset", "size")

    def __init__(self, start, words, fragment, fragment_offset, size):
        self.start, self.words, self.fragment = start, words, fragment
        self.fragment_offset, self.size = fragment_offset, size

    def span(self) -> int:
        return sum(w & SIZE_MASK for w in self.words)


def read_ranges(image: Image) -> tuple[int, list, dict]:
    """(block size, fragments, path -> Blocks) from the image's ranges blob, every field checked
    against the container's length (spec/image.md): a bad one is a bad image."""
    data = image.blob("ranges")
    length = image.container.get("length", 0)

    def bad(why):
        raise ImageError(f"{show_path(image.path)}: its ranges blob is malformed ({why})")
    fragments, located = [], {}
    try:
        items = codec.iter_compressed_array(data, MAX_FILES, MAX_RANGES_BYTES)
        header = next(items, None)
        if type(header) is not dict or header.get("compressor") != "zstd":
            bad("not a map of zstd blocks")
        block_size, count = header.get("block_size"), header.get("fragments")
        if type(block_size) is not int or not 4096 <= block_size <= 1 << 20 \
                or block_size & (block_size - 1) or type(count) is not int or count < 0:
            bad("its header")
        for item in items:
            if len(fragments) < count:
                if type(item) is not list or len(item) != 2 \
                        or not _word_fits(item[0], item[1], block_size, length):
                    bad("a fragment")
                fragments.append(item)
                continue
            path, blocks = _file_record(item, block_size, count, length, located, bad)
            located[path] = blocks
    except (*codec.DecodeErrors, MemoryError) as exc:
        bad(exc)
    if len(fragments) < count:
        bad("fewer fragments than its header says")
    _disjoint(fragments, located, bad)
    return block_size, fragments, located


def _disjoint(fragments: list, located: dict, bad):
    """Every stored block lies in one place, so that what is read is bounded by the container:
    no file's blocks overlap another's, but for files of equal content that have the very same
    blocks (one start, the same sizes), and no fragment block overlaps any other block."""
    runs = {}
    for path, blocks in located.items():
        span = blocks.span()
        if span == 0:
            continue
        other = runs.setdefault(blocks.start, (span, blocks.words))
        if other[1] != blocks.words:
            bad(f"{show_path(path)}'s blocks overlap another file's")
    spans = sorted([(start, other[0]) for start, other in runs.items()]
                   + [(start, word & SIZE_MASK) for start, word in fragments])
    for (start, length), (following, _) in zip(spans, spans[1:]):
        if start + length > following:
            bad("blocks that overlap")


def _file_record(rec, block_size: int, fragments: int, length: int, located: dict, bad):
    if type(rec) is not list or len(rec) != 6 or type(rec[0]) is not bytes \
            or not stored_path(rec[0]) or rec[0] in located:
        bad("a file's path")
    path, start, words, fragment, frag_offset, size = rec
    if type(start) is not int or type(size) is not int or size < 0 or start < 0 \
            or type(words) is not bytes or len(words) % 4 or type(frag_offset) is not int:
        bad(f"{show_path(path)}")
    words = array.array("I", words)         # 4 bytes a word, not a Python int each
    if sys.byteorder != "little":
        words.byteswap()
    whole, tail = divmod(size, block_size)
    if fragment is None:
        count = whole + (tail > 0)
    else:
        count = whole
        if type(fragment) is not int or not 0 <= fragment < fragments or tail == 0 \
                or not 0 <= frag_offset <= block_size - tail:
            bad(f"{show_path(path)}'s fragment")
    if len(words) != count or not all((w & SIZE_MASK) <= block_size for w in words):
        bad(f"{show_path(path)}'s blocks")
    blocks = Blocks(start, words, fragment, frag_offset, size)
    if start + blocks.span() > length:
        bad(f"{show_path(path)} lies past the container")
    return path, blocks


def stored_path(path: bytes) -> bool:
    """A path a container may store: one inside the tree, or a large stream's content."""
    if path.startswith(STORE_DIR + b"/"):
        name = path[len(STORE_DIR) + 1:]
        return len(name) == 32 and all(c in b"0123456789abcdef" for c in name)
    return not unsafe_path(path)


def _word_fits(start, word, block_size, length) -> bool:
    return type(start) is int and type(word) is int and 0 <= word < 1 << 32 and start >= 0 \
        and 0 < word & SIZE_MASK <= block_size and start + (word & SIZE_MASK) <= length


class ContentReader:
    """The stored files of one squashfs image, read through fetch(ranges, sink) (a Server's
    fetch, or a local file's reads)."""

    def __init__(self, image: Image, fetch):
        self.image = image
        self._fetch = fetch
        self.block_size, self.fragments, self.files = read_ranges(image)

    def read(self, wanted, open_sink, problems: list | None = None):
        """For each (container path, digest, size) of wanted: its bytes, in order, given to the
        sink open_sink(path, size) returns (write(offset, data), then close(); abort() on
        failure). ImageError when a file is not in the container as its record says; with
        problems, each such file is named there instead, and the others are read. A sink is
        opened at its file's first piece and closed at its last, and the files are read in
        passes over the container, each with at most MAX_OPEN files whose pieces come apart
        (several blocks, or blocks and a fragment): however many files are wanted, few sinks
        are open at once."""
        name = show_path(self.image.path)
        states = []
        for path, digest, size in wanted:
            blocks = self.files.get(path)
            if blocks is None or blocks.size != size:
                why = "missing from the container" if blocks is None else \
                    f"its container holds {blocks.size:,} bytes, its record says {size:,}"
                if problems is None:
                    raise ImageError(f"{name}: {show_path(path)}: {why} (a damaged image?)")
                problems.append(f"{show_path(path)}: {why}")
                continue
            states.append(_FileState(path, digest, size, blocks, self.fragments))
        states.sort(key=lambda state: state.first)          # in the container's order
        length = self.image.container.get("length", 0)
        failures = []
        for group in _passes(states):
            plan = _Plan(self, group, open_sink, failures)
            try:
                plan.start()
                self._fetch(plan.ranges(length), plan.feed)
                plan.finish()
            except BaseException:
                plan.abort()
                raise
            if failures and problems is None:
                path, why = failures[0]
                raise ImageError(f"{name}: {show_path(path)}: {why} (a damaged image?)")
        if problems is not None:
            problems += [f"{show_path(path)}: {why}" for path, why in failures]

    def check(self, wanted, on_progress=None) -> list[str]:
        """Problems with each (container path, digest, size) of wanted: fetched and hashed,
        nothing written; on_progress(files, bytes) as each checks out."""
        problems, done = [], [0, 0]

        class Hashed:             # (the reader hashes)
            writes_holes = False

            def __init__(self, path, size):
                self.size = size

            def write(self, offset, data):
                pass

            def close(self):
                done[0] += 1
                done[1] += self.size
                if on_progress is not None:
                    on_progress(*done)

            def abort(self):
                pass

        self.read(wanted, Hashed, problems)
        return problems


def file_fetch(path):
    """A fetch(ranges, sink) reading a local image file (a cached copy)."""
    def fetch(ranges, sink):
        with open(path, "rb", buffering=0) as f:
            for start, length in ranges:
                while length > 0:
                    data = os.pread(f.fileno(), min(length, 1 << 20), start)
                    if not data:
                        raise ImageError(f"{show_path(path)}: cut short")
                    sink(start, data)
                    start += len(data)
                    length -= len(data)
    return fetch


class _FileState:
    """One wanted file as its pieces arrive: hashed and written in order (a fragment tail may
    come first, and waits), a hole (a sparse block) hashed as zeros and written only when the
    sink writes holes. Its sink is opened at its first piece and closed (or aborted, when the
    file is not what its record says) at its last: a file is open only while its pieces come."""
    __slots__ = ("path", "digest", "size", "blocks", "sink", "next", "pending", "hasher",
                 "broken", "done", "plan", "stored", "multi", "first", "given")

    def __init__(self, path, digest, size, blocks: "Blocks", fragments: list):
        self.path, self.digest, self.size, self.blocks = path, digest, size, blocks
        self.sink = None
        self.next = 0
        self.pending = {}
        self.hasher = xxhash.xxh3_128()
        self.broken = False
        self.done = False
        self.plan = None
        self.given = 0                   # where the pieces its blocks gave so far end
        self.stored = len(blocks.words) - blocks.words.count(0)      # blocks that take space
        pieces = self.stored + (blocks.fragment is not None)
        self.multi = pieces > 1          # may stay open while other files' pieces come
        self.first = blocks.start if self.stored else \
            fragments[blocks.fragment][0] if blocks.fragment is not None else -1

    def give(self, offset: int, data):
        """A piece at offset: bytes, or an int, the length of a hole."""
        if self.done:
            return
        if self.broken and type(data) is not int:
            data = len(data)             # (nothing of a broken file is hashed or written)
        self.pending[offset] = data
        while (data := self.pending.pop(self.next, None)) is not None:
            if self.sink is None:
                self.sink = self.plan.open_sink(self.path, self.size)
            if type(data) is int:
                if not self.broken:
                    at, end = self.next, self.next + data
                    while at < end:
                        zeros = _zeros(min(end - at, 1 << 20))
                        self.hasher.update(zeros)
                        if self.sink.writes_holes:
                            self.sink.write(at, zeros)
                        at += len(zeros)
                self.next += data
            else:
                self.hasher.update(data)
                self.sink.write(self.next, data)
                self.next += len(data)
        if self.next >= self.size and not self.done:
            self.complete()

    def complete(self):
        self.done = True
        sink, self.sink = self.sink, None
        if self.next != self.size or self.pending or self.broken \
                or self.hasher.digest() != self.digest:
            if sink is not None:
                sink.abort()
            self.plan.failed(self, "a block of it does not decode" if self.broken
                             else "content does not match its digest")
            return
        if sink is None:
            sink = self.plan.open_sink(self.path, self.size)
        sink.close()


def _zeros(n: int) -> bytes:
    if len(_ZEROS[0]) < n:
        _ZEROS[:] = [bytes(n)]
    return memoryview(_ZEROS[0])[:n]


_ZEROS = [b""]
_ZERO_WORDS = re.compile(rb"(?:\0\0\0\0)*")


def _next_stored(words, k: int) -> int:
    """The index of the first block at or after k that takes space (len(words) if none)."""
    if k >= len(words) or words[k]:
        return k
    return _ZERO_WORDS.match(memoryview(words).cast("B"), 4 * k).end() // 4


class _BlockRun:
    """The stored blocks of one or more files (files of equal content share them), one after
    another from start: the bytes that come are cut into blocks, each decoded once and given to
    every file, after the holes before it."""
    __slots__ = ("start", "words", "users", "k", "at", "buffer")

    def __init__(self, blocks: "Blocks"):
        self.start, self.words, self.users = blocks.start, blocks.words, []
        self.k = _next_stored(blocks.words, 0)
        self.at = blocks.start           # where block k lies
        self.buffer = bytearray()

    def end(self) -> int:
        return self.start + sum(w & SIZE_MASK for w in self.words)

    def expects(self) -> int:
        return self.at + len(self.buffer)

    def complete(self) -> bool:
        return self.k >= len(self.words)

    def take(self, plan: "_Plan", view, offset: int):
        """Bytes view (at offset in the container), from where the run expects its next."""
        i = self.expects() - offset
        words = self.words
        while i < len(view) and self.k < len(words):
            word = words[self.k]
            need = (word & SIZE_MASK) - len(self.buffer)
            piece = view[i:i + need]
            i += len(piece)
            if not self.buffer and len(piece) == need:
                raw = piece
            else:
                self.buffer += piece
                if len(piece) < need:
                    return
                raw, self.buffer = self.buffer, bytearray()
            k, self.k = self.k, _next_stored(words, self.k + 1)
            self.at += word & SIZE_MASK
            plan.decoded(self, k, word, raw, last=self.k >= len(words))
            if self.k < len(words) and all(s.broken or s.done for s in self.users):
                self.k = len(words)             # nothing more of it is decoded or used
                for state in self.users:
                    plan.give(state, _run_end(state, plan.bs), None)


def _run_end(state: _FileState, bs: int) -> int:
    """Where a file's blocks end and its fragment tail (if any) begins."""
    return min(len(state.blocks.words) * bs, state.size)


class _Fragment:
    """A fragment block: the tails of files, decoded once."""
    __slots__ = ("start", "word", "users", "buffer")

    def __init__(self, start: int, word: int):
        self.start, self.word, self.users, self.buffer = start, word, [], bytearray()

    def end(self) -> int:
        return self.start + (self.word & SIZE_MASK)

    def expects(self) -> int:
        return self.start + len(self.buffer)

    def complete(self) -> bool:
        return self.buffer is None

    def take(self, plan: "_Plan", view, offset: int):
        i = self.expects() - offset
        need = (self.word & SIZE_MASK) - len(self.buffer)
        self.buffer += view[i:i + need]
        if len(self.buffer) == self.word & SIZE_MASK:
            raw, self.buffer = self.buffer, None
            plan.decoded(self, None, self.word, raw)


class _Plan:
    """One pass of a read: the runs and fragment blocks its files need, keyed by their place in
    the container (never overlapping: read_ranges), fed the bytes as they come."""

    def __init__(self, reader: "ContentReader", states: list, open_sink, failures: list):
        self.reader, self.open_sink, self.failures = reader, open_sink, failures
        self.bs = reader.block_size
        self.dctx = zstandard.ZstdDecompressor()
        self.states = states
        runs, fragments = {}, {}
        for state in states:
            state.plan = self
            blocks = state.blocks
            if state.stored:
                run = runs.setdefault(blocks.start, _BlockRun(blocks))
                if run.words != blocks.words:    # (read_ranges: a start has one set of blocks)
                    raise ImageError(f"{show_path(reader.image.path)}: two files give one block "
                                     "two sizes (a damaged image?)")
                run.users.append(state)
            if blocks.fragment is not None:
                fragment = fragments.get(blocks.fragment)
                if fragment is None:
                    fragment = fragments[blocks.fragment] = _Fragment(
                        *reader.fragments[blocks.fragment])
                fragment.users.append(state)
        self.parts = sorted([*runs.values(), *fragments.values()], key=lambda part: part.start)
        self.starts = [part.start for part in self.parts]

    def start(self):
        """Files with no piece to fetch (empty, or all holes): complete now, one at a time."""
        for state in self.states:
            if not state.stored and state.blocks.fragment is None:
                self.give(state, state.size, None)
                if not state.done:
                    state.complete()

    @staticmethod
    def give(state: _FileState, upto: int, piece):
        """To state, in the order of its blocks: the hole from where its last piece ended up to
        upto, then piece (bytes, or the length of a piece that does not decode) at upto."""
        if upto > state.given:
            state.give(state.given, upto - state.given)
            state.given = upto
        if piece is not None:
            state.give(upto, piece)
            state.given = upto + (piece if type(piece) is int else len(piece))

    def ranges(self, container_length: int) -> list:
        spans = [(part.start, part.end() - part.start) for part in self.parts]
        wanted = sum(n for _, n in spans)
        if spans and wanted >= WHOLE_FRACTION * container_length:
            first, last = spans[0][0], max(o + n for o, n in spans)
            return [(first, last - first)]
        return merge_spans(spans, MERGE_GAP)

    def feed(self, offset: int, data: bytes):
        end = offset + len(data)
        i = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        view = memoryview(data)
        while i < len(self.parts) and self.parts[i].start < end:
            part = self.parts[i]
            i += 1
            if not part.complete() and offset <= part.expects() < end:
                part.take(self, view, offset)

    def decoded(self, part, k, word: int, raw, last: bool = False):
        """A block of part (block k of a run, its last stored one when last; or a fragment
        block) has all its bytes."""
        users = [s for s in part.users if not s.done]
        if not users:
            return
        live = [s for s in users if not s.broken]
        plain = b""
        if live:
            if word & UNCOMPRESSED_BLOCK:
                plain = bytes(raw)
            else:
                plain = squashmap.decompress_block(self.dctx, bytes(raw), self.bs)
        for state in users:
            if k is None:                                # a fragment: the file's tail
                tail = state.size % self.bs
                skip, upto = state.blocks.fragment_offset, state.size - tail
            else:
                skip, upto = 0, k * self.bs
                tail = min(self.bs, state.size - upto)
            piece = plain[skip:skip + tail]
            if len(piece) != tail:
                state.broken = True           # (named at its end)
                piece = tail
            if k is None and state.stored:
                state.give(upto, piece)       # (its blocks give the holes before it)
            else:
                self.give(state, upto, piece)
            if last:                          # the holes after its last stored block
                self.give(state, _run_end(state, self.bs), None)

    def failed(self, state: _FileState, why: str):
        self.failures.append((state.path, why))

    def finish(self):
        if not all(part.complete() for part in self.parts):
            raise ImageError(f"{show_path(self.reader.image.path)}: the server sent less than "
                             "was asked for")
        for state in self.states:
            if not state.done:
                state.complete()

    def abort(self):
        for state in self.states:
            if state.sink is not None:
                sink, state.sink = state.sink, None
                sink.abort()


def _passes(states: list):
    """states (in the container's order) cut into passes of at most MAX_OPEN files each whose
    pieces come apart (a file of one piece is opened and closed as it comes)."""
    group, apart = [], 0
    for state in states:
        if state.multi and apart >= MAX_OPEN:
            yield group
            group, apart = [], 0
        group.append(state)
        apart += state.multi
    if group:
        yield group


def merge_spans(spans, gap: int) -> list:
    """Sorted (start, length) spans merged where they overlap or lie within gap bytes."""
    merged = []
    for start, length in sorted(spans):
        if merged and start <= merged[-1][0] + merged[-1][1] + gap:
            last = merged[-1]
            last[1] = max(last[1], start + length - last[0])
        else:
            merged.append([start, length])
    return [tuple(m) for m in merged]
