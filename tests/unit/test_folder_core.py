"""The compiled folder reader (diffimg/scan/_folder.c, built by pip install): it is the one the
scanner uses, names what it cannot read by its errno, never reads an xattr past its buffer,
and walks a deep tree with a few fds. (Its manifests against the Python reader's on the
every-kind tree: system/test_folder_readers_agree.py.)"""

import os

import pytest

from diffimg.scan import scanner


def test_the_compiled_core_is_built_and_used():
    from diffimg.scan import _folder
    assert scanner.read_folder is _folder.read_folder
    assert scanner.ReadAhead is _folder.ReadAhead


def test_a_name_that_vanishes_or_cannot_be_read_is_reported_as_its_errno(tmp_path):
    from diffimg.scan import _folder
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "kept").write_bytes(b"k")
    fd = os.open(folder, os.O_RDONLY)
    try:
        listing = _folder.read_folder(fd, os.fsencode(folder))
    finally:
        os.close(fd)
    assert [item[0] for item in listing] == [b"kept"]
    name, st, xattrs, target, error = listing[0]
    assert (st.st_size, xattrs, target, error) == (1, None, None, 0)
    with pytest.raises(OSError):
        _folder.read_folder(-1, b"/nowhere")


def test_an_xattr_that_grows_while_read_is_never_read_past_its_buffer(tmp_path):
    """A value that goes from empty to 3000 bytes between two calls: asking its size first (0) and
    then reading into a buffer of that size read heap memory past it (a hostile review saw
    garbage in 6% of reads). Every read must give one of the two values the file had."""
    import subprocess
    import sys

    from diffimg.scan import _folder
    victim = tmp_path / "f"
    victim.write_bytes(b"")
    big = b"S" * 3000                           # what ext4 holds in one block
    flipper = subprocess.Popen([sys.executable, "-c", (
        "import os, sys\n"
        "while True:\n"
        "    os.setxattr(sys.argv[1], b'user.e', b'')\n"
        "    os.setxattr(sys.argv[1], b'user.e', b'S' * 3000)\n"), str(victim)])
    seen = set()
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(20000):
            os.lseek(fd, 0, os.SEEK_SET)
            (item,) = _folder.read_folder(fd, os.fsencode(tmp_path))
            value = (item[2] or {}).get(b"user.e", b"")
            assert value in (b"", big), (len(value), value[:32])
            seen.add(len(value))
    finally:
        flipper.kill()
        flipper.wait()
        os.close(fd)
    assert seen == {0, len(big)}


def test_a_deep_tree_is_walked_with_a_few_fds(tmp_path):
    """Each folder level kept an fd: with a soft limit of 128, a tree 300 deep (a comb: two
    folders a level, so every level still has one to go back to) failed; now the walk keeps at
    most KEEP_FDS below the root and opens the rest again by name."""
    import subprocess
    import sys
    fd = os.open(tmp_path, os.O_RDONLY)
    os.mkdir("tree", dir_fd=fd)
    cur = os.open("tree", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    for level in range(300):
        os.mkdir(b"a", dir_fd=cur)
        os.mkdir(b"b", dir_fd=cur)              # walked after a's whole subtree
        leaf = os.open(b"b/file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=cur)
        os.write(leaf, b"%d" % level)
        os.close(leaf)
        child = os.open(b"a", os.O_RDONLY, dir_fd=cur)
        os.close(cur)
        cur = child
    os.close(cur)
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))\n"
        "from diffimg.scan import scanner\n"
        "n = sum(1 for _ in scanner.scan(sys.argv[1], workers=1))\n"
        "print(n)\n")
    for env in ({}, {"DIFFIMG_PURE_PYTHON": "1"}):
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tree")],
                              capture_output=True, env={**os.environ, **env})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == b"%d" % (1 + 300 * 3), env
