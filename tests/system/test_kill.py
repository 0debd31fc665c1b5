"""Issue 9: kill -9 at random moments of each command leaves nothing behind that lasts: no
process, mount, loop device or temporary file survives the next run of diffimg. Real squashfs
images, the real CLI."""

import os
import random
import uuid

import pytest
from conftest import run_cli
from leftovers import assert_nothing_left, killed
from snapshot import assert_same_tree, snapshot


def _tree(root, files, seed):
    rng = random.Random(seed)
    for n in range(files):
        folder = os.path.join(root, f"d{n % 12}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"f{n}"), "wb") as f:
            f.write(rng.randbytes(rng.randint(0, 120_000)))
    return root


@pytest.mark.root
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_any_moment_leaves_nothing_that_lasts(tmp_path, seed):
    rng = random.Random(seed)
    tree = _tree(str(tmp_path / "tree"), 1500, seed)
    images = tmp_path / "images"
    images.mkdir()
    base, diff = str(images / "base.img"), str(images / "d1.img")
    mark = uuid.uuid4().hex.encode()

    # create, killed; then whole
    pid = killed(["create", tree, base, "-q"], rng.uniform(0.2, 2.5), mark)
    if os.path.exists(base):
        os.unlink(base)                  # it had finished: make it again after the kill below
    run_cli("create", tree, base, "-q", check_rc=0)
    assert_nothing_left(pid, mark, [images], {"base.img"})

    # diff, killed; then whole
    for n in range(0, 1500, 50):
        with open(os.path.join(tree, f"d{n % 12}", f"f{n}"), "ab") as f:
            f.write(b"changed")
    pid = killed(["diff", tree, base, "-o", diff, "-q"], rng.uniform(0.2, 2.5), mark)
    if os.path.exists(diff):
        os.unlink(diff)
    run_cli("diff", tree, base, "-o", diff, "-q", check_rc=0)
    assert_nothing_left(pid, mark, [images], {"base.img", "d1.img"})

    # restore, killed; the next restore converges
    target = tmp_path / "target"
    target.mkdir()
    pid = killed(["restore", base, diff, str(target), "-q"], rng.uniform(0.2, 2.5), mark)
    run_cli("restore", base, diff, target, "-q", check_rc=0)
    assert_nothing_left(pid, mark, [images], {"base.img", "d1.img"})
    assert_same_tree(snapshot(target), snapshot(tree))

    # verify and compare (they mount the images and hash in workers), killed
    for args in (["verify", base, diff], ["compare", base, diff, str(target)]):
        pid = killed(args, rng.uniform(0.1, 1.0), mark)
        run_cli("info", base, check_rc=0)
        assert_nothing_left(pid, mark, [images], {"base.img", "d1.img"})

    # apply, killed onto a restored base; apply --force finishes it
    second = tmp_path / "second"
    second.mkdir()
    run_cli("restore", base, second, "-q", check_rc=0)
    pid = killed(["apply", diff, str(second), "-q"], rng.uniform(0.1, 1.5), mark)
    run_cli("apply", "--force", diff, second, "-q", check_rc=0)
    assert_nothing_left(pid, mark, [images], {"base.img", "d1.img"})
    assert_same_tree(snapshot(second), snapshot(tree))


@pytest.mark.root
def test_no_temporary_name_beside_the_output_can_be_planted(tmp_path):
    """The second review's finding: in a folder others can write, symlinks planted at the
    temporary names beside the output (.NAME.tmp-PID, ..NAME.manifest-PID.tmp-PID) made root
    write the image and the manifest through them. Run as PID 1 of a new PID namespace, so the
    names the old code would use are known: the files they point at stay untouched."""
    tree = _tree(str(tmp_path / "tree"), 20, 1)
    drop = tmp_path / "drop"
    drop.mkdir()
    os.chmod(drop, 0o1777)
    victims = []
    for n, name in enumerate([".out.img.tmp-1", "..out.img.manifest-1.tmp-1"]):
        victim = tmp_path / f"victim{n}"
        victim.write_bytes(b"root's file")
        os.symlink(victim, drop / name)
        victims.append(victim)
    run_cli("create", tree, drop / "out.img", "-q", check_rc=0,
            prefix=["unshare", "--fork", "--pid", "--mount-proc"])
    assert [v.read_bytes() for v in victims] == [b"root's file"] * 2
    assert run_cli("verify", drop / "out.img").returncode == 0


def test_long_output_names_still_fit(tmp_path):
    """Names up to NAME_MAX work: the temporary names beside them are cut short (the third
    review found that 230-242-byte names failed once random parts were added)."""
    tree = _tree(str(tmp_path / "tree"), 5, 2)
    name = "m" * 235
    run_cli("scan", tree, "-o", tmp_path / name, "-q", check_rc=0)
    run_cli("create", tree, tmp_path / ("i" * 240), "--format", "dir", "-q", check_rc=0)
    assert sorted(os.listdir(tmp_path)) == sorted(["tree", name, "i" * 240])
