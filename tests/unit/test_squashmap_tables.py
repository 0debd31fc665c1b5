"""Where each stored file's blocks lie in a squashfs container, read from its tables
(image/squashmap.py): on containers crafted here byte by byte from the squashfs 4.0 layout (a
superblock, data and fragment blocks, inode and directory tables in 8 KiB metadata blocks, the
fragment table), valid ones and hostile ones (references out of bounds, loops, counts beyond the
size, bad names, short or oversized blocks); and one container made by mksquashfs, when it is at
hand, to hold the crafted layout to the real one."""

import mmap
import os
import shutil
import struct
import subprocess

import pytest
import zstandard

from diffimg import codec
from diffimg.image import squashmap
from diffimg.image.squashmap import (
    DIR,
    FILE,
    LFILE,
    NO_FRAGMENT,
    SIZE_MASK,
    SUPERBLOCK,
    SYMLINK,
    UNCOMPRESSED_BLOCK,
    SquashfsError,
    decompress_block,
    ranges_blob,
    read_map,
    tables_span,
)

BS = 4096
META = squashmap.METADATA_BLOCK
ZSTD = zstandard.ZstdCompressor(level=3)
FIELDS = ("magic", "inodes", "mtime", "block_size", "fragment_count", "compressor", "block_log",
          "flags", "ids", "major", "minor", "root_ref", "bytes_used", "id_table", "xattr_table",
          "inode_table", "dir_table", "fragment_table", "export_table")


def payload(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed * 13) & 0xFF for i in range(n))


class Node:
    """A folder (children: name -> Node), a file (data; its tail in a fragment when frag; the
    extended inode when large), or a symlink. For hostile tables: extra listing entries
    (name, entry type, Node), a listing size off by size_delta, a file's size field set to
    size (its words as the real size has them), entries per listing header up to group."""

    def __init__(self, kind, data=b"", children=None, frag=False, large=False, target=b"",
                 extra=(), size_delta=0, size=None, group=256):
        self.kind, self.data, self.children, self.frag, self.large = kind, data, children, frag, large
        self.target, self.extra, self.size_delta, self.size, self.group = (
            target, list(extra), size_delta, size, group)


def folder(children=None, **kw):
    return Node(DIR, children=children or {}, **kw)


def file(data, **kw):
    return Node(FILE, data, **kw)


def symlink(target):
    return Node(SYMLINK, target=target)


def _meta_blocks(stream: bytes, compress: bool) -> tuple[bytes, list[int]]:
    """stream cut into metadata blocks: their bytes, and where each block starts."""
    out, starts = bytearray(), []
    for i in range(0, len(stream), META):
        chunk = stream[i:i + META]
        starts.append(len(out))
        raw = ZSTD.compress(chunk) if compress else chunk
        out += struct.pack("<H", len(raw) if compress else 0x8000 | len(raw)) + raw
    return bytes(out), starts


def _ref(pos: int) -> int:
    """The reference of a position in the inode stream (its table is stored uncompressed)."""
    return ((pos // META) * (META + 2)) << 16 | pos % META


class Built:
    def __init__(self, data: bytearray, expected: dict, layout: dict):
        self.data, self.expected, self.layout = data, expected, layout

    def superblock(self, **fields):
        """The container with superblock fields changed."""
        values = dict(zip(FIELDS, SUPERBLOCK.unpack_from(self.data, 0)))
        values.update(fields)
        return bytes(SUPERBLOCK.pack(*(values[name] for name in FIELDS))) + bytes(self.data[SUPERBLOCK.size:])

    def at(self, offset: int, raw: bytes):
        """The container with raw written at offset."""
        data = bytearray(self.data)
        data[offset:offset + len(raw)] = raw
        return bytes(data)


def build(root: Node, compress_dirs: bool = True) -> Built:
    """A squashfs 4.0 container of the tree at root, and the map read_map must give of it."""
    nodes, parents, paths, pending = [], {}, {}, [(root, b"", None)]
    while pending:                                    # every node, numbered (no recursion)
        node, path, parent = pending.pop()
        paths[id(node)], parents[id(node)] = path, parent
        nodes.append(node)
        for name, child in sorted((node.children or {}).items(), reverse=True):
            pending.append((child, path + b"/" + name if path else name, node))
    number = {id(n): i + 1 for i, n in enumerate(nodes)}
    data = bytearray(SUPERBLOCK.size)
    blocks, tails = {}, []
    for node in nodes:                                # data blocks, then the fragment block
        if node.kind != FILE:
            continue
        whole = len(node.data) // BS if node.frag else -(-len(node.data) // BS)
        start, words = len(data), []
        for k in range(whole):
            block = node.data[k * BS:(k + 1) * BS]
            data += block
            words.append(len(block) | UNCOMPRESSED_BLOCK)
        offset = sum(len(t) for t in tails)
        if node.frag:
            tails.append(node.data[whole * BS:])
        blocks[id(node)] = (start, words, 0 if node.frag else None, offset if node.frag else 0)
    fragments = []
    if tails:
        raw = ZSTD.compress(b"".join(tails))
        fragments.append([len(data), len(raw)])
        data += raw

    def inode_size(node):
        if node.kind == DIR:
            return 32
        if node.kind == SYMLINK:
            return 24 + len(node.target)
        return (56 if node.large else 32) + 4 * len(blocks[id(node)][1])
    pos, at = {}, 0
    for node in nodes:
        pos[id(node)] = at
        at += inode_size(node)
    listings, dir_stream = {}, bytearray()
    for node in nodes:                                # the folders' listings
        if node.kind != DIR:
            continue
        entries = [(name, DIR if c.kind == DIR else FILE if c.kind == FILE else SYMLINK, c)
                   for name, c in sorted(node.children.items())] + node.extra
        listing = bytearray()
        i = 0
        while i < len(entries):
            block = _ref(pos[id(entries[i][2])]) >> 16
            group = [e for e in entries[i:i + node.group]]
            group = group[:next((j for j, e in enumerate(group) if _ref(pos[id(e[2])]) >> 16 != block),
                                len(group))]
            base = number[id(group[0][2])]
            listing += struct.pack("<III", len(group) - 1, block, base)
            for name, kind, child in group:
                listing += struct.pack("<HhHH", _ref(pos[id(child)]) & 0xFFFF,
                                       number[id(child)] - base, kind, len(name) - 1) + name
            i += len(group)
        listings[id(node)] = (len(dir_stream), len(listing) + 3 + node.size_delta)
        dir_stream += listing
    dir_table, dir_starts = _meta_blocks(bytes(dir_stream), compress_dirs)
    inode_stream = bytearray()
    for node in nodes:
        inode_stream += struct.pack("<HHHHII", node.kind if not node.large else LFILE, 0o755, 0, 0, 0,
                                    number[id(node)])
        if node.kind == DIR:
            start, size = listings[id(node)]
            parent = parents[id(node)]
            inode_stream += struct.pack("<IIHHI", dir_starts[start // META], 2, size, start % META,
                                        number[id(parent)] if parent else len(nodes) + 1)
        elif node.kind == SYMLINK:
            inode_stream += struct.pack("<II", 1, len(node.target)) + node.target
        else:
            start, words, frag, offset = blocks[id(node)]
            size = len(node.data) if node.size is None else node.size
            frag_field = NO_FRAGMENT if frag is None else frag
            if node.large:
                inode_stream += struct.pack("<QQQIIII", start, size, 0, 1, frag_field, offset, 0xFFFFFFFF)
            else:
                inode_stream += struct.pack("<IIII", start, frag_field, offset, size)
            inode_stream += struct.pack(f"<{len(words)}I", *words)
    inode_table, _ = _meta_blocks(bytes(inode_stream), False)
    layout = {"inode_table": len(data)}
    data += inode_table
    layout["dir_table"] = len(data)
    data += dir_table
    frag_entries, _ = _meta_blocks(b"".join(struct.pack("<QII", s, w, 0) for s, w in fragments), False)
    frag_blocks = len(data)
    data += frag_entries
    layout["fragment_table"] = len(data)
    data += struct.pack("<Q", frag_blocks) if fragments else b""
    layout["id_table"] = len(data)
    data += struct.pack("<I", 0)
    SUPERBLOCK.pack_into(data, 0, 0x73717368, len(nodes), 0, BS, len(fragments), squashmap.ZSTD, 12, 0,
                         1, 4, 0, _ref(pos[id(root)]), len(data), layout["id_table"], 0xFFFFFFFFFFFFFFFF,
                         layout["inode_table"], layout["dir_table"], layout["fragment_table"],
                         0xFFFFFFFFFFFFFFFF)
    files = []
    walk = [iter(sorted(root.children.items()))]     # the order read_map walks: depth first
    while walk:
        name_child = next(walk[-1], None)
        if name_child is None:
            walk.pop()
        elif name_child[1].kind == DIR:
            walk.append(iter(sorted(name_child[1].children.items())))
        elif name_child[1].kind == FILE:
            child = name_child[1]
            start, words, frag, offset = blocks[id(child)]
            files.append([paths[id(child)], start, words, frag, offset, len(child.data)])
    expected = {"block_size": BS, "compressor": "zstd", "fragments": fragments, "files": files}
    return Built(data, expected, layout)


def sample_tree() -> Node:
    many = {b"link%03d" % i: symlink(b"target-%d" % i) for i in range(300)}
    return folder({
        b"empty": file(b""),
        b"small": file(payload(100, 1), frag=True),
        b"one-block": file(payload(BS, 2)),
        b"blocks-and-tail": file(payload(2 * BS + 500, 3), frag=True),
        b"blocks-own-tail": file(payload(2 * BS + 10, 4)),
        b"large": file(payload(BS + 1, 5), large=True, frag=True),
        b"sub": folder({b"deeper": folder({b"f": file(payload(10, 6))}), b"g": file(payload(20, 7)),
                        b"links": folder(many)}),
        b"z": folder(),
    })


def _read(data) -> dict:
    return read_map(data, len(data))


def test_a_crafted_container_is_mapped_file_by_file():
    built = build(sample_tree())
    assert ([rec[0] for rec in built.expected["files"]], _read(built.data)) == (
        [b"blocks-and-tail", b"blocks-own-tail", b"empty", b"large", b"one-block", b"small",
         b"sub/deeper/f", b"sub/g"], built.expected)


def test_the_map_locates_each_files_bytes():
    """Each file's bytes, read back from the container where the map says they lie."""
    built = build(sample_tree())
    found = _read(built.data)
    dctx = zstandard.ZstdDecompressor()
    frags = [decompress_block(dctx, bytes(built.data[s:s + (w & SIZE_MASK)]), BS)
             for s, w in found["fragments"]]
    contents = {}
    for path, start, words, frag, offset, size in found["files"]:
        out, at = bytearray(), start
        for w in words:
            out += built.data[at:at + (w & SIZE_MASK)]
            at += w & SIZE_MASK
        if frag is not None:
            out += frags[frag][offset:offset + size - len(out)]
        contents[path] = bytes(out)
    assert contents == {b"empty": b"", b"small": payload(100, 1), b"one-block": payload(BS, 2),
                        b"blocks-and-tail": payload(2 * BS + 500, 3),
                        b"blocks-own-tail": payload(2 * BS + 10, 4), b"large": payload(BS + 1, 5),
                        b"sub/deeper/f": payload(10, 6), b"sub/g": payload(20, 7)}


def test_the_tables_span_from_the_inode_table_to_the_bytes_used():
    built = build(sample_tree())
    data = built.data
    assert tables_span(bytes(data[:SUPERBLOCK.size]), len(data)) == (built.layout["inode_table"],
                                                                    len(data))
    refused = {}
    for name, superblock, length in [
            ("short", bytes(data[:50]), len(data)),
            ("container shorter than a superblock", bytes(data[:SUPERBLOCK.size]), 50),
            ("magic", build_sb(data, magic=0x12345678), len(data)),
            ("major", build_sb(data, major=3), len(data)),
            ("bytes used", bytes(data[:SUPERBLOCK.size]), len(data) - 1),
            ("inode table in the superblock", build_sb(data, inode_table=50), len(data)),
            ("dir table first", build_sb(data, dir_table=built.layout["inode_table"]), len(data)),
            ("dir table at the end", build_sb(data, dir_table=len(data)), len(data))]:
        with pytest.raises(SquashfsError) as caught:
            tables_span(superblock, length)
        refused[name] = str(caught.value)
    assert refused == {"short": "no superblock", "container shorter than a superblock": "no superblock",
                       "magic": "not a squashfs 4.0 superblock", "major": "not a squashfs 4.0 superblock",
                       "bytes used": "not a squashfs 4.0 superblock",
                       "inode table in the superblock": "tables out of order",
                       "dir table first": "tables out of order",
                       "dir table at the end": "tables out of order"}


def build_sb(data, **fields) -> bytes:
    return Built(data, {}, {}).superblock(**fields)[:SUPERBLOCK.size]


def test_the_ranges_blob_is_one_array_of_header_fragments_and_files():
    built = build(sample_tree())
    found = _read(built.data)
    items = list(codec.iter_compressed_array(ranges_blob(found), 1000))
    assert items == [{"block_size": BS, "compressor": "zstd", "fragments": 1}, *found["fragments"],
                     *[[p, s, struct.pack(f"<{len(w)}I", *w), fr, o, n]
                       for p, s, w, fr, o, n in found["files"]]]


def test_blocks_decode_to_at_most_the_cap():
    dctx = zstandard.ZstdDecompressor()
    plain = payload(BS, 9)
    streamed = zstandard.ZstdCompressor().compressobj()
    no_size = streamed.compress(plain) + streamed.flush()          # a frame without its size
    assert [decompress_block(dctx, raw, cap) for raw, cap in [
        (ZSTD.compress(plain), BS), (ZSTD.compress(plain), BS - 1), (no_size, BS), (no_size, 100),
        (b"junk" * 10, BS), (ZSTD.compress(plain)[:-3], BS), (b"", BS)]] == [
        plain, b"", plain, b"", b"", b"", b""]


def _cases():
    """(name, container bytes, message) of hostile containers."""
    built = build(sample_tree())
    L = built.layout
    small = build(folder({b"f": file(payload(10, 1))}))
    sl = small.layout
    cases = [
        ("too short", bytes(built.data[:95]), "no superblock"),
        ("magic", built.superblock(magic=0), "not a squashfs 4.0 superblock"),
        ("major", built.superblock(major=3), "not a squashfs 4.0 superblock"),
        ("block size not its log", built.superblock(block_log=13), "not a squashfs 4.0 superblock"),
        ("block size too small", built.superblock(block_size=2048, block_log=11),
         "not a squashfs 4.0 superblock"),
        ("block size too large", built.superblock(block_size=1 << 21, block_log=21),
         "not a squashfs 4.0 superblock"),
        ("bytes used past the end", built.superblock(bytes_used=len(built.data) + 1),
         "not a squashfs 4.0 superblock"),
        ("gzip", built.superblock(compressor=1), "compressed with method 1, not zstd"),
        ("tables out of order", built.superblock(dir_table=L["inode_table"]), "tables out of order"),
        ("dir table past the bytes used", built.superblock(dir_table=len(built.data)),
         "tables out of order"),
        ("root past the inode table", built.superblock(root_ref=(L["dir_table"] - L["inode_table"]) << 16),
         "a metadata block past the end of the container"),
        ("root inside the superblock's reach", built.superblock(root_ref=0xFFFF),
         "a metadata reference past its block"),
        ("root is a file", small.superblock(root_ref=32), "a folder entry that is not a folder"),
        ("block longer than its table", small.at(sl["inode_table"], struct.pack("<H", 0x8000 | 8000)),
         "a metadata block cut short"),
        ("block of no bytes", small.at(sl["inode_table"], struct.pack("<H", 0x8000)),
         "a metadata block cut short"),
        ("fragments past the end", built.superblock(fragment_count=1 << 31),
         "the fragment table past the end"),
        ("fragment block past the end", built.at(L["fragment_table"], struct.pack("<Q", len(built.data))),
         "a metadata block past the end of the container"),
    ]
    root = folder({b"a": folder()})
    root.children[b"a"].extra.append((b"up", DIR, root))
    cases.append(("a folder loop", build(root).data, "a folder loop"))
    same = folder({b"a": folder({b"f": file(b"x")})})
    same.extra.append((b"b", DIR, same.children[b"a"]))
    cases.append(("a folder listed twice", build(same).data, "a folder loop"))
    odd = folder({b"d": folder()})
    odd.extra.append((b"f", FILE, odd.children[b"d"]))
    cases.append(("a file entry that is a folder", build(odd).data, "a file entry that is not a file"))
    cases.append(("a name of 257 bytes", build(folder({b"n" * 257: file(b"x")})).data,
                  "a name of more than 256 bytes in a folder listing"))
    for name in (b"..", b".", b"a/b", b"a\0b"):
        cases.append((f"name {name!r}", build(folder({name: file(b"x")})).data,
                      "a bad name in a folder listing"))
    cases.append(("a listing header of 300", build(folder(
        {b"s%03d" % i: symlink(b"t") for i in range(300)}, group=300)).data,
        "a folder listing header of more than 256 entries"))
    cases.append(("a listing one byte short", build(folder({b"f": file(b"x"), b"g": file(b"y")},
                                                          size_delta=-1)).data,
                  "a folder listing of the wrong size"))
    cases.append(("a file of impossible size", build(folder(
        {b"f": file(b"x", large=True, size=1 << 60)})).data, "a file of impossible size"))
    cases.append(("more words than the table holds", build(folder(
        {b"f": file(b"x", size=1 << 31)})).data, "a metadata block past the end of the container"))
    raw = ZSTD.compress(bytes(META + 1))
    inode_blocks = struct.pack("<H", len(raw)) + raw
    cases.append(("a metadata block of more than 8 KiB", raw_container(inode_blocks),
                  "a metadata block does not decompress to at most 8 KiB"))
    cases.append(("a metadata block that does not decompress", raw_container(struct.pack("<H", 20)
                                                                              + b"\x28\xb5\x2f\xfd" * 5),
                  "a metadata block does not decompress to at most 8 KiB"))
    return cases


def raw_container(inode_blocks: bytes) -> bytes:
    """A superblock, the inode table given, a directory table of one empty block's worth."""
    inode_table = SUPERBLOCK.size
    dir_table = inode_table + len(inode_blocks)
    data = bytearray(SUPERBLOCK.size) + inode_blocks + struct.pack("<H", 0x8001) + b"\0"
    SUPERBLOCK.pack_into(data, 0, 0x73717368, 1, 0, BS, 0, squashmap.ZSTD, 12, 0, 1, 4, 0, 0, len(data),
                         len(data), 0xFFFFFFFFFFFFFFFF, inode_table, dir_table, 0xFFFFFFFFFFFFFFFF,
                         0xFFFFFFFFFFFFFFFF)
    return bytes(data)


def test_hostile_tables_are_refused_each_with_its_reason():
    refused, got = {}, {}
    for name, data, message in _cases():
        refused[name] = message
        try:
            read_map(data, len(data))
            got[name] = "read"
        except SquashfsError as exc:
            got[name] = str(exc)
    assert got == refused


def test_listing_headers_of_256_entries_and_symlinks_are_walked_past():
    tree = folder({b"s%03d" % i: symlink(b"t%d" % i) for i in range(600)})
    tree.children[b"zz"] = file(payload(50, 2))
    built = build(tree)
    assert (_read(built.data), built.expected["files"][0][0]) == (built.expected, b"zz")


def test_an_uncompressed_directory_table_reads_the_same():
    assert _read(build(sample_tree(), compress_dirs=False).data) == build(sample_tree()).expected


def test_no_fragment_table_means_no_fragments():
    built = build(folder({b"f": file(payload(BS, 1))}))
    data = built.superblock(fragment_count=3, fragment_table=0xFFFFFFFFFFFFFFFF)
    assert read_map(data, len(data)) == {**built.expected, "fragments": []}


def test_a_deep_but_sound_tree_is_mapped():
    root = node = folder()
    for _ in range(1100):
        node.children[b"d"] = folder()
        node = node.children[b"d"]
    node.children[b"f"] = file(b"deep")
    built = build(root)
    assert _read(built.data)["files"] == built.expected["files"]


def test_a_name_of_256_bytes_is_one_squashfs_holds():
    built = build(folder({b"n" * 256: file(b"x")}))
    assert _read(built.data) == built.expected


def test_a_listing_shared_by_two_folders_is_refused():
    """Two folder inodes listing the same entries would make every one of those entries a
    file of each folder: thousands of folders sharing one listing of thousands of files took
    gigabytes from a container of a few hundred KB."""
    built = build(folder({b"a": folder({b"f": file(b"x")}), b"b": folder({b"g": file(b"y")})}))
    assert _read(built.data) == built.expected
    data = bytearray(built.data)
    fields = dict(zip(FIELDS, SUPERBLOCK.unpack_from(data, 0)))
    dctx = zstandard.ZstdDecompressor()
    inodes = squashmap._Table(bytes(data), fields["inode_table"], fields["dir_table"], dctx)
    dirs = squashmap._Table(bytes(data), fields["dir_table"], fields["bytes_used"], dctx)
    _, body = squashmap._inode(inodes, fields["root_ref"], BS)
    refs = {name: ref for name, _, ref in squashmap._listing(dirs, *body)}

    def at(ref):                        # (the builder stores the inode table uncompressed)
        return fields["inode_table"] + (ref >> 16) + 2 + (ref & 0xFFFF)
    a, b = at(refs[b"a"]), at(refs[b"b"])
    data[b + 16:b + 32] = data[a + 16:a + 32]           # b's listing: a's
    with pytest.raises(SquashfsError, match="a folder listing shared by two folders"):
        _read(bytes(data))


def test_a_file_the_ranges_blob_does_not_list_is_refused_at_once():
    """verify passes the blob's paths: tables listing more (or other) files are refused as
    soon as one is found, before they cost more than the blob did."""
    built = build(sample_tree())
    paths = {f[0] for f in built.expected["files"]}
    data = bytes(built.data)
    assert read_map(data, len(data), paths) == built.expected
    for fewer in (paths - {min(paths)}, set()):
        with pytest.raises(SquashfsError, match="a file its ranges blob does not list"):
            read_map(data, len(data), fewer)


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs mksquashfs")
def test_a_container_made_by_mksquashfs_is_mapped_where_its_files_lie(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    want = {b"a": payload(3 * BS + 17, 1), b"b": payload(10, 2), b"sub/c": payload(BS, 3),
            b"sub/deeper/d": bytes(2 * BS) + payload(100, 4), b"sub/e": b""}
    for path, data in want.items():
        (tree / os.fsdecode(path)).write_bytes(data)
    out = tmp_path / "c.sqfs"
    subprocess.run(["mksquashfs", tree, out, "-comp", "zstd", "-b", str(BS), "-noappend", "-quiet",
                    "-no-progress", "-no-xattrs", "-all-root"], check=True, capture_output=True)
    with open(out, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as data:
        found = read_map(data, len(data))
        dctx = zstandard.ZstdDecompressor()

        def block(start, word):
            raw = bytes(data[start:start + (word & SIZE_MASK)])
            return raw if word & UNCOMPRESSED_BLOCK else decompress_block(dctx, raw, BS)
        frags = [block(s, w) for s, w in found["fragments"]]
        contents = {}
        for path, start, words, frag, offset, size in found["files"]:
            out_bytes, at = bytearray(), start
            for w in words:
                out_bytes += block(at, w) if w else bytes(BS)    # 0: a sparse block
                at += w & SIZE_MASK
            if frag is not None:
                out_bytes += frags[frag][offset:offset + size - len(out_bytes)]
            contents[path] = bytes(out_bytes[:size])
        length = len(data)
        span = tables_span(bytes(data[:SUPERBLOCK.size]), length)
    assert (contents, found["block_size"], span[1] <= length) == (want, BS, True)


def overlapping_listings(folders: int) -> bytes:
    """A container whose root lists folders each listing a suffix of one listing of symlinks,
    from its own header on: every entry read once per folder reaching it."""
    ldir = struct.Struct("<HHHHIIIIIIHHI")        # header, then nlink, size, start, parent...
    headers, big = [], bytearray()
    root = bytearray()
    for i in range(folders):                      # the root's entries: folder i, inode i + 1
        name = b"d%d" % i
        root += struct.pack("<III", 0, 0, 2 + i) + struct.pack(
            "<HhHH", ldir.size * (i + 1), 0, DIR, len(name) - 1) + name
    for _ in range(folders):
        headers.append(len(root) + len(big))
        big += struct.pack("<III", 3, 0, 1)
        for _ in range(4):
            big += struct.pack("<HhHH", 0, 0, SYMLINK, 0) + b"a"
    listings = bytes(root + big)
    inodes = ldir.pack(8, 0o755, 0, 0, 0, 1, 2, len(root) + 3, 0, 1, 0, 0, 0xFFFFFFFF)
    for i, at in enumerate(headers):
        inodes += ldir.pack(8, 0o755, 0, 0, 0, 2 + i, 2, len(listings) - at + 3, 0, 1, 0, at,
                            0xFFFFFFFF)
    inode_blocks, _ = _meta_blocks(inodes, compress=False)
    dir_blocks, _ = _meta_blocks(listings, compress=False)
    data = bytearray(SUPERBLOCK.size) + inode_blocks + dir_blocks
    inode_table, dir_table = SUPERBLOCK.size, SUPERBLOCK.size + len(inode_blocks)
    SUPERBLOCK.pack_into(data, 0, 0x73717368, folders + 1, 0, BS, 0, squashmap.ZSTD, 12, 0, 1, 4, 0,
                         0, len(data), len(data), 0xFFFFFFFFFFFFFFFF, inode_table, dir_table,
                         0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
    return bytes(data)


def test_folder_listings_that_overlap_are_refused():
    """Folders listing parts of one listing each (at other starts than one another) would
    make the walk's cost grow with their count times its length, from a small container."""
    assert len(_read(overlapping_listings(1))["files"]) == 0       # one folder: sound
    with pytest.raises(SquashfsError, match="folder listings that overlap"):
        _read(overlapping_listings(3))


def test_a_metadata_table_decoded_past_the_bound_is_refused(monkeypatch):
    built = build(sample_tree())
    monkeypatch.setattr(squashmap, "MAX_TABLE", 1000)
    with pytest.raises(SquashfsError, match="a metadata table of more than"):
        _read(built.data)
