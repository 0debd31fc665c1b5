import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# Property tests run 25 examples each in make test; `pytest --hypothesis-profile=stress` runs 500
_QUIET_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("default", max_examples=25, deadline=None, suppress_health_check=_QUIET_CHECKS)
settings.register_profile("stress", max_examples=500, deadline=None, suppress_health_check=_QUIET_CHECKS)
settings.load_profile("default")

IS_ROOT = os.geteuid() == 0
# fixtures whose tests need root whatever they do: the tree they build holds devices and
# foreign owners
ROOT_FIXTURES = {"rich_tree"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The root boundary (pyproject.toml's `root` marker): a test marked root, or one using a
    fixture of ROOT_FIXTURES, is skipped when not run as root, saying why; `-m "not root"`
    leaves them out. Mark one with @pytest.mark.root("what needs it"), or a whole module with
    pytestmark = pytest.mark.root."""
    for item in items:
        builds_rich_tree = bool(ROOT_FIXTURES & set(item.fixturenames))
        if builds_rich_tree and item.get_closest_marker("root") is None:
            item.add_marker(pytest.mark.root)
        marker = item.get_closest_marker("root")
        if marker is not None and not IS_ROOT:
            why = marker.args[0] if marker.args else (
                "it builds a tree of devices and foreign owners" if builds_rich_tree
                else "mounts, loop devices, devices, chown, trusted xattrs")
            item.add_marker(pytest.mark.skip(reason=f"needs root ({why})"))


def run_cli(*args, check_rc=None, prefix=(), **kw):
    """Run the real CLI in a subprocess; return CompletedProcess with bytes stdout/stderr."""
    proc = subprocess.run([*prefix, sys.executable, "-m", "diffimg", *args], capture_output=True, **kw)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def assert_one_line_error(proc, rc):
    """An expected error: the documented exit code, one line on stderr, no traceback."""
    assert proc.returncode == rc, (proc.returncode, proc.stderr)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffimg: error: "), lines
    assert b"Traceback" not in proc.stderr
    return lines[0]


def machine_at_base(tmp_path):
    """A new folder tmp_path/target restored from the image tmp_path/base: a machine at the
    base, for apply."""
    target = tmp_path / "target"
    target.mkdir()
    run_cli("restore", "-q", tmp_path / "base", target, check_rc=0)
    return target


@pytest.fixture
def www(tmp_path):
    """nginx serving tmp_path/www on a free loopback port (webserver.py), for the test."""
    from webserver import Nginx
    root = tmp_path / "www"
    root.mkdir()
    server = Nginx(root, tmp_path / "nginx").start()
    yield server
    server.stop()


@pytest.fixture
def rich_tree(tmp_path):
    """A real tree with every entry kind and attribute (needs root for devices and chown: a test
    using it is marked root)."""
    from treebuild import build, every_kind_spec
    return build(tmp_path / "tree", every_kind_spec())


def rewrite_delta(image, changes, scratch):
    """Give the dir-format image (an Image) the delta changes instead of its own, keeping its
    manifest and info: a crafted or inconsistent diff. scratch: a folder for the manifest."""
    from diffimg.image.format import append_metadata
    manifest = os.path.join(scratch, "manifest-of-rewritten-image")
    start, length, _ = image.blobs["manifest"]
    with open(image.meta_path, "rb") as f:
        f.seek(start)
        data = f.read(length)
    with open(manifest, "wb") as f:
        f.write(data)
    with open(image.meta_path, "wb") as f:
        append_metadata(f, image.container, manifest, changes, image.info)
