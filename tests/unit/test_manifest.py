"""The manifest records every kind and attribute exactly, and reads back what was written."""

import os

import pytest
from conftest import assert_one_line_error, run_cli
from entries import manifest_view
from snapshot import snapshot

from diffimg.entry import Kind, path_key
from diffimg.errors import ManifestError, UnsupportedVersion
from diffimg.scan.scanner import scan
from diffimg.tree.manifest import ManifestReader, read_entries, write_manifest


@pytest.mark.root
def test_manifest_records_every_kind_and_attribute(rich_tree, tmp_path):
    out = tmp_path / "m.dimf"
    run_cli("scan", rich_tree, "-o", out, check_rc=0)
    entries = list(read_entries(out))
    assert manifest_view(entries) == snapshot(rich_tree)
    kinds = {e.kind for e in entries}
    assert kinds == set(Kind)
    by_path = {e.path: e for e in entries}
    assert by_path[b"sparse.img"].sparse is True
    assert by_path[b"Program Files/app.exe"].sparse is False
    assert by_path[b"Program Files/setuid"].mode == 0o4755
    assert by_path[b"shared"].mode == 0o1777
    assert b"system.posix_acl_default" in by_path[b"shared"].xattrs
    assert b"security.capability" in by_path[b"Program Files/cap-bin"].xattrs
    assert by_path[b"times/before-1970"].mtime_ns == -86_400_000_000_001
    # later members name the first member in canonical order
    assert by_path[b"links/hard-top"].link == b"Program Files/app.exe"
    assert by_path[b"Program Files/app.exe"].link is None


@pytest.mark.root
def test_leaders_only_hints_leave_out_later_hardlink_members(rich_tree, tmp_path):
    """What a container holds of a full image: a file's first path, never a later member of its
    hardlink group; the stream is still checked whole (trailer counts every file)."""
    from diffimg.tree.manifest import read_file_hints
    out = tmp_path / "m"
    write_manifest(out, scan(rich_tree))
    entries = list(read_entries(out))
    members = {e.path for e in entries if e.kind is Kind.FILE and e.link is not None}
    assert members                              # the every-kind tree has hardlinks
    every = [h.path for h in read_file_hints(out)]
    leaders = [h.path for h in read_file_hints(out, leaders_only=True)]
    assert leaders == [p for p in every if p not in members]


def test_records_are_in_canonical_order_with_the_root_first(rich_tree, tmp_path):
    paths = [e.path for e in scan(rich_tree)]
    assert paths[0] == b""
    assert paths == sorted(paths, key=path_key)
    # a folder is followed by its whole subtree: names/a/b before names/a-b
    assert paths.index(b"names/a/b") < paths.index(b"names/a-b")


@pytest.mark.root
def test_tree_id_is_stable_and_independent_of_time_and_place(rich_tree, tmp_path):
    first = write_manifest(tmp_path / "1.dimf", scan(rich_tree))
    second = write_manifest(tmp_path / "2.dimf", scan(rich_tree, checksum=True))
    assert first["tree_id"] == second["tree_id"]
    with ManifestReader(tmp_path / "1.dimf") as m1, ManifestReader(tmp_path / "2.dimf") as m2:
        assert m1.header["created_ns"] != m2.header["created_ns"]
        list(m1.entries()), list(m2.entries())
        assert m1.trailer == m2.trailer


def test_manifest_round_trip_keeps_every_field(tmp_path):
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(b"content")
    os.symlink("d/f", tree / "s")
    written = list(scan(tree))
    write_manifest(tmp_path / "m", iter(written))
    assert list(read_entries(tmp_path / "m")) == written


def _manifest(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    for i in range(200):
        (tree / f"f{i}").write_bytes(os.urandom(64))
    out = tmp_path / "m.dimf"
    run_cli("scan", tree, "-o", out, check_rc=0)
    return tree, out


def test_corrupt_manifest_is_a_one_line_error(tmp_path):
    tree, out = _manifest(tmp_path)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(data)
    assert_one_line_error(run_cli("compare", tree, out), 4)
    with pytest.raises(ManifestError):
        list(read_entries(out))


def test_truncated_manifest_is_a_one_line_error(tmp_path):
    tree, out = _manifest(tmp_path)
    data = out.read_bytes()
    for cut in (len(data) - 5, len(data) // 2, 14, 3):
        out.write_bytes(data[:cut])
        assert_one_line_error(run_cli("compare", out, tree), 4)


def test_newer_format_is_refused_with_its_own_code(tmp_path):
    tree, out = _manifest(tmp_path)
    data = bytearray(out.read_bytes())
    data[8:10] = (2).to_bytes(2, "big")
    out.write_bytes(data)
    assert_one_line_error(run_cli("compare", tree, out), 5)
    with pytest.raises(UnsupportedVersion):
        ManifestReader(out)


def test_newer_minor_version_is_read(tmp_path, monkeypatch):
    """A manifest of format 1.7 (preamble and header agree) is read by this 1.x reader; one
    whose preamble and header disagree is refused."""
    from diffimg.scan.scanner import scan
    from diffimg.tree import manifest
    tree, out = _manifest(tmp_path)
    newer = tmp_path / "newer"
    monkeypatch.setattr(manifest, "VERSION", (1, 7))
    manifest.write_manifest(newer, scan(tree))
    monkeypatch.undo()
    run_cli("compare", tree, newer, check_rc=0)
    data = bytearray(out.read_bytes())
    data[10:12] = (7).to_bytes(2, "big")
    out.write_bytes(data)
    assert b"format" in assert_one_line_error(run_cli("compare", tree, out), 4).encode()


def test_missing_path_and_non_manifest_are_one_line_errors(tmp_path):
    assert_one_line_error(run_cli("compare", tmp_path / "nope", tmp_path), 3)
    assert_one_line_error(run_cli("scan", tmp_path / "nope", "-o", tmp_path / "m"), 3)
    (tmp_path / "junk").write_bytes(b"not a manifest at all")
    assert_one_line_error(run_cli("compare", tmp_path / "junk", tmp_path), 4)
    assert not (tmp_path / "m").exists()


def test_failed_scan_leaves_no_output(tmp_path):
    out = tmp_path / "out" / "m.dimf"
    (tmp_path / "out").mkdir()
    assert_one_line_error(run_cli("scan", tmp_path / "nope", "-o", out), 3)
    assert os.listdir(tmp_path / "out") == []


def test_unwritable_output_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_cli("scan", tmp_path, "-o", tmp_path / "no" / "such" / "m"), 7)
