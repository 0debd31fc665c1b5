"""Hypothesis strategies for the property tests, and what they draw applied to real trees:
random tree specs (for treebuild.build) and random edits of a tree."""

import os
import shutil

from hypothesis import strategies as st

NAME_BYTES = [b for b in range(1, 256) if b != ord("/")]
NAMES = st.lists(st.sampled_from(NAME_BYTES), min_size=1, max_size=12).map(bytes).filter(
    lambda n: n not in (b".", b".."))


@st.composite
def trees(draw):
    """A spec of up to ~25 entries: nested folders, files, symlinks and hardlinks."""
    spec = [{"path": b"", "kind": "dir"}]
    dirs, files = [b""], []
    for _ in range(draw(st.integers(1, 25))):
        parent = draw(st.sampled_from(dirs))
        name = draw(NAMES)
        path = parent + b"/" + name if parent else name
        if any(item["path"] == path for item in spec):
            continue
        kind = draw(st.sampled_from(["file", "file", "dir", "symlink"] + (["link"] if files else [])))
        item = {"path": path, "kind": kind, "mtime_ns": draw(st.integers(-2**40, 2**62)),
                "mode": draw(st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o1777]))}
        if kind == "file":
            item["data"] = draw(st.binary(max_size=200))
            files.append(path)
        elif kind == "dir":
            dirs.append(path)
        elif kind == "symlink":
            item["target"] = draw(NAMES)
            del item["mode"]
        else:
            item["to"] = draw(st.sampled_from(files))
            del item["mode"], item["mtime_ns"]
        spec.append(item)
    return spec


EDITS = st.lists(st.tuples(
    st.sampled_from(["rewrite", "append", "chmod", "touch", "delete", "move", "copy", "link",
                     "to-dir", "to-file", "symlink", "new"]),
    st.integers(0, 1000), st.binary(max_size=50)), min_size=1, max_size=6)


def _all(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out += [os.path.join(dirpath, n) for n in sorted(dirnames) + sorted(filenames)]
    return out


def edit(root, edits):
    """Apply random edits to the tree at root (skipping those that do not fit)."""
    for n, (what, pick, data) in enumerate(edits):
        paths = _all(root)
        if not paths:
            what = "new"
        path = paths[pick % len(paths)] if paths else None
        is_file = path is not None and os.path.isfile(path) and not os.path.islink(path)
        is_dir = path is not None and os.path.isdir(path) and not os.path.islink(path)
        if what in ("rewrite", "append") and is_file:
            with open(path, "wb" if what == "rewrite" else "ab") as f:
                f.write(data)
        elif what == "chmod" and not os.path.islink(path):
            os.chmod(path, 0o640 if is_file else 0o750)
        elif what == "touch":
            os.utime(path, ns=(0, 10**18 + n), follow_symlinks=False)
        elif what == "delete":
            shutil.rmtree(path) if is_dir else os.unlink(path)
        elif what == "move":
            os.rename(path, os.path.join(root, b"moved-%d" % n))
        elif what == "copy" and is_file:
            shutil.copy2(path, os.path.join(root, b"copy-%d" % n))
        elif what == "link" and is_file:
            os.link(path, os.path.join(root, b"link-%d" % n))
        elif what == "to-dir" and is_file:
            os.unlink(path)
            os.mkdir(path)
        elif what == "to-file" and is_dir:
            shutil.rmtree(path)
            with open(path, "wb") as f:
                f.write(data)
        elif what == "symlink":
            os.symlink(data.replace(b"\0", b"") or b"x", os.path.join(root, b"sym-%d" % n))
        else:
            with open(os.path.join(root, b"new-%d" % n), "wb") as f:
                f.write(data * 100)
