"""The manifest of the every-kind tree (devices, foreign owners, ACLs, capabilities: built as
root) records every kind and attribute exactly, in canonical order, with a stable tree ID."""

import pytest
from conftest import run_cli
from entries import manifest_view
from snapshot import snapshot

from diffimg.entry import Kind, path_key
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
