"""An independent, thorough record of a tree for assertions: it uses only os calls, none of
diffimg's code, so a test compares diffimg's manifest (or a restored tree) with what is really there.
"""

import os
import stat

import xxhash


def snapshot(root) -> dict:
    """path (bytes, b'' for the root) -> every attribute; hardlinks as the group's sorted paths."""
    root = os.fsencode(root)
    out = {}
    inodes: dict[tuple, list] = {}
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and b".diffimg" in dirnames:   # diffimg's own, never part of a tree
            dirnames.remove(b".diffimg")
        paths.extend(os.path.join(dirpath, name) for name in dirnames + filenames)
    for path in paths:
        rel = os.path.relpath(path, root) if path != root else b""
        st = os.lstat(path)
        rec = {
            "type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns,
            "xattrs": {os.fsencode(n): os.getxattr(path, n, follow_symlinks=False)
                       for n in os.listxattr(path, follow_symlinks=False)},
        }
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                rec["xxh3_128"] = xxhash.xxh3_128_digest(f.read())
            rec["size"] = st.st_size
            rec["sparse"] = st.st_blocks * 512 < st.st_size
        elif stat.S_ISLNK(st.st_mode):
            rec["target"] = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            rec["rdev"] = st.st_rdev
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        out[rel] = rec
    for group in inodes.values():
        for rel in group if len(group) > 1 else ():
            out[rel]["hardlinks"] = tuple(sorted(group))
    return out


def assert_same_tree(a: dict, b: dict):
    """One thorough assertion: same paths and, for each, every attribute."""
    assert sorted(a) == sorted(b), f"paths differ: only in first {sorted(set(a) - set(b))[:5]}, " \
                                   f"only in second {sorted(set(b) - set(a))[:5]}"
    diffs = {p: (a[p], b[p]) for p in a if a[p] != b[p]}
    assert not diffs, f"{len(diffs)} entries differ, e.g. {next(iter(diffs.items()))}"
