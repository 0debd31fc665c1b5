"""Issue 24: images on a web server, within bounds. verify URL checks what a local verify
checks, whatever the tree's size; a restore from a URL keeps few files open however many it
fetches; a server that trickles its answer is given up within the promised time; a ranges blob
cannot make the work outgrow what the container holds. Real images, a real nginx or an
in-process server on 127.0.0.1, the real CLI."""

import os
import random

import pytest
from conftest import needs_root, run_cli
from test_http import _with_ranges
from webserver import Nginx

from diffimg.image import Image
from diffimg.remote import TAIL

pytestmark = needs_root


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = Nginx(root, tmp_path / "nginx").start()
    yield server
    server.stop()


def _tree(root, count, sizes, seed=24):
    """count files of random content (sizes: the choices), in 50 folders, with long random
    names (a ranges blob of some length)."""
    rng = random.Random(seed)
    for n in range(count):
        folder = os.path.join(root, f"d{n % 50}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, rng.randbytes(12).hex()), "wb") as f:
            f.write(rng.randbytes(rng.choice(sizes)))
    return root


# item 7: verify URL

def test_verify_of_a_url_whose_ranges_blob_lies_before_the_first_request(tmp_path, www):
    """A ranges blob longer than what the first request of the image's end brings was taken
    for corrupt by verify URL (its digest checked before it was fetched)."""
    tree = _tree(tmp_path / "tree", 4000, range(1, 300))
    image = tmp_path / "www/base.img"
    run_cli("create", tree, image, "-q", check_rc=0)
    start = Image(image).blobs["ranges"][0]
    assert start < image.stat().st_size - TAIL          # (what made it fail)
    run_cli("verify", image, check_rc=0)
    proc = run_cli("verify", f"{www.url}/base.img")
    assert proc.returncode == 0, proc
    assert b"all good" in proc.stderr


def test_verify_of_a_url_checks_the_ranges_blob_against_the_container(tmp_path, www):
    """A blob that also locates a file the container does not hold: every stored file still
    checks out, but the blob is not the container's (spec/image.md): verify URL says so, as a
    local verify does."""
    tree = _tree(tmp_path / "tree", 30, (100, 5000, 200_000))
    image = tmp_path / "base.img"
    run_cli("create", tree, image, "-q", check_rc=0)

    def extra(items):
        items.append([b"not-in-the-container", *items[-1][1:]])
        return items
    _with_ranges(image, tmp_path / "www/extra.img", extra)
    proc = run_cli("verify", tmp_path / "www/extra.img")
    assert proc.returncode == 1 and b"does not match its container" in proc.stdout, proc
    proc = run_cli("verify", f"{www.url}/extra.img")
    assert proc.returncode == 1 and b"does not match its container" in proc.stdout, proc
    os.link(image, tmp_path / "www/base.img")
    run_cli("verify", f"{www.url}/base.img", check_rc=0)
