"""Images crafted by hand for the tests of hostile input: an image's metadata blobs taken apart
and written back with every digest recomputed (as an attacker would), a manifest's raw records,
a ranges blob edited."""

import io
import os
import struct

import msgpack
import xxhash
import zstandard

from diffimg import codec
from diffimg.image.format import FOOTER, MAGIC, Image, append_metadata
from diffimg.tree.manifest import MAGIC as MANIFEST_MAGIC
from diffimg.tree.statcache import records_end


def blobs_of(image: Image) -> dict:
    """The metadata blobs of image by name, as stored."""
    with open(image.meta_path, "rb") as f:
        data = f.read()
    return {name: data[start:start + length] for name, (start, length, _) in image.blobs.items()}


def records_of(blob: bytes) -> tuple[dict, list]:
    """The header and raw records of a manifest blob (its stat section dropped)."""
    frame = blob[12:records_end(io.BytesIO(blob), 0, len(blob))]
    with zstandard.ZstdDecompressor().stream_reader(frame, read_across_frames=False) as r:
        objects = list(msgpack.Unpacker(r, raw=False, strict_map_key=False))
    return objects[0], objects[1:-1]


def manifest_blob(header: dict, records: list) -> tuple[bytes, bytes]:
    """A manifest of these raw records with an honest trailer; (blob, tree ID)."""
    packed = [codec.pack(r) for r in records]
    tree_id = xxhash.xxh3_128_digest(b"".join(packed))
    files = [r for r in records if type(r) is list and len(r) > 6 and r[1] == 2]
    # (a size of 2**64 - 1 makes a sum msgpack cannot hold: the trailer then says the most it
    # can, and the reader finds the sum disagrees)
    total = sum(r[6] for r in files if type(r[6]) is int)
    trailer = {"entries": len(records), "files": len(files),
               "bytes": min(max(total, 0), (1 << 64) - 1), "tree_id": tree_id}
    body = codec.pack(header) + b"".join(packed) + codec.pack(trailer)
    return MANIFEST_MAGIC + struct.pack(">HH", 1, 1) + codec.compress(body), tree_id


def write_meta(path, blobs: dict, container: dict, index_change=None):
    """The metadata section: blobs, an index with their digests (one field possibly changed),
    the footer; the index digest recomputed."""
    index = {"container": container}
    out = bytearray()
    for name, data in blobs.items():
        index[name] = [len(out), len(data), xxhash.xxh3_128_digest(data)]
        out += data
    if index_change is not None:
        index_change(index)
    index_bytes = codec.pack(index)
    offset = len(out)
    out += index_bytes
    out += FOOTER.pack(MAGIC, 1, 0, offset, len(index_bytes), xxhash.xxh3_128_digest(index_bytes))
    with open(path, "wb") as f:
        f.write(out)


def with_ranges(image, out, edit):
    """A copy of image at out whose ranges blob is edit(header, items) (digests recomputed)."""
    img = Image(image)
    items = list(codec.iter_compressed_array(img.blob("ranges"), 1 << 26))
    blob = codec.pack_compressed(edit(items))
    length = img.container["length"]
    manifest = os.path.join(os.path.dirname(out), "manifest.tmp")
    with open(image, "rb") as f, open(manifest, "wb") as m:
        start, size, _ = img.blobs["manifest"]
        f.seek(start)
        m.write(f.read(size))
    with open(image, "rb") as src, open(out, "wb") as dst:
        dst.write(src.read(img.blobs["manifest"][0]))
        delta = img.delta()
        append_metadata(dst, img.container, manifest, delta, img.info, blob)
    assert length == Image(out).container["length"]
