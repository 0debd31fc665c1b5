"""compare finds every single change, and nothing where there is none."""

import json
import os
import shutil
import subprocess

import pytest
from conftest import run_cli
from treebuild import BAD_UTF8

from diffimg.scan.scanner import scan
from diffimg.tree.manifest import write_manifest


def _keep_times(path, change):
    """Apply change(path) and put path's mtime back, so only the change remains."""
    st = os.lstat(path)
    change(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _rewrite_same_size(path):
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)[0]
        f.seek(100)
        f.write(bytes([byte ^ 1]))


def _retarget(path):
    os.unlink(path)
    os.symlink(b"../Program Files/setuid", path)


def _break_hardlink(path):
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def _file_to_folder(path):
    os.unlink(path)
    os.mkdir(path)


def _rename(old, new):
    def change(root):
        os.rename(os.path.join(root, old), os.path.join(root, new))
    return change


# (what changes, path it touches, change(abs path), the field compare must report)
CHANGES = [
    ("one byte, same size and time", b"Program Files/app.exe",
     lambda p: _keep_times(p, _rewrite_same_size), "content"),
    ("a mode bit", b"Program Files/setgid", lambda p: os.chmod(p, 0o2751), "mode"),
    ("the owner", b"xattrs", lambda p: _keep_times(p, lambda q: os.chown(q, 7, -1)), "uid"),
    ("the group", b"xattrs", lambda p: _keep_times(p, lambda q: os.chown(q, -1, 7)), "gid"),
    ("one nanosecond of mtime", b"times/after-2038",
     lambda p: os.utime(p, ns=(0, os.lstat(p).st_mtime_ns + 1)), "mtime_ns"),
    ("one xattr value", b"xattrs",
     lambda p: os.setxattr(p, b"user.comment", b"hellO"), "xattr:user.comment"),
    ("a trusted xattr", b"xattrs",
     lambda p: os.removexattr(p, b"trusted.t"), "xattr:trusted.t"),
    ("one ACL entry", b"shared/acl-file",
     lambda p: subprocess.run(["setfacl", "-m", "u:1003:rw-", p], check=True), "acl"),
    ("a default ACL", b"shared",
     lambda p: _keep_times(p, lambda q: subprocess.run(["setfacl", "-d", "-m", "u:1001:r--", q],
                                                         check=True)), "default_acl"),
    ("a capability", b"Program Files/cap-bin",
     lambda p: os.removexattr(p, b"security.capability"), "xattr:security.capability"),
    ("a symlink target", b"links/rel", lambda p: _keep_times(p, _retarget), "target"),
    ("a hardlink broken into a copy", b"links/sub/hard",
     lambda p: _keep_times(p, _break_hardlink), "hardlink"),
    ("a file turned into a folder", b"empty-file", _file_to_folder, "kind"),
    ("a device number", b"dev/null",
     lambda p: (os.unlink(p), os.mknod(p, 0o20600, os.makedev(1, 5))), "rdev"),
]


def _json_compare(a, b, *extra):
    proc = run_cli("compare", "--json", *extra, a, b)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["identical"] == (proc.returncode == 0)
    return doc


@pytest.mark.root
def test_tree_and_its_own_manifest_are_identical(rich_tree, tmp_path):
    out = tmp_path / "m.dimf"
    run_cli("scan", rich_tree, "-o", out, check_rc=0)
    for args in [(rich_tree, out), (out, rich_tree), (out, out), (rich_tree, rich_tree)]:
        doc = _json_compare(*args)
        assert doc["identical"] and doc["differences"] == []
        assert doc["a"]["tree_id"] == doc["b"]["tree_id"]
    assert _json_compare(rich_tree, out, "--checksum")["identical"]


@pytest.mark.root
@pytest.mark.parametrize("what,path,change,field", CHANGES, ids=[c[0] for c in CHANGES])
def test_each_single_change_is_reported(rich_tree, tmp_path, what, path, change, field):
    out = tmp_path / "before.dimf"
    before = write_manifest(out, scan(rich_tree))
    change(os.path.join(rich_tree, path))
    checksum = ("--checksum",) if field == "content" else ()
    doc = _json_compare(out, rich_tree, *checksum)
    assert not doc["identical"]
    changed = {d["path"]: d for d in doc["differences"]}
    assert os.fsdecode(path) in changed, doc["differences"]
    assert field in changed[os.fsdecode(path)]["fields"]
    after = write_manifest(tmp_path / "after.dimf", scan(rich_tree, checksum=True))
    assert after["tree_id"] != before["tree_id"]


@pytest.mark.root
def test_same_size_and_time_change_is_found_by_default(rich_tree, tmp_path):
    """A manifest scanned with its stat section: the rewritten file's ctime moved, so it is
    hashed (and found) by default; --trust-mtime, as documented, misses it; a file changed
    within the scan's own second (racy) is never trusted later."""
    out = tmp_path / "before.dimf"
    run_cli("scan", rich_tree, "-o", out, check_rc=0)
    _keep_times(os.path.join(rich_tree, b"Program Files/app.exe"), _rewrite_same_size)
    doc = _json_compare(out, rich_tree)
    assert {d["path"] for d in doc["differences"]} >= {"Program Files/app.exe"}
    assert all(set(d["fields"]) == {"content"} for d in doc["differences"])
    assert run_cli("compare", "--trust-mtime", out, rich_tree).returncode == 0
    assert run_cli("compare", "--checksum", out, rich_tree).returncode == 1


@pytest.mark.root
@pytest.mark.parametrize("what,change,expect", [
    ("a new empty folder", lambda r: os.mkdir(os.path.join(r, b"names/new empty")),
     {("names/new empty", "added"), ("names", "changed")}),
    ("a renamed invalid-UTF-8 name", _rename(b"names/" + BAD_UTF8, b"names/\xff\xfe renamed"),
     {("names/caf\\xe9-\\xff\\xfe.txt", "removed"), ("names/\\xff\\xfe renamed", "added"),
      ("names", "changed")}),
    ("a removed folder", lambda r: shutil.rmtree(os.path.join(r, b"links/sub")),
     {("links/sub", "removed"), ("links/sub/hard", "removed"), ("links", "changed")}),
])
def test_added_and_removed_entries_are_reported(rich_tree, tmp_path, what, change, expect):
    out = tmp_path / "before.dimf"
    write_manifest(out, scan(rich_tree))
    change(rich_tree)
    doc = _json_compare(out, rich_tree)
    assert {(d["path"], d["change"]) for d in doc["differences"]} == expect
    for d in doc["differences"]:
        if d["change"] != "changed":
            assert d["path_b64"]


@pytest.mark.root
def test_text_output_is_one_line_per_difference(rich_tree, tmp_path):
    other = os.fsencode(tmp_path / "other")
    subprocess.run(["cp", "-a", rich_tree, other], check=True)
    assert run_cli("compare", rich_tree, other).returncode == 0
    newline_name = os.path.join(other, b"names/line\nbreak")
    os.chmod(newline_name, 0o600)
    proc = run_cli("compare", rich_tree, other)
    assert proc.returncode == 1
    assert proc.stdout == b"~ names/line\\nbreak: mode 0644 -> 0600\n"
