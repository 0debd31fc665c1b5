"""The fetch plan of images read in byte ranges (image/remote.py): the ranges blob read back and
checked against the container (read_ranges), the wanted files' blocks merged into few ranges
(merge_spans, MERGE_GAP, WHOLE_FRACTION), read in passes with few sinks open (MAX_OPEN), decoded
and checked against their digests. The images are real files: a crafted container of zstd and
stored blocks, holes and fragments, with a manifest, an info and a ranges blob appended as
format.append_metadata writes them; the container is read with file_fetch."""

import os
import random
import struct

import pytest
import zstandard
from entries import digest, f, tree

from diffimg import codec
from diffimg.errors import ImageError
from diffimg.image import remote
from diffimg.image.format import Image, append_metadata
from diffimg.image.remote import ContentReader, file_fetch, merge_spans, read_ranges
from diffimg.image.squashmap import UNCOMPRESSED_BLOCK, ranges_blob
from diffimg.tree.manifest import write_manifest
from diffimg.windows.streams import STORE_DIR

BS = 4096
ZSTD = zstandard.ZstdCompressor(level=3)


def content(n: int, seed: int) -> bytes:
    """n bytes, different for each seed: half of them random, so a block compresses to about
    half its size."""
    rng = random.Random(seed)
    return b"".join(rng.randbytes(64) + bytes(64) for _ in range(-(-n // 128)))[:n]


class Container:
    """A container of data blocks, laid out by hand: each file's blocks one after another (zstd,
    or stored with UNCOMPRESSED_BLOCK), holes as zero words, tails in fragment blocks."""

    def __init__(self):
        self.data = bytearray(b"SQSH" + bytes(92))        # where a superblock would be
        self.fragments: list[list[int]] = []
        self.files: list[list] = []
        self.contents: dict[bytes, bytes] = {}

    def gap(self, n: int):
        self.data += b"\xee" * n

    def _block(self, plain: bytes, compress: bool) -> int:
        raw = ZSTD.compress(plain) if compress else plain
        if len(raw) >= len(plain):            # as squashfs does: stored when zstd gains nothing
            raw, compress = plain, False
        self.data += raw
        return len(raw) | (0 if compress else UNCOMPRESSED_BLOCK)

    def fragment(self, tails: list[bytes], compress: bool = True) -> tuple[int, list[int]]:
        """A fragment block holding tails: its index, and each tail's offset in it."""
        offsets, at = [], 0
        for tail in tails:
            offsets.append(at)
            at += len(tail)
        start = len(self.data)
        self.fragments.append([start, self._block(b"".join(tails), compress)])
        return len(self.fragments) - 1, offsets

    def add(self, path: bytes, data: bytes, compress: bool = True, holes=(), fragment=None,
            record=True) -> list:
        """A file's blocks (those numbered in holes are zeros, stored as none); its tail in
        fragment (index, offset) when given. The record is kept unless record is False."""
        whole = len(data) // BS if fragment is not None else -(-len(data) // BS)
        start, words = len(self.data), []
        for k in range(whole):
            block = data[k * BS:(k + 1) * BS]
            if k in holes:
                assert block == bytes(len(block))
                words.append(0)
            else:
                words.append(self._block(block, compress))
        frag, offset = fragment if fragment is not None else (None, 0)
        rec = [path, start, words, frag, offset, len(data)]
        if record:
            self.files.append(rec)
            self.contents[path] = data
        return rec

    def map(self) -> dict:
        return {"block_size": BS, "compressor": "zstd", "fragments": self.fragments,
                "files": self.files}


def make_image(path, container: Container, blob: bytes | None = None) -> Image:
    """A squashfs image file of the container, its manifest holding the container's files."""
    path = os.fsencode(path)
    entries = tree(*[f(p, data) for p, data in container.contents.items()
                     if not p.startswith(STORE_DIR)])
    manifest = path + b".manifest"
    trailer = write_manifest(manifest, entries)
    files = [e for e in entries if e.size is not None]
    info = {"kind": "full", "tree_id": trailer["tree_id"], "entries": len(entries),
            "files": len(files), "bytes": sum(e.size for e in files), "stored_files": len(files),
            "stored_bytes": sum(e.size for e in files), "format": "squashfs", "source": {},
            "created_ns": 0}
    with open(path, "wb") as out:
        out.write(container.data)
        append_metadata(out, {"format": "squashfs", "length": len(container.data)}, manifest, None,
                        info, ranges_blob(container.map()) if blob is None else blob)
    return Image(path)


class Fetches:
    """file_fetch of the image, each call's ranges recorded; cut: bytes left out at the end
    of each range (a server that sends less)."""

    def __init__(self, path, cut: int = 0):
        self.calls: list[list[tuple[int, int]]] = []
        self._fetch, self._cut = file_fetch(path), cut

    def __call__(self, ranges, sink):
        self.calls.append(list(ranges))
        self._fetch([(s, n - self._cut) for s, n in ranges], sink)


class Sinks:
    """open_sink for ContentReader.read: each file's bytes as written, and how many were open at
    once."""

    def __init__(self, writes_holes: bool = False):
        self.written: dict[bytes, bytearray] = {}
        self.events: list[tuple[str, bytes]] = []
        self.open = 0
        self.most_open = 0
        self.writes_holes = writes_holes

    def __call__(self, path, size):
        sinks = self

        class One:
            writes_holes = sinks.writes_holes

            def __init__(self):
                sinks.open += 1
                sinks.most_open = max(sinks.most_open, sinks.open)
                sinks.written[path] = bytearray(size)
                sinks.events.append(("open", path))

            def write(self, offset, data):
                sinks.written[path][offset:offset + len(data)] = data

            def close(self):
                sinks.open -= 1
                sinks.events.append(("close", path))

            def abort(self):
                sinks.open -= 1
                sinks.events.append(("abort", path))
        return One()


def wanted(container: Container, paths=None):
    return [(p, digest(data), len(data)) for p, data in container.contents.items()
            if paths is None or p in paths]


@pytest.fixture
def sample():
    """Files of every shape a container holds, some close together, some far apart."""
    c = Container()
    tails = [content(1000, 9), content(300, 10)]
    frag, offsets = c.fragment(tails)
    c.add(b"a/one-block", content(BS, 1))
    c.gap(1000)                                          # close: merged with the one before
    c.add(b"a/three-blocks", content(3 * BS, 2), compress=False)
    c.gap(40_000)                                        # far: a range of its own
    c.add(b"b/with-tail", content(2 * BS, 3) + tails[0], fragment=(frag, offsets[0]))
    c.add(b"b/tail-only", tails[1], fragment=(frag, offsets[1]))
    holed = content(BS, 4) + bytes(2 * BS) + content(500, 5)
    c.add(b"c/holes", holed, holes=(1, 2))
    c.add(b"c/all-holes", bytes(2 * BS), holes=(0, 1))
    c.add(b"c/empty", b"")
    twin = content(2 * BS + 7, 6)
    first = c.add(b"d/twin1", twin)
    c.files.append([b"d/twin2", *first[1:]])              # the very same blocks
    c.contents[b"d/twin2"] = twin
    c.add(STORE_DIR + b"/" + b"0123456789abcdef" * 2, content(100, 7))
    c.gap(200_000)                                      # most of the container is not wanted
    return c


def test_read_ranges_gives_back_each_files_blocks(tmp_path, sample):
    image = make_image(tmp_path / "a.img", sample)
    block_size, fragments, files = read_ranges(image)
    assert (block_size, fragments, {p: [b.start, list(b.words), b.fragment, b.fragment_offset, b.size]
                                    for p, b in files.items()}) == (
        BS, sample.fragments, {rec[0]: rec[1:] for rec in sample.files})


def test_every_wanted_file_comes_whole_and_checked_from_few_ranges(tmp_path, sample):
    image = make_image(tmp_path / "a.img", sample)
    fetches, sinks = Fetches(image.path), Sinks()
    ContentReader(image, fetches).read(wanted(sample), sinks)
    by_path = {rec[0]: rec for rec in sample.files}

    def span(path):
        rec = by_path[path]
        return rec[1], rec[1] + sum(w & (UNCOMPRESSED_BLOCK - 1) for w in rec[2])
    frag_start = sample.fragments[0][0]
    # the fragment and the first two files lie within MERGE_GAP of each other: one range
    first = (frag_start, span(b"a/three-blocks")[1] - frag_start)
    second = (span(b"b/with-tail")[0], span(STORE_DIR + b"/" + b"0123456789abcdef" * 2)[1]
              - span(b"b/with-tail")[0])
    assert ({p: bytes(data) for p, data in sinks.written.items()}, fetches.calls,
            sinks.open, {e for e, _ in sinks.events}) == (
        sample.contents, [[first, second]], 0, {"open", "close"})


def test_holes_are_written_only_to_a_sink_that_writes_holes(tmp_path, sample):
    image = make_image(tmp_path / "a.img", sample)
    got = {}
    for writes_holes in (False, True):
        sinks = Sinks(writes_holes)
        ContentReader(image, file_fetch(image.path)).read(wanted(sample, {b"c/holes", b"c/all-holes"}),
                                                          sinks)
        got[writes_holes] = {p: bytes(data) for p, data in sinks.written.items()}
    # the sink's buffer starts as zeros: mark what was not written to tell it from written zeros
    marked = {}
    for writes_holes in (False, True):
        sinks = Sinks(writes_holes)
        original = sinks.__call__

        def opened(path, size, original=original, sinks=sinks):
            one = original(path, size)
            sinks.written[path][:] = b"\xaa" * size
            return one
        ContentReader(image, file_fetch(image.path)).read(wanted(sample, {b"c/holes"}), opened)
        marked[writes_holes] = bytes(sinks.written[b"c/holes"])
    holed = sample.contents[b"c/holes"]
    assert (got, marked) == (
        {False: {b"c/holes": holed, b"c/all-holes": bytes(2 * BS)},
         True: {b"c/holes": holed, b"c/all-holes": bytes(2 * BS)}},
        {False: holed[:BS] + b"\xaa" * (2 * BS) + holed[3 * BS:], True: holed})


def test_wanting_most_of_the_container_fetches_one_range(tmp_path):
    c = Container()
    for n in range(6):          # 60% of the container, with gaps just past MERGE_GAP
        if n:
            c.gap(remote.MERGE_GAP + 100)
        c.add(b"f%d" % n, content(5 * BS, n), compress=False)
    image = make_image(tmp_path / "a.img", c)
    fetches, sinks = Fetches(image.path), Sinks()
    ContentReader(image, fetches).read(wanted(c), sinks)
    few = Fetches(image.path)
    ContentReader(image, few).read(wanted(c, {b"f1", b"f4"}), Sinks())
    starts = {rec[0]: rec[1] for rec in c.files}
    assert ({p: bytes(d) for p, d in sinks.written.items()}, fetches.calls, few.calls) == (
        c.contents, [[(96, len(c.data) - 96)]], [[(starts[b"f1"], 5 * BS), (starts[b"f4"], 5 * BS)]])


def test_many_files_are_read_in_passes_with_few_sinks_open(tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "MAX_OPEN", 2)
    c = Container()
    tails = [content(100, n) for n in range(5)]
    for n in range(5):          # each file's pieces come apart: its blocks, then its tail
        c.add(b"multi%d" % n, content(2 * BS, n) + tails[n], fragment=(0, 100 * n))
        c.add(b"single%d" % n, content(BS, 10 + n))
    assert c.fragment(tails) == (0, [0, 100, 200, 300, 400])      # after the files' blocks
    c.gap(1 << 20)
    image = make_image(tmp_path / "a.img", c)
    fetches, sinks = Fetches(image.path), Sinks()
    ContentReader(image, fetches).read(wanted(c), sinks)
    # passes: multi0 single0 multi1 single1 | multi2 ... | multi4 single4; open at once: two
    # files waiting for their tails, and a file of one piece as it comes
    assert ({p: bytes(d) for p, d in sinks.written.items()}, len(fetches.calls), sinks.most_open) == (
        c.contents, 3, 3)


def test_files_that_are_not_what_their_records_say_are_named(tmp_path):
    c = Container()
    c.add(b"good", content(BS, 1))
    c.add(b"other-content", content(BS, 2))
    c.add(b"undecodable", content(2 * BS, 3))
    c.add(b"shorter", content(BS, 4))
    c.gap(1 << 20)
    raw = c.files[2]
    c.data[raw[1] + 5:raw[1] + 9] = b"JUNK"                  # its first block does not decode
    image = make_image(tmp_path / "a.img", c)
    asked = [(b"good", digest(content(BS, 1)), BS), (b"other-content", digest(b"else"), BS),
             (b"undecodable", digest(content(2 * BS, 3)), 2 * BS), (b"shorter", digest(b""), 3),
             (b"missing", digest(b"x"), 1)]
    problems, sinks = [], Sinks()
    ContentReader(image, file_fetch(image.path)).read(asked, sinks, problems)
    with pytest.raises(ImageError) as caught:
        ContentReader(image, file_fetch(image.path)).read(asked[:2], Sinks())
    checked = ContentReader(image, file_fetch(image.path)).check(asked[:3])
    assert (problems, sorted(set(sinks.events)), caught.value.message, checked) == (
        ["shorter: its container holds 4,096 bytes, its record says 3",
         "missing: missing from the container",
         "other-content: content does not match its digest",
         "undecodable: a block of it does not decode"],
        [("abort", b"other-content"), ("abort", b"undecodable"), ("close", b"good"),
         ("open", b"good"), ("open", b"other-content"), ("open", b"undecodable")],
        f"{os.fsdecode(image.path)}: other-content: content does not match its digest (a damaged "
        "image?)",
        ["other-content: content does not match its digest",
         "undecodable: a block of it does not decode"])


def test_a_fetch_that_brings_less_than_asked_aborts_every_open_sink(tmp_path, sample):
    image = make_image(tmp_path / "a.img", sample)
    sinks = Sinks()
    with pytest.raises(ImageError) as caught:
        ContentReader(image, Fetches(image.path, cut=100)).read(wanted(sample), sinks)
    assert (caught.value.message, sinks.open) == (
        f"{os.fsdecode(image.path)}: the server sent less than was asked for", 0)


def test_spans_merge_where_they_overlap_or_lie_within_the_gap():
    spans = [(500, 10), (0, 100), (100, 50), (160, 10), (171, 1), (50, 10), (1000, 0), (1000, 5)]
    assert (merge_spans(spans, 0), merge_spans(spans, 10), merge_spans(spans, 400),
            merge_spans([], 10)) == (
        [(0, 150), (160, 10), (171, 1), (500, 10), (1000, 5)],
        [(0, 172), (500, 10), (1000, 5)],
        [(0, 510), (1000, 5)], [])


def _blob(items) -> bytes:
    return codec.pack_compressed(items)


def _header(**kw):
    return {"block_size": BS, "compressor": "zstd", "fragments": 0, **kw}


def _rec(path=b"f", start=96, words=(BS | UNCOMPRESSED_BLOCK,), fragment=None, offset=0, size=BS):
    return [path, start, struct.pack(f"<{len(words)}I", *words), fragment, offset, size]


STORED = BS | UNCOMPRESSED_BLOCK
LENGTH = 96 + 4 * BS          # the hostile images' container: a superblock and four blocks


@pytest.mark.parametrize("items, why", [
    ([["not", "a", "map"]], "not a map of zstd blocks"),
    ([_header(compressor="xz")], "not a map of zstd blocks"),
    ([_header(block_size=2048)], "its header"),
    ([_header(block_size=6144)], "its header"),
    ([_header(block_size=2 << 20)], "its header"),
    ([_header(block_size="4096")], "its header"),
    ([_header(fragments=-1)], "its header"),
    ([_header(fragments=2), [96, STORED]], "fewer fragments than its header says"),
    ([_header(fragments=1), [96, 0]], "a fragment"),
    ([_header(fragments=1), [96, BS + 1]], "a fragment"),
    ([_header(fragments=1), [LENGTH - 10, 100]], "a fragment"),
    ([_header(fragments=1), [-1, 100]], "a fragment"),
    ([_header(fragments=1), [96, 1 << 32]], "a fragment"),
    ([_header(fragments=1), [96, 10, 0]], "a fragment"),
    ([_header(), [b"f", 96]], "a file's path"),
    ([_header(), _rec(path="f")], "a file's path"),
    ([_header(), _rec(path=b"../escape")], "a file's path"),
    ([_header(), _rec(path=b"/abs")], "a file's path"),
    ([_header(), _rec(path=b"a//b")], "a file's path"),
    ([_header(), _rec(path=b".diffimg/state.json")], "a file's path"),
    ([_header(), _rec(path=STORE_DIR + b"/" + b"0" * 31)], "a file's path"),
    ([_header(), _rec(path=STORE_DIR + b"/" + b"G" * 32)], "a file's path"),
    ([_header(), _rec(), _rec(start=96 + BS)], "a file's path"),                # twice
    ([_header(), _rec(start=-1)], "f"),
    ([_header(), _rec(size=-1)], "f"),
    ([_header(), [b"f", 96, b"\x00\x10\x00", None, 0, BS]], "f"),
    ([_header(), _rec(words=(STORED, STORED))], "f's blocks"),
    ([_header(), _rec(words=(BS + 1,))], "f's blocks"),
    ([_header(), _rec(size=BS + 10)], "f's blocks"),
    ([_header(fragments=1), [96 + 3 * BS, 100], _rec(fragment=1, size=BS + 10)], "f's fragment"),
    ([_header(fragments=1), [96 + 3 * BS, 100], _rec(fragment=0, offset=BS - 9, size=BS + 10)],
     "f's fragment"),
    ([_header(fragments=1), [96 + 3 * BS, 100], _rec(fragment=0, size=BS)], "f's fragment"),
    ([_header(), _rec(start=96 + 3 * BS + 1)], "f lies past the container"),
    ([_header(), _rec(words=(STORED,) * 5, size=5 * BS)], "f lies past the container"),
    ([_header(), _rec(), _rec(path=b"g", words=(100 | UNCOMPRESSED_BLOCK,), size=100)],
     "g's blocks overlap another file's"),
    ([_header(), _rec(), _rec(path=b"g", start=96 + 100)], "blocks that overlap"),
    ([_header(), _rec(words=(STORED, STORED), size=2 * BS), _rec(path=b"g", start=96 + BS)],
     "blocks that overlap"),
    ([_header(), _rec(), _rec(path=b"g", words=(BS | UNCOMPRESSED_BLOCK,)), ],
     None),                                            # the very same blocks: equal content
    ([_header(fragments=1), [96 + 100, 100], _rec()], "blocks that overlap"),
    ([_header(fragments=2), [96, 100], [150, 100]], "blocks that overlap"),
])
def test_a_hostile_ranges_blob_is_a_malformed_image(tmp_path, items, why):
    c = Container()
    c.data += bytes(4 * BS)
    image = make_image(tmp_path / "a.img", c, _blob(items))
    if why is None:
        assert sorted(read_ranges(image)[2]) == [b"f", b"g"]
        return
    with pytest.raises(ImageError) as caught:
        read_ranges(image)
    assert caught.value.message == f"{os.fsdecode(image.path)}: its ranges blob is malformed ({why})"


@pytest.mark.parametrize("blob, why", [
    (b"not zstd at all, just bytes", "not a zstd frame"),
    (ZSTD.compress(_blob([_header()])), "zstd frame without its content checksum"),
    (codec.compress(b"\x91\xc0"), "not a map of zstd blocks"),
    (_blob([_header()]), None),
    (codec.compress(codec.pack([_header()]) + codec.pack(1)), "data after the array"),
    (codec.compress(b"\xdd\xff\xff\xff\xff"), "items, more than"),
    (codec.compress(b"\x92\x81\xa1a\x01"), "not a map of zstd blocks"),
])
def test_a_ranges_blob_that_is_not_one_array_is_malformed(tmp_path, blob, why):
    c = Container()
    image = make_image(tmp_path / "a.img", c, blob)
    if why is None:
        assert read_ranges(image) == (BS, [], {})
        return
    with pytest.raises(ImageError) as caught:
        read_ranges(image)
    message = caught.value.message
    assert (message.startswith(f"{os.fsdecode(image.path)}: its ranges blob is malformed ("),
            why in message) == (True, True), message
