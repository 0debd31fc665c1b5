"""diffimg mount reads a large tree with little TMPDIR room (issue 24, item 14), and a whole-disk
file or device given where a partition is taken says how to pick a partition (item 17b)."""

import contextlib
import errno
import os
import shlex
import subprocess

import pytest
from conftest import assert_one_line_error, needs_root, run_cli


def _diffimg_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if "diffimg" in line]


@contextlib.contextmanager
def _small_tmpdir(path, size: str):
    """A tmpfs of size at path, unmounted at the end."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@contextlib.contextmanager
def _mounted_chain(image, point, tmpdir):
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    run_cli("mount", image, point, check_rc=0, timeout=120, env=env)
    try:
        yield point
    finally:
        run_cli("umount", point, check_rc=0, timeout=120)


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@needs_root
def test_mount_reads_a_tree_larger_than_tmpdir_once_and_says_when_there_is_no_room(tmp_path):
    """Each file's private copy lives while it is open (and in a bounded cache after): reading
    a 24 MiB tree once through a mount whose TMPDIR is a 4 MiB tmpfs gives every file right;
    a file that cannot fit at all is ENOSPC (no room), never EIO (damaged), and the others
    still read."""
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    files = {}
    for n in range(48):
        rel = f"d/f{n:02d}" if n % 2 else f"f{n:02d}"
        files[rel] = os.urandom(512 * 1024)
        (tree / rel).write_bytes(files[rel])
    files["big"] = os.urandom(6 << 20)                   # more than the whole TMPDIR
    (tree / "big").write_bytes(files["big"])
    run_cli("create", tree, tmp_path / "img", "--format", "dir", "-q", check_rc=0, timeout=300)
    point = tmp_path / "point"
    point.mkdir()
    before = _diffimg_mounts()
    with _small_tmpdir(tmp_path / "small", "4m") as small, \
            _mounted_chain(tmp_path / "img", point, small):
        for rel, data in sorted(files.items()):
            if rel == "big":
                continue
            assert _read(point / rel) == data, rel
        # find | xargs cat, as a reader of the whole tree does (several files per cat)
        done = subprocess.run(f"cd {shlex.quote(str(point))} && find . -type f ! -name big "
                              "-print0 | sort -z | xargs -0 cat", shell=True,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"".join(files[r] for r in sorted(
            os.path.relpath(os.path.join(d, n), point)
            for d, _, names in os.walk(point) for n in names if n != "big"))
        with pytest.raises(OSError) as raised:
            _read(point / "big")
        assert raised.value.errno == errno.ENOSPC
        # several files held open at once still fit (about the files open at once)
        held = [open(point / f"f{n:02d}", "rb") for n in range(0, 8, 2)]  # noqa: SIM115
        try:
            for f, n in zip(held, range(0, 8, 2)):
                assert f.read() == files[f"f{n:02d}"]
        finally:
            for f in held:
                f.close()
        assert _read(point / "d" / "f47") == files["d/f47"]
    assert _diffimg_mounts() == before
