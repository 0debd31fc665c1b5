"""Build real trees from a declarative spec, and change them.

A spec is a list of items, each a dict with 'path' (bytes) and 'kind' plus optional attributes:
  file: data (bytes), sparse_size (int: a hole, then data at the end)
  dir, symlink: target, fifo, socket, char/block: rdev, link: to (path of the first member)
  any: mode, uid, gid, mtime_ns, xattrs {name: value}, acl (setfacl text), default_acl
Items are created in order; metadata is applied after everything exists, folders last.
"""

import os
import socket
import stat
import struct
import subprocess


def build(root, spec):
    root = os.fsencode(root)
    os.makedirs(root, exist_ok=True)
    for item in spec:
        path = os.path.join(root, item["path"]) if item["path"] else root
        kind = item["kind"]
        if kind == "dir":
            if item["path"]:
                os.mkdir(path)
        elif kind == "file":
            with open(path, "wb") as f:
                if "sparse_size" in item:
                    f.truncate(item["sparse_size"])
                    f.seek(item["sparse_size"] - len(item.get("data", b"")))
                f.write(item.get("data", b""))
        elif kind == "symlink":
            os.symlink(item["target"], path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            s = socket.socket(socket.AF_UNIX)
            s.bind(path)
            s.close()
        elif kind in ("char", "block"):
            fmt = stat.S_IFCHR if kind == "char" else stat.S_IFBLK
            os.mknod(path, fmt | 0o600, item["rdev"])
        elif kind == "link":
            os.link(os.path.join(root, item["to"]), path)
        else:
            raise ValueError(kind)
    # metadata: deepest first, so a folder's mtime is set after its content
    for item in sorted(spec, key=lambda i: -i["path"].count(b"/") - (1 if i["path"] else 0)):
        apply_meta(os.path.join(root, item["path"]) if item["path"] else root, item)
    return root


def apply_meta(path, item):
    is_link = item["kind"] == "symlink"
    if "uid" in item or "gid" in item:
        os.chown(path, item.get("uid", -1), item.get("gid", -1), follow_symlinks=False)
    if "mode" in item and not is_link:
        os.chmod(path, item["mode"])
    for name, value in item.get("xattrs", {}).items():
        os.setxattr(path, name, value, follow_symlinks=False)
    if "acl" in item:
        subprocess.run(["setfacl", "-m", item["acl"], path], check=True)
    if "default_acl" in item:
        subprocess.run(["setfacl", "-d", "-m", item["default_acl"], path], check=True)
    if "mtime_ns" in item:
        os.utime(path, ns=(item["mtime_ns"], item["mtime_ns"]), follow_symlinks=False)


def capability(effective_caps: int) -> bytes:
    """A VFS_CAP_REVISION_2 security.capability value granting the given capability bits."""
    return struct.pack("<IIIII", 0x02000001, effective_caps & 0xFFFFFFFF, 0,
                       effective_caps >> 32, 0)


NAME_255 = b"n" * 251 + b".txt"
BAD_UTF8 = b"caf\xe9-\xff\xfe.txt"


def every_kind_spec():
    """One tree holding every entry kind and attribute a manifest must record."""
    t = 1_700_000_000_123_456_789
    return [
        {"path": b"", "kind": "dir", "mode": 0o755, "mtime_ns": t,
         "xattrs": {b"user.volume": b"the root's own attributes"}, "acl": "u:1004:r-x"},
        {"path": b"Program Files", "kind": "dir", "mtime_ns": t - 5},
        {"path": b"Program Files/app.exe", "kind": "file", "data": b"MZ" + bytes(range(256)) * 40,
         "mode": 0o755, "mtime_ns": t + 1},
        {"path": b"Program Files/setuid", "kind": "file", "data": b"s", "mode": 0o4755},
        {"path": b"Program Files/setgid", "kind": "file", "data": b"g", "mode": 0o2750,
         "uid": 1234, "gid": 5678},
        {"path": b"Program Files/cap-bin", "kind": "file", "data": b"cap",
         "xattrs": {b"security.capability": capability(1 << 13)}},
        {"path": b"shared", "kind": "dir", "mode": 0o1777, "acl": "u:1001:rwx,g:2002:r-x",
         "default_acl": "u:1001:rw-"},
        {"path": b"shared/acl-file", "kind": "file", "data": b"acl", "acl": "u:1003:r--"},
        {"path": b"names", "kind": "dir"},
        {"path": b"names/" + NAME_255, "kind": "file", "data": b"long"},
        {"path": b"names/" + BAD_UTF8, "kind": "file", "data": b"latin-1"},
        {"path": b"names/line\nbreak", "kind": "file", "data": b"nl"},
        {"path": b"names/a -> b", "kind": "file", "data": b"arrow"},
        {"path": b"names/c => d", "kind": "file", "data": b"fat arrow"},
        {"path": b"names/'quoted' \"name\"", "kind": "file", "data": b"q"},
        {"path": b"names/\xe4\xb8\xad\xe6\x96\x87 \xc3\xa9t\xc3\xa9", "kind": "file", "data": b"u"},
        {"path": b"names/a-b", "kind": "file", "data": b"order1"},
        {"path": b"names/a", "kind": "dir"},
        {"path": b"names/a/b", "kind": "file", "data": b"order2"},
        {"path": b"times", "kind": "dir"},
        {"path": b"times/before-1970", "kind": "file", "data": b"old", "mtime_ns": -86_400_000_000_001},
        {"path": b"times/after-2038", "kind": "file", "data": b"new", "mtime_ns": 4_102_444_800_999_999_999},
        {"path": b"empty", "kind": "dir", "mode": 0o700},
        {"path": b"links", "kind": "dir"},
        {"path": b"links/rel", "kind": "symlink", "target": b"../Program Files/app.exe"},
        {"path": b"links/abs", "kind": "symlink", "target": b"/etc/passwd", "uid": 42, "gid": 43},
        {"path": b"links/dangling", "kind": "symlink", "target": b"nowhere \n\xff", "mtime_ns": t + 7},
        {"path": b"links/sub", "kind": "dir"},
        {"path": b"links/sub/hard", "kind": "link", "to": b"Program Files/app.exe"},
        {"path": b"links/hard-top", "kind": "link", "to": b"Program Files/app.exe"},
        {"path": b"dev", "kind": "dir"},
        {"path": b"dev/null", "kind": "char", "rdev": os.makedev(1, 3)},
        {"path": b"dev/loop9", "kind": "block", "rdev": os.makedev(7, 9)},
        {"path": b"dev/fifo", "kind": "fifo", "mode": 0o620},
        {"path": b"dev/sock", "kind": "socket"},
        {"path": b"xattrs", "kind": "file", "data": b"x",
         "xattrs": {b"user.comment": b"hello", b"user.bin": b"\x00\xff\n", b"trusted.t": b"tt",
                    b"security.selinuxish": b"no"}},
        {"path": b"sparse.img", "kind": "file", "sparse_size": 8 << 20, "data": b"tail"},
        {"path": b"empty-file", "kind": "file", "data": b""},
    ]


def change_everything(root):
    """One of each kind of change an image diff must carry, applied to an every_kind_spec tree."""
    root = os.fsencode(root)

    def p(rel):
        return os.path.join(root, rel)

    with open(p(b"Program Files/app.exe"), "r+b") as f:       # content (hardlinked: all 3 paths)
        f.write(b"MZ-patched")
    os.chmod(p(b"Program Files/setgid"), 0o2711)               # metadata only
    os.utime(p(b"names/a -> b"), ns=(1, 2))                    # time only
    os.setxattr(p(b"xattrs"), b"user.comment", b"changed")     # xattr only
    os.unlink(p(b"links/sub/hard"))                            # a hardlink broken into a copy
    with open(p(b"links/sub/hard"), "wb") as f:
        f.write(b"now independent")
    os.link(p(b"names/c => d"), p(b"names/c-link"))            # a new hardlink to an old file
    os.unlink(p(b"empty-file"))                                # file -> folder
    os.mkdir(p(b"empty-file"))
    os.rmdir(p(b"empty"))                                      # folder -> file
    with open(p(b"empty"), "wb") as f:
        f.write(b"was a folder")
    os.unlink(p(b"links/rel"))                                 # symlink retargeted
    os.symlink(b"../names/a/b", p(b"links/rel"))
    os.rename(p(b"times"), p(b"times-moved"))                  # a moved folder: no bytes stored
    import shutil
    shutil.rmtree(p(b"dev"))                                   # a deleted folder
    os.makedirs(p(b"new/deep/er"))                             # new folders and files
    for name in (b"new/one", b"new/deep/two"):                 # identical new contents: stored once
        with open(p(name), "wb") as f:
            f.write(b"same new content" * 1000)
    os.symlink(b"one", p(b"new/link"))
    os.mkfifo(p(b"new/fifo"))
