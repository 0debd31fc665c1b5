"""Unit tests of safefs.py in a tmp folder, as any user: fd-relative operations that never follow
a symlink planted in the target."""

import errno
import os
import stat

import pytest

from diffimg.entry import Entry, Kind
from diffimg.system import safefs

T = 1_600_000_000_987_654_321


def entry(path, kind, mode=0o640, mtime=T, **kw):
    return Entry(path, kind, mode, os.getuid(), os.getgid(), mtime, **kw)


def write(path, data=b"x"):
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def root(tmp_path):
    """A target folder and an outside folder a planted symlink points to; yields
    (target path, root fd, outside path)."""
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    write(outside / "precious", b"keep me")
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    yield target, fd, outside
    os.close(fd)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def user_xattrs_or_skip(path):
    try:
        os.setxattr(path, b"user.probe", b"1")
        os.removexattr(path, b"user.probe")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("the tmp filesystem does not support user xattrs")
        raise


# split ------------------------------------------------------------------------------------

def test_split_gives_folder_and_name():
    assert safefs.split(b"a/b/c") == (b"a/b", b"c")
    assert safefs.split(b"top") == (b"", b"top")
    assert safefs.split(b"a/\xff name") == (b"a", b"\xff name")


# open_dir and Dirs ------------------------------------------------------------------------

def test_open_dir_opens_the_nested_folder(root):
    target, fd, _ = root
    (target / "a" / "b").mkdir(parents=True)
    sub = safefs.open_dir(fd, b"a/b")
    try:
        assert os.fstat(sub).st_ino == os.stat(target / "a" / "b").st_ino
    finally:
        os.close(sub)
    top = safefs.open_dir(fd, b"")
    try:
        assert top != fd and os.fstat(top).st_ino == os.stat(target).st_ino
    finally:
        os.close(top)


def test_open_dir_refuses_a_planted_symlink_and_closes_what_it_opened(root):
    target, fd, outside = root
    (target / "a").mkdir()
    os.symlink(outside, target / "a" / "esc")
    before = open_fds()
    with pytest.raises(OSError) as exc:
        safefs.open_dir(fd, b"a/esc")
    assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert open_fds() == before


def test_dirs_refuses_a_planted_symlink_so_nothing_outside_is_touched(root):
    target, fd, outside = root
    (target / "a").mkdir()
    os.symlink(outside, target / "a" / "sub")        # planted where a folder a/sub should be
    dirs = safefs.Dirs(fd)
    try:
        with pytest.raises(OSError) as exc:
            dir_fd = dirs.fd(b"a/sub")
            os.unlink(b"precious", dir_fd=dir_fd)     # what a caller would do through it
        assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR)
    finally:
        dirs.close()
    assert (outside / "precious").read_bytes() == b"keep me"


def test_dirs_reuses_the_fds_along_the_current_path(root):
    target, fd, _ = root
    for sub in ("a/b", "a/c", "d"):
        (target / sub).mkdir(parents=True)
    dirs = safefs.Dirs(fd)
    try:
        assert dirs.fd(b"") == fd
        a = dirs.fd(b"a")
        ab = dirs.fd(b"a/b")
        assert os.fstat(ab).st_ino == os.stat(target / "a" / "b").st_ino
        assert dirs.fd(b"a") == a                       # a/b's fd dropped, a's kept
        assert os.fstat(dirs.fd(b"a/c")).st_ino == os.stat(target / "a" / "c").st_ino
        assert os.fstat(dirs.fd(b"d")).st_ino == os.stat(target / "d").st_ino
        before = open_fds()
        dirs.close()
        assert open_fds() == before - 1                 # d's fd
    finally:
        dirs.close()


# remove and replace -----------------------------------------------------------------------

def test_remove_deletes_a_subtree_holding_a_symlink_to_an_outside_folder(root):
    target, fd, outside = root
    (target / "tree" / "deep").mkdir(parents=True)
    write(target / "tree" / "deep" / "f")
    os.symlink(outside, target / "tree" / "deep" / "esc")
    os.symlink(outside / "precious", target / "tree" / "to-file")
    safefs.remove(fd, b"tree")
    assert os.listdir(target) == []
    assert sorted(os.listdir(outside)) == ["precious"]
    assert (outside / "precious").read_bytes() == b"keep me"


def test_remove_of_a_symlink_to_a_folder_removes_only_the_link(root):
    target, fd, outside = root
    os.symlink(outside, target / "esc")
    safefs.remove(fd, b"esc")
    assert os.listdir(target) == [] and os.listdir(outside) == ["precious"]


def test_remove_of_a_missing_name_does_nothing(root):
    target, fd, _ = root
    write(target / "other")
    safefs.remove(fd, b"missing")
    assert os.listdir(target) == ["other"]


def test_replace_renames_over_a_file(root):
    target, fd, _ = root
    write(target / "tmp", b"new")
    write(target / "name", b"old")
    safefs.replace(fd, b"tmp", b"name")
    assert os.listdir(target) == ["name"] and (target / "name").read_bytes() == b"new"


def test_replace_a_folder_in_the_way_by_a_file(root):
    target, fd, outside = root
    (target / "name" / "sub").mkdir(parents=True)
    os.symlink(outside, target / "name" / "sub" / "esc")
    write(target / "tmp", b"file now")
    safefs.replace(fd, b"tmp", b"name")
    assert os.listdir(target) == ["name"] and (target / "name").read_bytes() == b"file now"
    assert os.listdir(outside) == ["precious"]


def test_replace_a_file_in_the_way_by_a_folder(root):
    target, fd, _ = root
    (target / "tmp").mkdir()
    write(target / "tmp" / "inside")
    write(target / "name", b"was a file")
    safefs.replace(fd, b"tmp", b"name")
    assert os.listdir(target) == ["name"] and os.listdir(target / "name") == ["inside"]


# metadata ---------------------------------------------------------------------------------

def test_set_meta_fd_sets_mode_and_exact_time(root):
    target, fd, _ = root
    write(target / "f")
    file_fd = os.open(target / "f", os.O_RDONLY)
    try:
        safefs.set_meta_fd(file_fd, entry(b"f", Kind.FILE, mode=0o2751, mtime=T))
    finally:
        os.close(file_fd)
    st = os.lstat(target / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o2751, T)
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_set_meta_at_sets_a_folder_and_a_time_before_1970(root):
    target, fd, _ = root
    (target / "d").mkdir()
    safefs.set_meta_at(fd, b"d", entry(b"d", Kind.DIR, mode=0o1750, mtime=-1_000_000_001))
    st = os.lstat(target / "d")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o1750, -1_000_000_001)


def test_set_meta_at_on_a_symlink_changes_the_link_not_its_target(root):
    target, fd, outside = root
    os.symlink(outside / "precious", target / "l")
    outside_before = os.stat(outside / "precious")
    safefs.set_meta_at(fd, b"l", entry(b"l", Kind.SYMLINK, mode=0o777, mtime=T, target=b"x"))
    assert os.lstat(target / "l").st_mtime_ns == T
    after = os.stat(outside / "precious")
    assert (after.st_mtime_ns, after.st_mode) == (outside_before.st_mtime_ns, outside_before.st_mode)


def test_set_meta_at_on_a_fifo_does_not_block(root):
    target, fd, _ = root
    os.mkfifo(target / "q")
    safefs.set_meta_at(fd, b"q", entry(b"q", Kind.FIFO, mode=0o620, mtime=T + 1))
    st = os.lstat(target / "q")
    assert stat.S_ISFIFO(st.st_mode) and (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o620, T + 1)


def test_set_meta_syncs_user_xattrs(root):
    """Extras are removed, wanted ones set or changed, on a file (fd) and a folder (at)."""
    target, fd, _ = root
    write(target / "f")
    (target / "d").mkdir()
    user_xattrs_or_skip(target / "f")
    for name in ("f", "d"):
        os.setxattr(target / name, b"user.extra", b"go away")
        os.setxattr(target / name, b"user.keep", b"old value")
    wanted = {b"user.keep": b"new value", b"user.added": b"\x00\xff bin"}
    file_fd = os.open(target / "f", os.O_RDONLY)
    try:
        safefs.set_meta_fd(file_fd, entry(b"f", Kind.FILE, xattrs=wanted))
    finally:
        os.close(file_fd)
    safefs.set_meta_at(fd, b"d", entry(b"d", Kind.DIR, mode=0o755, xattrs=wanted))
    for name in ("f", "d"):
        got = {os.fsencode(n): os.getxattr(target / name, n) for n in os.listxattr(target / name)}
        assert got == wanted, name
        assert os.lstat(target / name).st_mtime_ns == T    # the times are set after the xattrs


def test_set_meta_with_no_xattrs_removes_every_user_xattr(root):
    target, fd, _ = root
    write(target / "f")
    user_xattrs_or_skip(target / "f")
    os.setxattr(target / "f", b"user.a", b"1")
    safefs.set_meta_at(fd, b"f", entry(b"f", Kind.FILE, xattrs=None))
    assert os.listxattr(target / "f") == []


# make_special -----------------------------------------------------------------------------

def test_make_special_makes_a_symlink_with_any_target(root):
    target, fd, _ = root
    safefs.make_special(fd, b"l", entry(b"l", Kind.SYMLINK, target=b"../nowhere \n\xff"))
    assert os.readlink(os.path.join(os.fsencode(target), b"l")) == b"../nowhere \n\xff"


def test_make_special_makes_a_fifo_and_a_socket(root):
    target, fd, _ = root
    safefs.make_special(fd, b"q", entry(b"q", Kind.FIFO))
    safefs.make_special(fd, b"s", entry(b"s", Kind.SOCKET))
    assert stat.S_ISFIFO(os.lstat(target / "q").st_mode)
    assert stat.S_ISSOCK(os.lstat(target / "s").st_mode)


def test_make_special_refuses_an_existing_name(root):
    target, fd, _ = root
    write(target / "q", b"a file")
    with pytest.raises(FileExistsError):
        safefs.make_special(fd, b"q", entry(b"q", Kind.FIFO))
    assert (target / "q").read_bytes() == b"a file"


def test_rename_noreplace_never_replaces(tmp_path):
    import pytest

    from diffimg.system.safefs import rename_noreplace
    (tmp_path / "src").write_bytes(b"new")
    (tmp_path / "dst").write_bytes(b"there first")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            rename_noreplace(fd, b"src", fd, b"dst")
        assert (tmp_path / "dst").read_bytes() == b"there first"
        rename_noreplace(fd, b"src", fd, b"free")
    finally:
        os.close(fd)
    assert (tmp_path / "free").read_bytes() == b"new" and not (tmp_path / "src").exists()
