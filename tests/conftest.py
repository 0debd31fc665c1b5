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
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (devices, chown, trusted xattrs, mounts)")


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
    """A real tree with every entry kind and attribute (needs root for devices and chown)."""
    from treebuild import build, every_kind_spec
    if not IS_ROOT:
        pytest.skip("needs root to build devices and foreign owners")
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
