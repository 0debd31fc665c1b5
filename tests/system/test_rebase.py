"""Host layers: a machine's own diff carried onto a new chain (rebase), chosen by name at
restore and apply (--host-layers), reported by status. Real trees, real squashfs images, the
real CLI; every result compared with an independent snapshot of what it must be. (The merge
rules on in-memory entries: unit/test_rebase_merge.py.)"""

import os
import shutil
import subprocess

import pytest
from conftest import assert_one_line_error, run_cli
from hypothesis import given
from snapshot import assert_same_tree, snapshot
from strategies import EDITS, edit, trees
from treebuild import build, every_kind_spec

from diffimg.hostlayers.rebase import CHAIN, HOST, host_sides, sides_of_trees
from diffimg.image.format import Image
from diffimg.make.packer import PackOptions, create, diff

pytestmark = pytest.mark.root
HOST_TIME = 1_800_000_000_000_000_000


def _copy(src, dst):
    subprocess.run(["cp", "-a", os.fsencode(src), os.fsencode(dst)], check=True)
    return os.fsencode(dst)


def _model(tmp_path):
    """The model: the every-kind tree and an etc/hostname, imaged as base.img, then changed
    into d1.img; returns the model's tree (at d1)."""
    model = build(tmp_path / "model", every_kind_spec())
    os.mkdir(os.path.join(model, b"etc"))
    with open(os.path.join(model, b"etc/hostname"), "wb") as fh:
        fh.write(b"model\n")
    run_cli("create", model, tmp_path / "base.img", "-q", check_rc=0)
    with open(os.path.join(model, b"Program Files/setuid"), "ab") as fh:
        fh.write(b" d1")
    os.setxattr(os.path.join(model, b"names/a"), b"user.d1", b"yes")
    run_cli("diff", model, tmp_path / "base.img", "-o", tmp_path / "d1.img", "-q", check_rc=0)
    return model


def host_changes(root, n: int):
    """Host n's own changes: a changed file, a new file in a new folder (stored content), a
    chmod, an xattr, a removed file; the folders it changes get fixed times."""
    root = os.fsencode(root)

    def p(rel):
        return os.path.join(root, rel)

    with open(p(b"etc/hostname"), "wb") as fh:
        fh.write(b"pc%d\n" % n)
    os.utime(p(b"etc/hostname"), ns=(HOST_TIME, HOST_TIME + n))
    os.mkdir(p(b"opt%d" % n))
    with open(p(b"opt%d/licence" % n), "wb") as fh:
        fh.write(b"licence of pc%d " % n * 5000)
    os.utime(p(b"opt%d/licence" % n), ns=(HOST_TIME, HOST_TIME + 2 * n))
    os.chmod(p(b"names/a-b"), 0o600 + n)
    os.setxattr(p(b"shared/acl-file"), b"user.host", b"pc%d" % n)
    os.unlink(p(b"names/c => d"))
    for folder in (b"opt%d" % n, b"names", b""):
        os.utime(p(folder), ns=(HOST_TIME, HOST_TIME + 10 * n))


def model_update(root):
    """d2: the model changes, none of the hosts' paths (a hardlinked file rewritten, a new file
    in a folder where hosts removed one, a new folder, a folder deleted, a chmod, an xattr)."""
    root = os.fsencode(root)
    with open(os.path.join(root, b"Program Files/app.exe"), "r+b") as fh:
        fh.write(b"MZ-d2")
    with open(os.path.join(root, b"names/added-by-d2"), "wb") as fh:
        fh.write(b"d2 " * 3000)
    os.makedirs(os.path.join(root, b"new-in-d2/deep"))
    with open(os.path.join(root, b"new-in-d2/deep/file"), "wb") as fh:
        fh.write(b"new in d2")
    shutil.rmtree(os.path.join(root, b"times"))
    os.chmod(os.path.join(root, b"Program Files/setgid"), 0o2700)
    os.setxattr(os.path.join(root, b"xattrs"), b"user.comment", b"d2")


def _hosts(tmp_path, count=3):
    """Each host: base+d1 restored, its changes made, its own diff (hosts/pcN.diff)."""
    (tmp_path / "hosts").mkdir()
    machines = []
    for n in range(1, count + 1):
        machine = tmp_path / f"pc{n}"
        machine.mkdir()
        run_cli("restore", tmp_path / "base.img", tmp_path / "d1.img", machine, "-q", check_rc=0)
        host_changes(machine, n)
        run_cli("diff", machine, tmp_path / "base.img", tmp_path / "d1.img",
                "-o", tmp_path / "hosts" / f"pc{n}.diff", "-q", check_rc=0)
        machines.append(machine)
    return machines


def _expected(tmp_path, chain, n):
    """The model's new tree with host n's changes made on it, as a snapshot."""
    where = tmp_path / f"expected-pc{n}"
    where.mkdir()
    run_cli("restore", *chain, where, "-q", check_rc=0)
    host_changes(where, n)
    return snapshot(where)


def test_host_layers_carried_onto_a_model_update_restore_exactly(tmp_path):
    model = _model(tmp_path)
    machines = _hosts(tmp_path)
    model_update(model)
    run_cli("diff", model, tmp_path / "base.img", tmp_path / "d1.img", "-o", tmp_path / "d2.img",
            "-q", check_rc=0)
    chain = [tmp_path / "base.img", tmp_path / "d1.img", tmp_path / "d2.img"]
    (tmp_path / "new").mkdir()
    shutil.rmtree(machines[0])      # the content host 1 stored comes from its diff alone
    for n in (1, 2, 3):
        out = tmp_path / "new" / f"pc{n}.diff"
        proc = run_cli("rebase", tmp_path / "hosts" / f"pc{n}.diff", "--onto", *chain, "-o", out,
                       check_rc=0)
        assert b"conflict" not in proc.stdout + proc.stderr and b"decided" not in proc.stdout
        rebased = Image(out)
        assert rebased.parent_id == Image(chain[-1]).tree_id
        # the host's new file is stored once more (Q lacks it); the model's new files are not
        stored = {c.path for c in rebased.delta() if c.action == "store"}
        assert b"opt%d/licence" % n in stored and b"names/added-by-d2" not in stored
        run_cli("verify", *chain, out, "-q", check_rc=0)
    expected = {n: _expected(tmp_path, chain, n) for n in (1, 2, 3)}
    # host 1: a fresh disk, its name given
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    proc = run_cli("restore", *chain, fresh, "--host-layers", tmp_path / "new", "--host", "pc1",
                   check_rc=0)
    assert b"host layer of pc1" in proc.stderr
    assert_same_tree(snapshot(fresh), expected[1])
    # hosts 2 and 3: their own used partitions, named by their etc/hostname
    for n in (2, 3):
        run_cli("restore", *chain, machines[n - 1], "--host-layers", tmp_path / "new", "-q",
                check_rc=0)
        assert_same_tree(snapshot(machines[n - 1]), expected[n])
        status = run_cli("status", machines[n - 1], check_rc=0).stdout
        assert b"pc%d.diff (host layer of pc%d)" % (n, n) in status
    # an old host layer (made on d1's tree) is left out with a warning, never restored on d2
    other = tmp_path / "other"
    other.mkdir()
    proc = run_cli("restore", *chain, other, "--host-layers", tmp_path / "hosts", "--host", "pc2",
                   check_rc=0)
    assert b"was not made on this chain's tree" in proc.stderr
    model_now = tmp_path / "model-now"
    model_now.mkdir()
    run_cli("restore", *chain, model_now, "-q", check_rc=0)
    assert_same_tree(snapshot(other), snapshot(model_now))
    # apply: d2 then the host layer, onto a machine at d1
    at_d1 = tmp_path / "at-d1"
    at_d1.mkdir()
    run_cli("restore", *chain[:2], at_d1, "-q", check_rc=0)
    run_cli("apply", chain[2], at_d1, "--host-layers", tmp_path / "new", "--host", "pc3", "-q",
            check_rc=0)
    assert_same_tree(snapshot(at_d1), expected[3])
    # a re-run is refused as any apply onto a tree that is not the diff's parent, changing
    # nothing (never a restore the user did not ask for)
    (at_d1 / "mine").write_bytes(b"a file of the machine's user")
    line = assert_one_line_error(run_cli("apply", chain[2], at_d1, "--host-layers",
                                         tmp_path / "new", "--host", "pc3", "-q"), 14)
    assert "holds" in line and "already" in line
    # --force restores both trees whatever the target holds: the user's file goes
    run_cli("apply", chain[2], at_d1, "--host-layers", tmp_path / "new", "--host", "pc3", "-q",
            "--force", check_rc=0)
    assert_same_tree(snapshot(at_d1), expected[3])


def _rebased(tmp_path, host_diff, chain, side):
    """rebase --prefer side, the chain and the result restored into a new folder, and the chain
    alone restored into another (to be made the expected tree): (the rebase, both folders)."""
    out = tmp_path / f"{side}.diff"
    proc = run_cli("rebase", host_diff, "--onto", *chain, "-o", out, "--prefer", side, check_rc=0)
    restored = os.fsencode(tmp_path / f"restored-{side}")
    expected = os.fsencode(tmp_path / f"expected-{side}")
    for folder, layers in ((restored, [*chain, out]), (expected, chain)):
        os.mkdir(folder)
        run_cli("restore", *layers, folder, "-q", check_rc=0)
    return proc, restored, expected


def test_a_conflict_is_refused_naming_the_path_and_prefer_decides_it_both_ways(tmp_path):
    model = _model(tmp_path)
    _hosts(tmp_path, 1)
    with open(os.path.join(model, b"names/a-b"), "wb") as fh:   # host 1 chmodded it
        fh.write(b"the model's new a-b")
    os.unlink(os.path.join(model, b"Program Files/setuid"))    # not the host's: no conflict
    run_cli("diff", model, tmp_path / "base.img", tmp_path / "d1.img", "-o", tmp_path / "d2.img",
            "-q", check_rc=0)
    chain = [tmp_path / "base.img", tmp_path / "d1.img", tmp_path / "d2.img"]
    host_diff = tmp_path / "hosts" / "pc1.diff"
    proc = run_cli("rebase", host_diff, "--onto", *chain, "-o", tmp_path / "out.diff")
    assert proc.returncode == 20, proc.stderr
    assert b"conflict: names/a-b: both changed it" in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert not os.path.lexists(tmp_path / "out.diff")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".out.diff")]
    for side in (HOST, CHAIN):
        proc, restored, expected = _rebased(tmp_path, host_diff, chain, side)
        assert f"decided ({side}): names/a-b: both changed it".encode() in proc.stdout
        model_a_b = os.lstat(os.path.join(expected, b"names/a-b"))
        host_changes(expected, 1)
        if side == CHAIN:           # the model's file as it is, metadata and all
            with open(os.path.join(expected, b"names/a-b"), "wb") as fh:
                fh.write(b"the model's new a-b")
            os.chmod(os.path.join(expected, b"names/a-b"), model_a_b.st_mode & 0o7777)
            os.utime(os.path.join(expected, b"names/a-b"), ns=(0, model_a_b.st_mtime_ns))
        else:                       # the host's: d1's content, chmodded
            shutil.copy2(os.path.join(tmp_path, "pc1", "names", "a-b"),
                         os.path.join(expected, b"names/a-b"))
        os.utime(os.path.join(expected, b"names"), ns=(HOST_TIME, HOST_TIME + 10))
        assert_same_tree(snapshot(restored), snapshot(expected))


def test_a_folder_the_chain_removed_where_the_host_added_files_is_a_conflict(tmp_path):
    """The host adds a file under links/sub; the model deletes links. Refused; --prefer chain
    drops the host's file (nothing is left: no image), --prefer host keeps it with the folders
    it needs (from the host's tree) and nothing else the model deleted; content only the old
    chain has is read from it."""
    model = _model(tmp_path)
    machine = os.fsencode(tmp_path / "pc1")
    os.mkdir(machine)
    run_cli("restore", tmp_path / "base.img", tmp_path / "d1.img", machine, "-q", check_rc=0)
    with open(os.path.join(machine, b"links/sub/host-file"), "wb") as fh:
        fh.write(b"the host's")
    os.chmod(os.path.join(machine, b"times/before-1970"), 0o600)   # d1's content, chmodded
    (tmp_path / "hosts").mkdir()
    run_cli("diff", machine, tmp_path / "base.img", tmp_path / "d1.img",
            "-o", tmp_path / "hosts/pc1.diff", "-q", check_rc=0)
    shutil.rmtree(os.path.join(model, b"links"))
    shutil.rmtree(os.path.join(model, b"times"))
    run_cli("diff", model, tmp_path / "base.img", tmp_path / "d1.img", "-o", tmp_path / "d2.img",
            "-q", check_rc=0)
    chain = [tmp_path / "base.img", tmp_path / "d1.img", tmp_path / "d2.img"]
    proc = run_cli("rebase", tmp_path / "hosts/pc1.diff", "--onto", *chain, "-o", tmp_path / "x")
    assert proc.returncode == 20
    assert b"conflict: links/sub: the chain removed it, the host changed it" in proc.stderr
    assert b"conflict: times/before-1970: the chain removed it, the host changed it" in proc.stderr
    # the chain's side leaves nothing of the host's: no image (exit 1)
    proc = run_cli("rebase", tmp_path / "hosts/pc1.diff", "--onto", *chain, "-o",
                   tmp_path / "chain.diff", "--prefer", CHAIN, check_rc=1)
    assert b"decided (chain): links/sub: the chain removed it" in proc.stdout
    assert not os.path.lexists(tmp_path / "chain.diff")
    _, restored, expected = _rebased(tmp_path, tmp_path / "hosts/pc1.diff", chain, HOST)
    root_mtime = os.lstat(expected).st_mtime_ns      # the chain's: the host kept it
    for folder in (b"links", b"links/sub", b"times"):
        os.mkdir(os.path.join(expected, folder))
    for rel in (b"links/sub/host-file", b"times/before-1970"):
        shutil.copy2(os.path.join(machine, rel), os.path.join(expected, rel))
    for folder in (b"links/sub", b"links", b"times"):
        st_ = os.lstat(os.path.join(machine, folder))
        os.chown(os.path.join(expected, folder), st_.st_uid, st_.st_gid)
        os.chmod(os.path.join(expected, folder), st_.st_mode & 0o7777)
        os.utime(os.path.join(expected, folder), ns=(0, st_.st_mtime_ns))
    os.utime(expected, ns=(0, root_mtime))
    assert_same_tree(snapshot(restored), snapshot(expected))


def test_rebase_refuses_what_it_cannot_carry(tmp_path):
    model = _model(tmp_path)
    _hosts(tmp_path, 1)
    host_diff = tmp_path / "hosts" / "pc1.diff"
    # a chain without the layer the host diff was made on
    line = assert_one_line_error(run_cli("rebase", host_diff, "--onto", tmp_path / "base.img",
                                         "-o", tmp_path / "x"), 9)
    assert "no layer given makes" in line
    # a full image given as the host diff
    assert_one_line_error(run_cli("rebase", tmp_path / "base.img", "--onto",
                                  tmp_path / "base.img", "-o", tmp_path / "x"), 9)
    # nothing of the host's left: the chain made the same changes (exit 1, no image)
    host_changes(model, 1)
    run_cli("diff", model, tmp_path / "base.img", tmp_path / "d1.img", "-o", tmp_path / "d2.img",
            "-q", check_rc=0)
    proc = run_cli("rebase", host_diff, "--onto", tmp_path / "base.img", tmp_path / "d1.img",
                   tmp_path / "d2.img", "-o", tmp_path / "x")
    assert proc.returncode == 1 and b"no image made" in proc.stdout
    assert not os.path.lexists(tmp_path / "x")
    # a bad host name
    assert run_cli("restore", tmp_path / "base.img", tmp_path / "t", "--host-layers",
                   tmp_path / "hosts", "--host", "../etc").returncode == 2


def _prefixed(spec, prefix: bytes):
    out = []
    for item in spec:
        item = dict(item)
        item["path"] = prefix + b"/" + item["path"] if item["path"] else prefix
        if "to" in item:
            item["to"] = prefix + b"/" + item["to"]
        out.append(item)
    return out


@given(host_part=trees(), chain_part=trees(), host_edits=EDITS, chain_edits=EDITS)
def test_disjoint_random_changes_merge_exactly(tmp_path_factory, host_part, chain_part,
                                               host_edits, chain_edits):
    """A random tree; the host edits its h/ part at random, the model its c/ part: the
    rebased host layer on the model's new diff gives the model's tree with the host's h/."""
    work = tmp_path_factory.mktemp("rb")
    spec = [{"path": b"", "kind": "dir", "mtime_ns": 1}]
    spec += _prefixed(host_part, b"h") + _prefixed(chain_part, b"c")
    base = build(work / "base-tree", spec)
    opts = PackOptions(fmt="dir", checksum=True)
    create(base, work / "base", opts)
    host = _copy(base, work / "host")
    edit(os.path.join(host, b"h"), host_edits)
    model = _copy(base, work / "model")
    edit(os.path.join(model, b"c"), chain_edits)
    for root in (host, model):
        os.utime(root, ns=(1, 1))
    if diff(host, [work / "base"], work / "host.diff", opts) is None:
        return
    if diff(model, [work / "base"], work / "d1", opts) is None:
        return
    from diffimg.hostlayers.rebase import rebase
    host_image, base_image = Image(work / "host.diff"), Image(work / "base")
    # what the host changed, from its delta, is what its two trees say
    assert list(host_sides(host_image.delta(), base_image.entries)) == list(
        sides_of_trees(base_image.entries(), host_image.entries()))
    some = {e.path for e in list(base_image.entries())[::2]}     # as --prefer host asks them
    assert list(host_sides(host_image.delta(), base_image.entries, some)) == list(
        sides_of_trees(base_image.entries(), host_image.entries(), some))
    result = rebase(work / "host.diff", [work / "base", work / "d1"], work / "rebased", opts)
    assert result.decided == [] and result.info is not None
    restored = work / "restored"
    restored.mkdir()
    from diffimg.restore.restore import restore
    restore([work / "base", work / "d1", work / "rebased"], restored, checksum=True)
    expected = _copy(model, work / "expected")
    shutil.rmtree(os.path.join(expected, b"h"))
    _copy(os.path.join(host, b"h"), os.path.join(expected, b"h"))
    os.utime(expected, ns=(1, 1))
    assert_same_tree(snapshot(restored), snapshot(expected))


def test_rebase_reads_content_only_beneath_the_containers(tmp_path):
    """A host diff whose container holds a symlinked folder where its stored file should be
    (x -> /etc, digests of /etc/shadow recorded): rebase refuses it (exit 8, nothing made),
    never copying a file from outside the image; verify names it."""
    _model(tmp_path)
    machine = tmp_path / "pc1"
    machine.mkdir()
    run_cli("restore", tmp_path / "base.img", tmp_path / "d1.img", machine, "-q", check_rc=0)
    (machine / "x").mkdir()
    shutil.copy(b"/etc/shadow", os.fsencode(machine / "x" / "shadow"))
    run_cli("diff", machine, tmp_path / "base.img", tmp_path / "d1.img", "-o",
            tmp_path / "pc1.diff", "--format", "dir", "-q", check_rc=0)
    shutil.rmtree(tmp_path / "pc1.diff" / "tree" / "x")
    (tmp_path / "pc1.diff" / "tree" / "x").symlink_to("/etc")
    chain = [tmp_path / "base.img", tmp_path / "d1.img"]
    line = assert_one_line_error(run_cli("rebase", tmp_path / "pc1.diff", "--onto", *chain,
                                         "-o", tmp_path / "out.diff", "--format", "dir"), 8)
    assert "x/shadow" in line
    assert not os.path.lexists(tmp_path / "out.diff")
    proc = run_cli("verify", *chain, tmp_path / "pc1.diff", check_rc=1)
    assert b"x/shadow" in proc.stdout + proc.stderr


def test_host_layers_that_cannot_be_used_are_errors_and_none_goes_unseen(tmp_path):
    _model(tmp_path)
    chain = [tmp_path / "base.img", tmp_path / "d1.img"]
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    (hosts / "pc1.diff").write_bytes(b"not an image")
    assert_one_line_error(run_cli("restore", *chain, target, "--host-layers", hosts, "--host",
                                  "pc1", "-q"), 8)
    assert os.listdir(target) == []
    (hosts / "pc1.diff").unlink()
    (hosts / "PC1.diff").symlink_to(tmp_path / "base.img")
    line = assert_one_line_error(run_cli("restore", *chain, target, "--host-layers", hosts,
                                         "--host", "pc1", "-q"), 8)
    assert "full image" in line
    (hosts / "Pc1.diff").write_bytes(b"")
    line = assert_one_line_error(run_cli("restore", *chain, target, "--host-layers", hosts,
                                         "--host", "pc1", "-q"), 10)
    assert "match" in line
    assert_one_line_error(run_cli("restore", *chain, target, "--host-layers", tmp_path / "none",
                                  "--host", "pc1", "-q"), 3)
    # no layer for this machine: said even with -q, and in --json
    proc = run_cli("restore", *chain, target, "--host-layers", hosts, "--host", "pc2", "-q",
                   check_rc=0)
    assert b"no host layer of pc2" in proc.stderr
    proc = run_cli("restore", *chain, target, "--host-layers", hosts, "--host", "pc2", "--json",
                   check_rc=0)
    assert b"no host layer of pc2" in proc.stderr
    import json
    assert json.loads(proc.stdout)["host_layer"] is None
