"""Unit tests of writer.write_batch, called in-process on a tmp target, as any user."""

import os
import stat

import pytest
import xxhash

from diffimg.entry import Entry, Kind
from diffimg.restore.planner import From
from diffimg.restore.writer import Job, Written, write_batch
from diffimg.scan.hashing import Problem

T = 1_650_000_000_111_222_333
TMP = b".diffimg-tmp-test-1"


def f(path, content, mode=0o640, mtime=T, sparse=False):
    return Entry(path, Kind.FILE, mode, os.getuid(), os.getgid(), mtime, size=len(content),
                 digest=xxhash.xxh3_128_digest(content), sparse=sparse)


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)
    return os.fsencode(path)


@pytest.fixture
def target(tmp_path):
    (tmp_path / "target").mkdir()
    return tmp_path / "target"


def write(target, *jobs):
    return write_batch(os.fsencode(target), list(jobs))


def layer_job(e, source):
    """A job writing e from source, a file at the top of its layer's tree."""
    return Job(TMP, e, From.LAYER, os.path.basename(source), False, os.path.dirname(source))


def assert_written(path, e):
    with open(path, "rb") as got:
        assert xxhash.xxh3_128_digest(got.read()) == e.digest
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size) == (e.mode, e.mtime_ns, e.size)
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_layer_job_writes_the_content_under_its_name_with_its_metadata(target, tmp_path):
    source = put(tmp_path / "layer" / "stored", b"layer content")
    (target / "sub").mkdir()
    e = f(b"sub/file", b"layer content", mode=0o4750)
    assert write(target, layer_job(e, source)) == [Written(None, None, 13)]
    assert_written(target / "sub" / "file", e)
    assert os.listdir(target / "sub") == ["file"]           # no temporary name left


def test_layer_job_replaces_an_old_file(target, tmp_path):
    source = put(tmp_path / "layer" / "x", b"new")
    put(target / "x", b"old old old")
    e = f(b"x", b"new", mtime=-5)
    assert write(target, layer_job(e, source))[0].problem is None
    assert_written(target / "x", e)
    assert os.listdir(target) == ["x"]


def test_wrong_digest_is_bad_content_and_leaves_the_old_file(target, tmp_path):
    source = put(tmp_path / "layer" / "x", b"damaged bytes")
    put(target / "x", b"old")
    before = os.lstat(target / "x")
    e = f(b"x", b"the right bytes")
    e.size = len(b"damaged bytes")
    [answer] = write(target, layer_job(e, source))
    assert answer.problem is Problem.BAD_CONTENT and answer.message
    assert (target / "x").read_bytes() == b"old"
    after = os.lstat(target / "x")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert os.listdir(target) == ["x"]


def test_empty_job_makes_an_empty_file(target):
    e = f(b"empty", b"", mode=0o600, mtime=T + 9)
    assert write(target, Job(TMP, e, From.EMPTY, None, False)) == [Written(None, None, 0)]
    assert_written(target / "empty", e)
    assert os.listdir(target) == ["empty"]


def test_target_job_copies_from_a_path_inside_the_root(target):
    put(target / "src" / "a", b"kept in place")
    (target / "dst").mkdir()
    e = f(b"dst/b", b"kept in place", mode=0o644)
    assert write(target, Job(TMP, e, From.TARGET, b"src/a", False))[0].problem is None
    assert_written(target / "dst" / "b", e)
    assert (target / "src" / "a").read_bytes() == b"kept in place"
    assert os.lstat(target / "src" / "a").st_ino != os.lstat(target / "dst" / "b").st_ino


def test_rescue_job_takes_the_very_inode_when_nothing_else_links_to_it(target):
    put(target / "rescue" / "c0ffee", b"moved content")
    kept = os.lstat(target / "rescue" / "c0ffee")
    assert kept.st_nlink == 1
    e = f(b"moved", b"moved content", mode=0o604)
    assert write(target, Job(TMP, e, From.RESCUE, b"rescue/c0ffee", True)) == [Written(None, None, 13)]
    assert_written(target / "moved", e)
    st = os.lstat(target / "moved")
    assert st.st_ino == kept.st_ino and st.st_nlink == 2    # the rescue path and its new name
    assert sorted(os.listdir(target)) == ["moved", "rescue"]


def test_rescue_job_copies_when_the_rescued_file_has_another_link(target):
    put(target / "rescue" / "c0ffee", b"still used")
    os.link(target / "rescue" / "c0ffee", target / "other")
    e = f(b"moved", b"still used")
    assert write(target, Job(TMP, e, From.RESCUE, b"rescue/c0ffee", True))[0].problem is None
    assert_written(target / "moved", e)
    assert os.lstat(target / "moved").st_ino != os.lstat(target / "other").st_ino
    assert os.lstat(target / "other").st_nlink == 2
    assert (target / "other").read_bytes() == b"still used"


def test_rescue_job_without_may_link_copies(target):
    put(target / "rescue" / "c0ffee", b"copy me")
    e = f(b"copy", b"copy me")
    assert write(target, Job(TMP, e, From.RESCUE, b"rescue/c0ffee", False))[0].problem is None
    assert_written(target / "copy", e)
    assert os.lstat(target / "copy").st_ino != os.lstat(target / "rescue" / "c0ffee").st_ino


def test_sparse_entry_is_written_with_holes(target, tmp_path):
    content = bytes(1 << 20) + b"middle" + bytes(3 << 20) + b"tail"
    source = put(tmp_path / "layer" / "disk.img", content)
    e = f(b"disk.img", content, sparse=True)
    assert write(target, layer_job(e, source)) == [Written(None, None, len(content))]
    assert_written(target / "disk.img", e)
    st = os.lstat(target / "disk.img")
    assert st.st_blocks * 512 < st.st_size // 2


def test_sparse_entry_ending_in_zeros_keeps_its_size(target, tmp_path):
    content = b"head" + bytes(2 << 20)
    source = put(tmp_path / "layer" / "z", content)
    e = f(b"z", content, sparse=True)
    assert write(target, layer_job(e, source))[0].problem is None
    assert_written(target / "z", e)
    st = os.lstat(target / "z")
    assert st.st_blocks * 512 < st.st_size


def test_missing_source_is_an_error_with_a_message(target, tmp_path):
    """A source that cannot be opened is UNREADABLE (a damaged layer, when it is one), not an
    error of the target."""
    e = f(b"x", b"content")
    [answer] = write(target, layer_job(e, os.fsencode(tmp_path / "no-such-file")))
    assert answer.problem is Problem.UNREADABLE and answer.size is None
    assert "cannot open its content" in answer.message and "No such file" in answer.message
    assert os.listdir(target) == []


def test_missing_rescue_with_may_link_is_an_error(target):
    [answer] = write(target, Job(TMP, f(b"x", b"c"), From.RESCUE, b"rescue/gone", True))
    assert answer.problem is Problem.UNREADABLE and answer.message
    assert os.listdir(target) == []


def test_a_batch_answers_each_job_in_order(target, tmp_path):
    good = put(tmp_path / "layer" / "good", b"good")
    jobs = [layer_job(f(b"a", b"good"), good)._replace(tmp=b".t1"),
            layer_job(f(b"b", b"good"), os.fsencode(tmp_path / "missing"))._replace(tmp=b".t2"),
            layer_job(f(b"c", b"bad"), good)._replace(tmp=b".t3"),
            Job(b".t4", f(b"d", b""), From.EMPTY, None, False)]
    answers = write(target, *jobs)
    assert [a.problem for a in answers] == [None, Problem.UNREADABLE, Problem.BAD_CONTENT, None]
    assert sorted(os.listdir(target)) == ["a", "d"]


def test_a_folder_in_the_way_is_replaced_by_the_file(target, tmp_path):
    source = put(tmp_path / "layer" / "x", b"file now")
    put(target / "x" / "inner", b"old subtree")
    e = f(b"x", b"file now")
    assert write(target, layer_job(e, source))[0].problem is None
    assert_written(target / "x", e)
