"""The compiled folder reader (diffimg/scan/_folder.c) against the Python one on the every-kind
tree (built as root) and what stresses a reader beyond it: byte-identical manifests through
either, and through the path-based xattr calls that kernels before 6.13 need."""

import os

import pytest
from treebuild import build, every_kind_spec

from diffimg.scan import scanner
from diffimg.tree.manifest import write_manifest


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
