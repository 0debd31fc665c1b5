"""The scanner's walk: hardlink groups whose leaders vanish, progress, and the window's batching."""

import os

from diffimg.entry import Kind
from diffimg.scan import scanner
from diffimg.scan.scanner import scan


def _links(tree, names, data=b"linked content"):
    first = tree / names[0]
    first.write_bytes(data)
    for name in names[1:]:
        os.link(first, tree / name)


def _scan_unlinking(tree, doomed):
    """Scan tree, unlinking doomed after the walk has seen every other entry and before any
    content is hashed: the lookup of previous hints is asked about the last file, "zz", and
    that is when the hints unlink."""
    (tree / "zz").write_bytes(b"last")

    def previous():
        yield b"y", 1, 0, b"\0" * 16, False
        for name in doomed:
            os.unlink(tree / name)

    warnings = []
    entries = {e.path: e for e in scan(tree, previous=previous(), on_warning=warnings.append)}
    return entries, warnings


def test_hardlink_members_share_the_first_members_content(tmp_path):
    _links(tmp_path, ["a", "m", "z"])
    (tmp_path / "b").write_bytes(b"other")
    entries = {e.path: e for e in scan(tmp_path)}
    assert entries[b"a"].link is None and entries[b"a"].digest is not None
    for name in (b"m", b"z"):
        assert entries[name].link == b"a"
        assert entries[name].digest == entries[b"a"].digest
        assert entries[name].size == entries[b"a"].size
        assert entries[name].mtime_ns == entries[b"a"].mtime_ns


def test_a_later_member_leads_when_the_first_vanished(tmp_path):
    _links(tmp_path, ["a", "m", "z"])
    entries, warnings = _scan_unlinking(tmp_path, ["a"])
    assert b"a" not in entries
    assert entries[b"m"].link is None and entries[b"m"].kind is Kind.FILE
    assert entries[b"z"].link == b"m" and entries[b"z"].digest == entries[b"m"].digest
    assert any("vanished" in w and "a" in w for w in warnings)


def test_the_last_member_leads_when_every_earlier_one_vanished(tmp_path):
    _links(tmp_path, ["a", "m", "z"])
    entries, warnings = _scan_unlinking(tmp_path, ["a", "m"])
    assert b"a" not in entries and b"m" not in entries
    assert entries[b"z"].link is None and entries[b"z"].digest is not None
    assert len([w for w in warnings if "vanished" in w]) == 2


def test_progress_every_512_entries_and_at_the_end(tmp_path):
    for i in range(1100):
        (tmp_path / f"f{i:04}").write_bytes(b"x" * (i % 3))
    calls = []
    entries = list(scan(tmp_path, on_progress=lambda n, size: calls.append((n, size))))
    sizes = [e.size or 0 for e in entries]
    assert calls == [(512, sum(sizes[:512])), (1024, sum(sizes[:1024])),
                     (len(entries), sum(sizes))]


def test_small_windows_and_batches_give_the_same_entries(tmp_path, monkeypatch):
    for d in range(6):
        (tmp_path / f"d{d}").mkdir()
        for i in range(60):
            (tmp_path / f"d{d}" / f"f{i}").write_bytes(os.urandom(i * 37))
        _links(tmp_path, [f"d{d}/l1", f"d{d}/l2"], data=os.urandom(99))
    os.symlink("d0/f1", tmp_path / "s")
    expected = list(scan(tmp_path))
    monkeypatch.setattr(scanner, "WINDOW", 20)
    monkeypatch.setattr(scanner, "DRAIN_EVERY", 4)
    monkeypatch.setattr(scanner, "BATCH_FILES", 7)
    assert list(scan(tmp_path)) == expected
    assert list(scan(tmp_path, checksum=True, workers=1)) == expected
