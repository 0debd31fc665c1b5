"""Rules of issue 24 checked in-process: --keep patterns fold case as the target's filesystem does
(as NTFS does, not as Unicode does), a stat section's filesystem identity has the types
identity() makes, and a restore a normal user cannot make is refused before it starts."""

import os

import pytest
from conftest import run_cli


def test_keep_patterns_fold_case_where_windows_does_and_say_when_they_match_nothing(tmp_path):
    from diffimg.target.keep import find_kept
    root = tmp_path / "root"
    (root / "Users" / "Pc" / "Documents").mkdir(parents=True)
    (root / "Users" / "Pc" / "Documents" / "essay.txt").write_text("mine")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        unmatched = []
        assert find_kept(fd, ["/users/*/documents", "/none"], False, unmatched) == set()
        assert unmatched == ["/users/*/documents", "/none"]
        unmatched = []
        assert find_kept(fd, ["/users/*/documents", "/USERS/pc/DOCUMENTS/Essay.TXT", "/none"],
                         True, unmatched) == {b"Users/Pc/Documents",
                                              b"Users/Pc/Documents/essay.txt"}
        assert unmatched == ["/none"]
    finally:
        os.close(fd)


def test_a_stat_section_whose_identity_has_wrong_types_is_corrupt(tmp_path):
    """scan --previous (any reader) refuses a stat header whose filesystem identity is not one
    identity() makes: a text fsid, a missing or extra key."""
    from diffimg.errors import ManifestError
    from diffimg.scan.scanner import scan
    from diffimg.tree import statcache
    from diffimg.tree.manifest import write_manifest
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("1")
    for fs in ({"fsid": "1234", "dev": 1, "source": "/dev/x"},
               {"fsid": 1, "dev": 1},
               {"type": "ext4", "uuid": "u", "driver": "ext4", "fsid": 0, "extra": 1},
               {"type": "ext4", "uuid": 7, "driver": "ext4", "fsid": 0}):
        out = tmp_path / "m"
        write_manifest(out, scan(tree), {}, statcache.StatRecorder(fs, 0))
        with pytest.raises(ManifestError, match="stat section is corrupt"):
            statcache.read_section(out, 0, os.path.getsize(out))
        proc = run_cli("scan", "-q", tree, "-o", tmp_path / "m2", "--previous", out)
        assert proc.returncode == 4, proc.stderr
    good = {"type": "ext4", "uuid": "u", "driver": "ext4", "fsid": 0}
    write_manifest(out, scan(tree), {}, statcache.StatRecorder(good, 0))
    assert statcache.read_section(out, 0, os.path.getsize(out)).filesystem == good


def test_a_restore_a_normal_user_cannot_make_is_refused_before_it_starts(monkeypatch):
    """A user other than root is refused (exit 12, the first entry named) a plan holding
    another owner's entry, a device or a capability; a dry run only says it. (The CLI cannot
    run as another user here: the interpreter lies in root's home; the user is set in-process.)"""
    from diffimg.entry import Entry, Kind
    from diffimg.errors import NeedsRoot
    from diffimg.restore.planner import Plan, Source, Write
    from diffimg.restore.restore import _check_rights
    from diffimg.restore.writer import From
    me, group = 1000, 1000
    monkeypatch.setattr(os, "geteuid", lambda: me)
    monkeypatch.setattr(os, "getegid", lambda: group)
    monkeypatch.setattr(os, "getgroups", lambda: [])
    mine = Entry(b"a", Kind.FILE, 0o644, me, group, 0, size=1, digest=bytes(16))
    _check_rights(b"/t", Plan(writes=[Write(mine, Source(From.LAYER, b"a", 0))]), False, None)
    for entry, why in ((Entry(b"d/f", Kind.FILE, 0o644, 0, group, 0, size=1, digest=bytes(16)),
                        "d/f is owned by user 0"),
                       (Entry(b"null", Kind.CHAR, 0o666, me, group, 0, rdev=259), "is a device"),
                       (Entry(b"ping", Kind.FILE, 0o755, me, group, 0, size=1, digest=bytes(16),
                              xattrs={b"security.capability": b"x"}), "security xattrs")):
        plan = Plan(writes=[Write(mine, Source(From.LAYER, b"a", 0))], specials=[entry]) \
            if entry.kind is Kind.CHAR else Plan(writes=[Write(entry, Source(From.LAYER, b"f", 0))])
        with pytest.raises(NeedsRoot, match=why):
            _check_rights(b"/t", plan, False, None)
        said = []
        _check_rights(b"/t", plan, True, said.append)
        assert len(said) == 1 and "needs root" in said[0]


def test_names_fold_as_ntfs_folds_them_not_as_unicode_does(tmp_path):
    """The Kelvin sign, the long s and the dotless i are names of their own on NTFS (its
    $UpCase table maps them to themselves): a pattern of k, s or i never keeps them (F7)."""
    from diffimg.target.keep import Matcher, find_kept
    root = tmp_path / "root"
    root.mkdir()
    for name in ("pagefile.\u017fys", "\u212aeepme", "\u0131ndex", "Über", "KEEPME"):
        (root / name).write_text("planted")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        kept = find_kept(fd, ["/pagefile.sys", "/keepme", "/index", "/über"], True)
    finally:
        os.close(fd)
    assert kept == {"KEEPME".encode(), "Über".encode()}
    matcher = Matcher(["/keepme", "/über"], True)
    assert matcher.covers(b"KEEPME/x") and matcher.covers("ÜBER".encode())
    assert not matcher.covers("\u212aeepme".encode())
