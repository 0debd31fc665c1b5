"""Rebase's merge of a host's changes with a chain's, on in-memory entries: the three-way rule
per path, hardlink groups, folder conflicts and how --prefer settles them; and the host's name
read from its tree (etc/hostname, the Windows SYSTEM hive). Real host layers carried onto real
chains: system/test_rebase.py."""

import pytest
from entries import d, f, tree

from diffimg.entry import Kind
from diffimg.errors import Conflicts
from diffimg.hostlayers.rebase import CHAIN, HOST, _merged, settle, sides_of_trees, three_way


def test_the_host_name_comes_from_etc_hostname_or_the_windows_system_hive(tmp_path):
    from regf import REG_DWORD, REG_SZ, hive

    from diffimg.hostlayers.find import name_of
    linux = tmp_path / "linux"
    (linux / "etc").mkdir(parents=True)
    (linux / "etc" / "hostname").write_bytes(b"lab-pc07\n")
    assert name_of(linux) == "lab-pc07"
    (linux / "etc" / "hostname").unlink()
    (linux / "etc" / "hostname").symlink_to("/etc/hostname")      # never followed
    assert name_of(linux) is None
    (linux / "etc" / "hostname").unlink()
    (linux / "etc" / "hostname").write_bytes(b"../../evil\n")     # not a name
    assert name_of(linux) is None
    windows = tmp_path / "windows"
    config = windows / "Windows" / "System32" / "config"
    config.mkdir(parents=True)
    (windows / "Windows" / "System32" / "ntoskrnl.exe").write_bytes(b"MZ")
    (config / "SYSTEM").write_bytes(hive({"ControlSet001": {"Control": {"ComputerName": {
        "ComputerName": {"ComputerName": (REG_SZ, "AULA2-PC07")}}}}}))
    assert name_of(windows) == "AULA2-PC07"
    # the control set Windows boots with (Select\Current), not always the first
    (config / "SYSTEM").write_bytes(hive({
        "Select": {"Current": (REG_DWORD, 2)},
        "ControlSet001": {"Control": {"ComputerName": {"ComputerName": {
            "ComputerName": (REG_SZ, "OLD-NAME")}}}},
        "ControlSet002": {"Control": {"ComputerName": {"ComputerName": {
            "ComputerName": (REG_SZ, "AULA2-PC08")}}}}}))
    assert name_of(windows) == "AULA2-PC08"
    # hostname(5): comment lines are skipped; a full name gives its first label
    (linux / "etc" / "hostname").write_bytes(b"# set by the installer\n\npc12.lab.example.org\n")
    assert name_of(linux) == "pc12"


def test_merge_rules_on_entries():
    """The three-way rule per path, on manifest entries."""
    p = f(b"a", b"old")
    assert three_way(p, p, f(b"a", b"chain")) == (f(b"a", b"chain"), None)
    assert three_way(p, f(b"a", b"host"), p) == (f(b"a", b"host"), None)
    assert three_way(p, f(b"a", b"same"), f(b"a", b"same")) == (f(b"a", b"same"), None)
    assert three_way(p, f(b"a", b"host"), f(b"a", b"chain"))[1] == "both changed it"
    assert three_way(p, None, f(b"a", b"chain"))[1] == "the host removed it, the chain changed it"
    assert three_way(None, f(b"a", b"x"), d(b"a"))[1] == "both added it, differently"
    # folders: field by field; the host's mtime where it changed it
    folder = d(b"f", mode=0o755, mtime=1, xattrs={b"user.a": b"1"})
    host = d(b"f", mode=0o700, mtime=2, xattrs={b"user.a": b"1", b"user.h": b"h"})
    chain = d(b"f", mode=0o755, mtime=3, xattrs={b"user.a": b"2"})
    merged, why = three_way(folder, host, chain)
    assert why is None and merged.kind is Kind.DIR
    assert (merged.mode, merged.mtime_ns, merged.xattrs) == (
        0o700, 2, {b"user.a": b"2", b"user.h": b"h"})
    assert three_way(folder, host, d(b"f", mode=0o750, mtime=3))[1] == "both changed its mode"


def _sides(parent, host, overrides):
    return sides_of_trees(parent, host, {path for path, side in overrides.items() if side == HOST})


def test_a_hardlink_whose_group_the_chain_changed_is_a_conflict(tmp_path):
    t = 5
    parent = tree(f(b"a", b"x", mtime=t), f(b"b", b"x", mtime=t, link=b"a"))
    host = tree(f(b"a", b"x", mtime=t), f(b"b", b"x", mtime=t, link=b"a"),
                f(b"c", b"x", mtime=t, link=b"a"))
    chain = tree(f(b"a", b"y", mtime=t), f(b"b", b"y", mtime=t, link=b"a"))
    conflicts = []
    result = list(_merged(sides_of_trees(parent, host), chain, {}, conflicts))
    assert [(c.path, c.why) for c in conflicts] == [
        (b"c", "a hardlink whose group changed on the other side")]
    assert [e.path for e in result] == [b"", b"a", b"b"]
    with pytest.raises(Conflicts):
        settle(lambda o, c: _merged(_sides(parent, host, o), chain, o, c), None)
    # the chain's side drops the host's new member; the host's takes the whole group as it was
    for side, expected in ((CHAIN, chain), (HOST, host)):
        overrides, decided = settle(lambda o, c: _merged(_sides(parent, host, o), chain, o, c), side)
        assert b"c" in decided
        assert list(_merged(_sides(parent, host, overrides), chain, overrides, [])) == expected


def test_a_folder_conflict_keeps_the_changes_below_it():
    """Both changed the root's and a folder's mode: conflicts, yet the host's change of a file
    below and the chain's of another stand whichever side is preferred for the folders."""
    parent = tree(d(b"a"), f(b"a/h", b"1"), f(b"a/c", b"1"))
    parent[0] = d(b"", mode=0o755)
    host = tree(d(b"a", mode=0o700), f(b"a/h", b"host"), f(b"a/c", b"1"))
    host[0] = d(b"", mode=0o700)
    chain = tree(d(b"a", mode=0o750), f(b"a/h", b"1"), f(b"a/c", b"chain"))
    chain[0] = d(b"", mode=0o750)

    def merged(o, c):
        return _merged(_sides(parent, host, o), chain, o, c)

    with pytest.raises(Conflicts) as refused:
        settle(merged, None)
    assert refused.value.conflicts == [(b"", "both changed its mode"), (b"a", "both changed its mode")]
    for side, mode in ((HOST, 0o700), (CHAIN, 0o750)):
        overrides, decided = settle(merged, side)
        assert sorted(decided) == [b"", b"a"]
        result = list(merged(overrides, []))
        assert [(e.path, e.mode) for e in result if e.kind is Kind.DIR] == [(b"", mode), (b"a", mode)]
        assert [e.digest for e in result if e.kind is Kind.FILE] == [
            f(b"", b"chain").digest, f(b"", b"host").digest]          # a/c, a/h


def test_settling_takes_every_missing_folder_at_once():
    """The host removed a deep folder, the chain changed a file at its bottom: --prefer chain
    brings the whole folder chain back in a pass or two, whatever the depth."""
    depth = 40
    folders = [b"/".join([b"top"] + [b"l%d" % i for i in range(n)]) for n in range(depth)]
    bottom = folders[-1] + b"/file"
    parent = tree(*[d(p) for p in folders], f(bottom, b"1"))
    host = tree()
    chain = tree(*[d(p) for p in folders], f(bottom, b"2"))

    def merged(o, c):
        return _merged(_sides(parent, host, o), chain, o, c)

    passes = []

    def counted(o, c):
        passes.append(1)
        return merged(o, c)

    overrides, decided = settle(counted, CHAIN)
    assert len(passes) <= 4
    assert list(merged(overrides, [])) == chain
    overrides, decided = settle(merged, HOST)
    assert list(merged(overrides, [])) == host
