"""The manifest reads back what was written; a corrupt, truncated or newer one, or one naming
the state folder, is refused (one line, its own exit code). (The every-kind tree's manifest:
system/test_manifest_every_kind.py.)"""

import os

import pytest
from conftest import assert_one_line_error, run_cli

from diffimg.errors import ManifestError, OutputError, UnsupportedVersion
from diffimg.scan.scanner import scan
from diffimg.tree.manifest import ManifestReader, read_entries, write_manifest


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


def test_a_manifest_naming_the_state_folder_is_refused(tmp_path):
    from diffimg.entry import Entry, Kind
    from diffimg.errors import ManifestError
    from diffimg.tree.manifest import read_entries, write_manifest
    entries = [Entry(b"", Kind.DIR, 0o755, 0, 0, 0), Entry(b".diffimg", Kind.DIR, 0o755, 0, 0, 0)]
    write_manifest(tmp_path / "m", entries)
    with pytest.raises(ManifestError, match="unsafe path"):
        list(read_entries(tmp_path / "m"))


def test_a_manifest_replaces_a_file_never_a_fifo_folder_or_symlink(tmp_path):
    """scan -o over a manifest written before replaces it; over anything else it is refused and
    that thing is left as it was (a device node, /dev/full, alike)."""
    (tmp_path / "tree").mkdir()
    entries = list(scan(tmp_path / "tree"))
    old = tmp_path / "old.manifest"
    old.write_bytes(b"an older manifest")
    write_manifest(old, entries)
    assert [e.path for e in read_entries(old)] == [b""]
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(old)
    for name in ("fifo", "link"):
        proc = run_cli("scan", tmp_path / "tree", "-o", tmp_path / name)
        assert "exists and is not a file" in assert_one_line_error(proc, 7)
    with pytest.raises(OutputError, match="exists and is not a file"):
        write_manifest(tmp_path / "folder", entries)
    assert (os.path.islink(tmp_path / "link"), sorted(os.listdir(tmp_path))) == (
        True, ["fifo", "folder", "link", "old.manifest", "tree"])
