"""NTFS values in manifest records (security descriptors, DOS attributes, creation times, short
names, reparse data, large streams): what ntfs-3g would refuse or show otherwise is refused when
a record is read, not found out half-way through a restore. No volume is made."""

import struct

import pytest
from ntfsbuild import EVERYONE, SYSTEM, ace, descriptor, junction_data

from diffimg.scan.hashing import EMPTY_DIGEST
from diffimg.windows import ntfs


def test_reparse_data_is_accepted_on_symlink_records_only():
    """A restorer gives reparse data only to the empty entry it makes for it: a manifest whose
    file or folder carries some (which would turn written content into a junction) is refused."""
    from diffimg.entry import Entry, Kind
    from diffimg.tree.manifest import from_record, to_record
    data = {ntfs.ATTRIB: struct.pack(">I", 0x410), ntfs.REPARSE: junction_data("C:\\Users")}
    link = Entry(b"Documents and Settings", Kind.SYMLINK, 0o777, 0, 0, 0, None, None,
                 b"/.NTFS-3G/C:/Users", None, data)
    assert from_record(to_record(link)).xattrs == data
    for kind, size, digest, sparse in ((Kind.FILE, 0, EMPTY_DIGEST, False), (Kind.DIR, None, None, None)):
        bad = Entry(b"x", kind, 0o755, 0, 0, 0, size, digest, None, None, data, None, sparse)
        with pytest.raises(ValueError, match="reparse data"):
            from_record(to_record(bad))


def test_a_large_stream_record_is_checked_when_read():
    """A large stream is recorded by size (over 64 KiB) and digest, on a file or folder, once,
    with a name ntfs-3g can serve; anything else is refused as a corrupt manifest."""
    from diffimg.entry import Entry, Kind
    from diffimg.tree.manifest import from_record, to_record
    from diffimg.windows import streams

    def record(xattrs, kind=Kind.FILE):
        size, digest, sparse = (0, EMPTY_DIGEST, False) if kind is Kind.FILE else (None, None, None)
        target = b"t" if kind is Kind.SYMLINK else None
        mode = 0o777 if kind is Kind.SYMLINK else 0o644
        return to_record(Entry(b"f", kind, mode, 0, 0, 0, size, digest, target, None,
                               dict(sorted(xattrs.items())), None, sparse))
    ref = streams.reference(70_000, bytes(16))
    for kind in (Kind.FILE, Kind.DIR):
        assert from_record(record({b"diffimg.stream.big": ref}, kind)).xattrs
    for xattrs, kind in (({b"diffimg.stream.big": ref}, Kind.SYMLINK),
                         ({b"diffimg.stream.big": streams.reference(65_536, bytes(16))}, Kind.FILE),
                         ({b"diffimg.stream.big": ref[:-1]}, Kind.FILE),
                         ({b"diffimg.stream.a:b": ref}, Kind.FILE),
                         ({b"diffimg.stream.": ref}, Kind.FILE),
                         ({b"diffimg.stream.big": ref, b"user.big": b"x"}, Kind.FILE)):
        with pytest.raises(ValueError):
            from_record(record(xattrs, kind))


def test_a_manifest_with_ntfs_values_ntfs_3g_would_refuse_is_refused():
    """Checked when read (exit 8 for an image), not found out half-way through a restore."""
    from diffimg.entry import Entry, Kind
    from diffimg.tree.manifest import from_record, to_record
    good = {ntfs.ACL: descriptor(SYSTEM, SYSTEM, ace(EVERYONE, 0x1F01FF)),
            ntfs.ATTRIB: struct.pack(">I", 0x20), ntfs.CRTIME: bytes(8),
            ntfs.DOS_NAME: b"LONGDO~1.TXT"}

    def record(xattrs, kind=Kind.FILE):
        size, digest, sparse = (0, EMPTY_DIGEST, False) if kind is Kind.FILE else (None, None, None)
        return to_record(Entry(b"f", kind, 0o644, 0, 0, 0, size, digest, None, None,
                               dict(sorted(xattrs.items())), None, sparse))
    assert from_record(record(good)).xattrs == dict(sorted(good.items()))
    for name, bad in ((ntfs.ATTRIB, b"\0\0\0"), (ntfs.ATTRIB, struct.pack(">I", 0x30)),
                      (ntfs.ATTRIB, struct.pack(">I", 0x820)), (ntfs.CRTIME, b"\0" * 3),
                      (ntfs.DOS_NAME, b".."), (ntfs.DOS_NAME, b"A/B"), (ntfs.DOS_NAME, b"CON"),
                      (ntfs.DOS_NAME, b"lower.txt"), (ntfs.ACL, b"junk"),
                      (ntfs.ACL, descriptor(SYSTEM, SYSTEM)[:-8] + b"\xff" * 8)):
        with pytest.raises(ValueError):
            from_record(record({**good, name: bad}))
    with pytest.raises(ValueError):
        from_record(record({ntfs.ATTRIB: struct.pack(">I", 0x20)}, Kind.DIR))
    # second review: values that passed the reader, then failed every restore or never settled
    no_group = bytearray(descriptor(SYSTEM, SYSTEM, ace(EVERYONE, 0x1F01FF)))
    no_group[8:12] = bytes(4)
    null_dacl = bytearray(descriptor(SYSTEM, SYSTEM, ace(EVERYONE, 0x1F01FF)))
    null_dacl[16:20] = bytes(4)
    for bad in (bytes(no_group), bytes(null_dacl), descriptor(SYSTEM, SYSTEM) + bytes(4),
                struct.pack(">I", 0x80020)):
        with pytest.raises(ValueError):
            from_record(record({**good, (ntfs.ATTRIB if len(bad) == 4 else ntfs.ACL): bad}))
    junction = junction_data("C:\\Users")

    def link_record(xattrs, target=b"/.NTFS-3G/C:/Users", path=b"j", link=None):
        return to_record(Entry(path, Kind.SYMLINK, 0o777, 0, 0, 0, None, None, target, None,
                               dict(sorted(xattrs.items())), link))
    dir_bits = {ntfs.ATTRIB: struct.pack(">I", 0x410)}
    assert from_record(link_record({ntfs.REPARSE: junction, **dir_bits})).target == \
        b"/.NTFS-3G/C:/Users"
    for xattrs, target in (({ntfs.REPARSE: junction, **dir_bits}, b"/elsewhere"),
                           ({ntfs.REPARSE: junction, ntfs.ATTRIB: struct.pack(">I", 0x420)},
                            b"/.NTFS-3G/C:/Users"),
                           ({ntfs.REPARSE: bytes(8)}, b"/.NTFS-3G/reparse-00000000"),
                           ({ntfs.REPARSE: b"\x03\x00\x00\x20" + bytes(4)},
                            b"/.NTFS-3G/reparse-20000003"),
                           ({ntfs.REPARSE: junction[:8] + struct.pack("<HHHH", 500, 10, 0, 0)
                             + junction[16:]}, b"/.NTFS-3G/reparse-a0000003")):
        with pytest.raises(ValueError):
            from_record(link_record(xattrs, target))
    with pytest.raises(ValueError):                              # a short name on the root
        from_record(to_record(Entry(b"", Kind.DIR, 0o755, 0, 0, 0, xattrs={
            ntfs.DOS_NAME: b"ROOT"})))


def test_attributes_ntfs_3g_would_show_otherwise_are_refused():
    from diffimg.entry import Entry, Kind
    from diffimg.tree.manifest import from_record, to_record

    def entry(kind, bits, **more):
        fields = dict(size=0, digest=EMPTY_DIGEST, sparse=False) if kind is Kind.FILE else {}
        mode = 0o777 if kind is Kind.SYMLINK else 0o644
        return to_record(Entry(b"x", kind, mode, 0, 0, 0, xattrs={
            ntfs.ATTRIB: struct.pack(">I", bits)}, **fields, **more))
    from_record(entry(Kind.FILE, 0x80))
    from_record(entry(Kind.SYMLINK, 0x24, target=b"y"))
    for kind, bits, more in ((Kind.FILE, 0x81, {}), (Kind.FILE, 0, {}),
                             (Kind.SYMLINK, 0x20, {"target": b"y"}),
                             (Kind.SYMLINK, 0x410, {"target": b"y"})):
        with pytest.raises(ValueError):
            from_record(entry(kind, bits, **more))


def _ea(name: bytes, value: bytes) -> bytes:
    body = struct.pack("<BBH", 0, len(name), len(value)) + name + b"\0" + value
    size = (4 + len(body) + 3) & ~3
    return struct.pack("<I", size) + body + b"\0" * (size - 4 - len(body))


def test_object_ids_extended_attributes_null_dacls_and_third_party_tags_as_ntfs_3g_takes_them():
    """Taken: what ntfs-3g sets and Windows writes (an object ID of 16 or 64 bytes, a list of
    EAs, a NULL or missing DACL, a reparse tag not Microsoft's with its GUID); refused: what
    ntfs-3g would refuse at restore."""
    from diffimg.entry import Entry, Kind
    from diffimg.tree.manifest import from_record, to_record

    def read(xattrs, kind=Kind.FILE, target=None):
        fields = dict(size=0, digest=EMPTY_DIGEST, sparse=False) if kind is Kind.FILE else {}
        return from_record(to_record(Entry(b"x", kind, 0o777 if target else 0o644, 0, 0, 0,
                                           target=target, xattrs=dict(sorted(xattrs.items())),
                                           **fields)))
    eas = _ea(b"$LXUID", b"\xe8\x03\0\0") + _ea(b"$LXMOD", b"\xa4\x81\0\0")
    head = struct.pack("<BBHIIII", 1, 0, 0x8004, 20, 20 + len(SYSTEM), 0, 0)
    null_dacl, no_dacl = head + SYSTEM + SYSTEM, head[:2] + b"\0\x80" + head[4:] + SYSTEM + SYSTEM
    for good in ({ntfs.OBJECT_ID: bytes(range(16))}, {ntfs.OBJECT_ID: bytes(64)},
                 {ntfs.EA: eas}, {ntfs.EA: _ea(b"E", b"")}, {ntfs.ACL: null_dacl},
                 {ntfs.ACL: no_dacl}):
        assert read(good).xattrs == good
    third_party = struct.pack("<IHH", 0x1234, 3, 0) + bytes(16) + b"abc"
    assert read({ntfs.REPARSE: third_party}, Kind.SYMLINK, b"/.NTFS-3G/reparse-00001234")
    misaligned = head[:4] + struct.pack("<I", 22) + head[8:] + b"\0\0" + SYSTEM + SYSTEM
    for bad in ({ntfs.OBJECT_ID: bytes(15)}, {ntfs.OBJECT_ID: bytes(32)}, {ntfs.EA: b""},
                {ntfs.EA: eas[:-4]}, {ntfs.EA: b"\0" * 8}, {ntfs.EA: eas[:3] + b"\1" + eas[4:]},
                {ntfs.EA: _ea(b"", b"v")}, {ntfs.EA: _ea(b"E", b"x" * 65_000) * 2},
                {ntfs.ACL: null_dacl + bytes(4)}, {ntfs.ACL: misaligned}):
        with pytest.raises(ValueError):
            read(bad)
    for data in (third_party[:8] + third_party[24:], third_party + b"x", bytes(24)):
        with pytest.raises(ValueError):
            read({ntfs.REPARSE: data}, Kind.SYMLINK, ntfs.reparse_target(data))


def test_a_manifest_giving_one_object_id_to_two_entries_is_refused(tmp_path):
    """A volume holds each object ID once: a restore could give it to one of them only, and
    would warn about the other at every run."""
    from diffimg.entry import Entry, Kind
    from diffimg.errors import ManifestError
    from diffimg.tree.manifest import read_entries, write_manifest

    def files(second_id):
        return [Entry(b"", Kind.DIR, 0o755, 0, 0, 0),
                *(Entry(name, Kind.FILE, 0o644, 0, 0, 0, 0, EMPTY_DIGEST, sparse=False,
                        xattrs={ntfs.OBJECT_ID: object_id})
                  for name, object_id in ((b"a", bytes(16) + bytes(48)), (b"b", second_id)))]
    write_manifest(tmp_path / "good", files(bytes([1]) * 16))
    assert len(list(read_entries(tmp_path / "good"))) == 3
    write_manifest(tmp_path / "bad", files(bytes(16)))     # the same ID, without birth IDs
    with pytest.raises(ManifestError, match="object ID another entry has"):
        list(read_entries(tmp_path / "bad"))


def test_a_manifest_giving_one_short_name_to_two_entries_of_a_folder_is_refused(tmp_path):
    """A folder holds each short name once; in two folders the same one is fine."""
    from diffimg.entry import Entry, Kind
    from diffimg.errors import ManifestError
    from diffimg.tree.manifest import read_entries, write_manifest

    def tree(second_folder):
        named = {ntfs.DOS_NAME: b"LONGNA~1.TXT"}
        return [Entry(b"", Kind.DIR, 0o755, 0, 0, 0), Entry(b"d", Kind.DIR, 0o755, 0, 0, 0),
                Entry(b"d/Long name one.txt", Kind.FILE, 0o644, 0, 0, 0, 0, EMPTY_DIGEST,
                      sparse=False, xattrs=named),
                Entry(b"d/sub", Kind.DIR, 0o755, 0, 0, 0, xattrs={ntfs.DOS_NAME: b"SUB"}),
                Entry(second_folder + b"/Long name two.txt", Kind.FILE, 0o644, 0, 0, 0, 0,
                      EMPTY_DIGEST, sparse=False, xattrs=named)]
    write_manifest(tmp_path / "good", tree(b"d/sub"))
    assert len(list(read_entries(tmp_path / "good"))) == 5
    write_manifest(tmp_path / "bad", sorted(tree(b"d"), key=lambda e: e.path.replace(b"/", b"\0")))
    with pytest.raises(ManifestError, match="short name another entry of its folder has"):
        list(read_entries(tmp_path / "bad"))


def test_times_go_to_ntfs_units_and_back_exactly_before_1970_too():
    """The writer sets what the reader reads: a time in ns (to the 100 ns, as NTFS keeps it)
    is the same after ntfs_time_of and ns_of, before and after 1970; finer ns are floored."""
    for ns in (0, -1234567800, 1_700_000_000_123_456_700, -11644473600 * 10**9):
        assert ntfs.ns_of(ntfs.ntfs_time_of(ns)) == ns
    assert ntfs.ntfs_time_of(0) == 116444736000000000
    assert ntfs.ntfs_time_of(-11644473600 * 10**9) == 0          # 1601, NTFS's epoch
    assert ntfs.ns_of(ntfs.ntfs_time_of(-150)) == -200            # (floored, as ns_of reads it)
    assert ntfs.ns_of(ntfs.ntfs_time_of(199)) == 100


def test_a_reparse_points_streams_and_holes_are_taken_on_reparse_points_only():
    """A file Windows compressed (WOF) is a reparse point with a large stream and an unnamed
    stream of holes: a symlink record with reparse data may hold both; a plain symlink, a file
    or a folder holding the holes, or holes that are no size, is refused."""
    from diffimg.entry import Entry, Kind
    from diffimg.tree.manifest import from_record, to_record
    from diffimg.windows import streams
    wof = struct.pack("<IHHIIII", 0x80000017, 16, 0, 1, 2, 1, 0)

    def record(xattrs, kind=Kind.SYMLINK):
        size, digest, sparse = (0, EMPTY_DIGEST, False) if kind is Kind.FILE else (None, None, None)
        target = ntfs.reparse_target(xattrs[ntfs.REPARSE]) if ntfs.REPARSE in xattrs \
            else b"t" if kind is Kind.SYMLINK else None
        mode = 0o777 if kind is Kind.SYMLINK else 0o644
        return to_record(Entry(b"f", kind, mode, 0, 0, 0, size, digest, target, None,
                               dict(sorted(xattrs.items())), None, sparse))
    good = {ntfs.REPARSE: wof, ntfs.HOLES: struct.pack(">Q", 1 << 20),
            b"diffimg.stream.WofCompressedData": streams.reference(70_000, bytes(16))}
    assert from_record(record(good)).xattrs == dict(sorted(good.items()))
    for xattrs, kind in (({ntfs.HOLES: struct.pack(">Q", 10)}, Kind.SYMLINK),
                         ({ntfs.HOLES: struct.pack(">Q", 10)}, Kind.FILE),
                         ({ntfs.REPARSE: wof, ntfs.HOLES: struct.pack(">Q", 0)}, Kind.SYMLINK),
                         ({ntfs.REPARSE: wof, ntfs.HOLES: b"\0" * 4}, Kind.SYMLINK),
                         ({ntfs.REPARSE: wof, ntfs.HOLES: struct.pack(">Q", (1 << 53) + 1)},
                          Kind.SYMLINK),
                         ({b"diffimg.stream.x": streams.reference(70_000, bytes(16))},
                          Kind.SYMLINK)):
        with pytest.raises(ValueError):
            from_record(record(xattrs, kind))


def test_a_reparse_points_data_is_kept_for_the_library_and_left_out_elsewhere(tmp_path):
    """Only libntfs-3g writes a reparse point's streams and holes: fitted for it (where None)
    they stay; for any other target they go, with one warning, and a target's own entries are
    compared without them (so an intact one is left as it is)."""
    from diffimg.entry import Entry, Kind
    wof = struct.pack("<IHHIIII", 0x80000017, 16, 0, 1, 2, 1, 0)

    def entry():
        xattrs = {ntfs.ATTRIB: struct.pack(">I", 0x420), ntfs.HOLES: struct.pack(">Q", 4096),
                  ntfs.REPARSE: wof, b"user.WofCompressedData": b"xpress"}
        return Entry(b"a.exe", Kind.SYMLINK, 0o777, 0, 0, 0, None, None,
                     ntfs.reparse_target(wof), None, dict(sorted(xattrs.items())))
    said = []
    kept = ntfs.fitter(None, said.append)(entry())
    assert ntfs.HOLES in kept.xattrs and b"user.WofCompressedData" in kept.xattrs and not said
    fit = ntfs.fitter(str(tmp_path), said.append)         # (not NTFS: NTFS values go too)
    assert fit(entry()).xattrs is None and fit(entry()).xattrs is None
    assert len([m for m in said if "only libntfs-3g writes" in m]) == 1
    compared = next(ntfs.without_reparse_data([entry()]))
    assert set(compared.xattrs) == {ntfs.ATTRIB, ntfs.REPARSE}
