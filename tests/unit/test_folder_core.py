"""The compiled folder reader (diffimg/_folder.c, built by pip install) against the Python one:
the same tree gives byte-identical manifests through either, and through the path-based xattr
calls that kernels before 6.13 need."""

import os

import pytest
from treebuild import build, every_kind_spec

from diffimg.scan import scanner
from diffimg.tree.manifest import write_manifest


def test_the_compiled_core_is_built_and_used():
    from diffimg.scan import _folder
    assert scanner.read_folder is _folder.read_folder
    assert scanner.ReadAhead is _folder.ReadAhead


def _awkward_extras(tree):
    """What stresses the reader beyond the every-kind tree: a big xattr value, many xattrs, a
    folder whose names take several getdents calls, and folders past the scanner's LONG_PATH
    (reached through /proc/self/fd)."""
    big = tree / "big-xattr"
    big.write_bytes(b"b")
    os.setxattr(big, b"user.big", os.urandom(3000))
    many = tree / "many-xattrs"
    many.write_bytes(b"m")
    for i in range(40):
        os.setxattr(many, b"user.x%02d" % (39 - i), b"v" * i)
    crowd = tree / "crowd"
    crowd.mkdir()
    for i in range(3000):
        (crowd / f"name-{i:05d}-{'x' * 40}").write_bytes(b"")
    fd = os.open(tree, os.O_RDONLY)
    try:
        for level in range(22):                     # 22 x 201 bytes: past LONG_PATH (3800)
            name = b"%03d" % level + b"d" * 198
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open(b"deep-file", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
        os.write(leaf, b"deep")
        os.setxattr(leaf, b"user.deep", b"yes")
        os.close(leaf)
        os.symlink(b"../deep-target", b"deep-link", dir_fd=fd)
    finally:
        os.close(fd)


def _manifests(tmp_path, monkeypatch, tree, **scan_options):
    """The manifest of tree written through each reader: bytes by reader's name."""
    from diffimg.scan import _folder
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    readers = {   # name: (per-folder reader, read-ahead walk, xattrs by path)
        "read ahead": (_folder.read_folder, _folder.ReadAhead, False),
        "compiled, folder by folder": (_folder.read_folder, None, False),
        "python": (scanner._read_folder_in_python, None, False),
        "read ahead, xattrs by path": (_folder.read_folder, _folder.ReadAhead, True),
    }
    made = {}
    for name, (reader, ahead, by_path) in readers.items():
        monkeypatch.setattr(scanner, "read_folder", reader)
        monkeypatch.setattr(scanner, "ReadAhead", ahead)
        path = tmp_path / (name.replace(" ", "-").replace(",", "") + ".dmf")
        _folder.xattrs_by_path(by_path)
        try:
            write_manifest(path, scanner.scan(tree, workers=1, **scan_options))
        finally:
            _folder.xattrs_by_path(False)
        made[name] = path.read_bytes()
    return made


@pytest.mark.root
def test_compiled_and_python_readers_give_byte_identical_manifests(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    build(tree, every_kind_spec())
    _awkward_extras(tree)
    made = _manifests(tmp_path, monkeypatch, tree)
    assert len(set(made.values())) == 1, "the readers disagree"
    entries = list(scanner.scan(tree))
    assert len(entries) > 3000 + len(every_kind_spec())
    deep = [e for e in entries if e.path.endswith(b"/deep-file")]
    assert len(deep) == 1 and len(deep[0].path) > scanner.LONG_PATH
    assert deep[0].xattrs == {b"user.deep": b"yes"}
    assert [e.xattrs for e in entries if e.path == b"many-xattrs"][0] == {
        b"user.x%02d" % i: b"v" * (39 - i) for i in range(40)}


@pytest.mark.root
def test_exclusions_and_kept_paths_agree_with_the_read_ahead(tmp_path, monkeypatch):
    """The read-ahead walk reads folders left out by pattern (it does not know the patterns)
    and the scan lets their listings go; kept paths it does not read at all."""
    tree = tmp_path / "tree"
    build(tree, every_kind_spec())
    _awkward_extras(tree)
    made = _manifests(tmp_path, monkeypatch, tree, excludes=["crowd", "*.exe", "/links/sub"],
                      leave_out={b"names/a", b"dev"})
    assert len(set(made.values())) == 1, "the readers disagree"
    paths = [e.path for e in scanner.scan(tree, excludes=["crowd", "*.exe", "/links/sub"],
                                           leave_out={b"names/a", b"dev"})]
    assert b"names" in paths and b"links" in paths and b"xattrs" in paths
    assert not [p for p in paths if p.startswith((b"crowd", b"links/sub", b"names/a/", b"dev"))
                or p.endswith(b".exe") or p == b"names/a"]


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
