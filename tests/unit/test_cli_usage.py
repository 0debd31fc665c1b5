"""Usage errors, through click's test runner: the command line is refused with exit 2 and one
message naming the problem, before anything is read or written."""

import signal

import pytest
from click.testing import CliRunner

_ours = signal.getsignal(signal.SIGINT)
from diffimg.cli import cli  # noqa: E402  (its import sets a SIGINT handler for the CLI's own start)

signal.signal(signal.SIGINT, _ours)

CASES = [
    (["frobnicate"], "No such command 'frobnicate'"),
    (["restore"], "Missing argument 'PATHS...'"),
    (["restore", "only-a-target"], "give the image(s), then the target folder"),
    (["restore", "--host", "a/b", "img", "target"], "a host name holds letters, digits"),
    (["apply", "some.diff"], "Missing argument 'TARGET'"),
    (["create", "--level", "0", "tree", "out.img"], "Invalid value for '--level'"),
    (["create", "--format", "zip", "tree", "out.img"], "Invalid value for '--format'"),
    (["mount", "only-a-mountpoint"], "mount: give IMAGE [DIFF...] MOUNTPOINT"),
    (["status"], "Missing argument 'TARGET'"),
    (["compare", "a"], "give two things to compare"),
    (["seed", "--via", "pigeon", "base.img"], "Invalid value for '--via'"),
    (["rebase", "host.diff", "-o", "out.diff"], "Missing option '--onto'"),
    (["scan", "--bogus", "tree"], "No such option '--bogus'"),
]


@pytest.mark.parametrize("args,said", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_bad_command_line_is_a_usage_error(args, said, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # a command that went on would act here
    result = CliRunner().invoke(cli, args)
    assert (result.exit_code, type(result.exception)) == (2, SystemExit), result.output
    assert said in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []        # nothing made


def test_paths_after_a_non_image_are_a_usage_error(tmp_path):
    """extract and cat take the leading images, then paths: no image first is a usage error."""
    (tmp_path / "not-an-image").write_bytes(b"plain text\n")
    for args in (["extract", str(tmp_path / "not-an-image"), "etc", "-o", str(tmp_path / "out")],
                 ["cat", str(tmp_path / "not-an-image"), "etc/hostname"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "the first argument must be an image" in result.output
    assert not (tmp_path / "out").exists()


def test_a_peer_that_is_not_host_port_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["fetch", "--cache", str(tmp_path), "--via", "torrent",
                                      "--peer", "no-port-here", "http://127.0.0.1:9/base.img"])
    assert result.exit_code == 2, result.output
    assert "no-port-here: not HOST:PORT" in result.output
    assert list(tmp_path.iterdir()) == []
