"""Progress: on a terminal (a real pseudo-terminal) one self-rewriting line with totals,
percent, rate and time left; with --progress, plain lines on a pipe; with -q, nothing but
errors."""

import os
import pty
import subprocess
import sys

import pytest
from conftest import run_cli

pytestmark = pytest.mark.root


def _tree(root, files=40):
    os.makedirs(root)
    for n in range(files):
        with open(os.path.join(root, f"f{n}"), "wb") as f:
            f.write(os.urandom(50_000 + n))
    return root


def _on_a_terminal(*args) -> str:
    """What the CLI writes to its stderr when that is a terminal (stdout and stdin are not)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "diffimg", *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:                  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait() == 0, out
    return out.decode(errors="replace")


def test_progress_on_a_terminal_shows_percent_rate_and_time_left(tmp_path):
    tree = _tree(tmp_path / "t")
    shown = _on_a_terminal("create", tree, tmp_path / "img")
    assert "diffimg: scanning" in shown and "packing" in shown
    assert "/40 files" in shown and "%)" in shown and "/s" in shown
    target = tmp_path / "target"
    target.mkdir()
    shown = _on_a_terminal("restore", tmp_path / "img", target)
    assert "diffimg: writing files (40 files, " in shown
    assert "writing: " in shown and "/40 files" in shown and "%)" in shown
    assert "\r\x1b[K" in shown                # the line rewrites itself


def test_progress_as_plain_lines_on_a_pipe_and_nothing_when_quiet(tmp_path):
    tree = _tree(tmp_path / "t")
    proc = run_cli("create", tree, tmp_path / "img", "--progress", check_rc=0)
    lines = proc.stderr.decode().splitlines()
    assert "\r" not in proc.stderr.decode() and "\x1b" not in proc.stderr.decode()
    assert any(line.startswith("diffimg: packing: ") and "/40 files" in line for line in lines), lines
    proc = run_cli("create", tree, tmp_path / "img2", check_rc=0)
    assert proc.stderr == b""                # not a terminal, no --progress: no progress
    target = tmp_path / "target"
    target.mkdir()
    proc = run_cli("restore", tmp_path / "img", target, "-q", "--progress", check_rc=0)
    assert proc.stderr == b"" and proc.stdout == b""


def test_verify_shows_its_progress_against_what_the_image_stores(tmp_path):
    tree = _tree(tmp_path / "t")
    run_cli("create", tree, tmp_path / "img", "-q", check_rc=0)
    shown = _on_a_terminal("verify", tmp_path / "img")
    assert "diffimg: checking the stored content of" in shown and "(40 files, " in shown
    assert "/40 files" in shown and "%)" in shown and "all good" in shown
    proc = run_cli("verify", tmp_path / "img", "--progress", check_rc=0)
    assert b"checking: " in proc.stderr and b"\r" not in proc.stderr
