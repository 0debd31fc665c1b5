"""Builders of NTFS volumes and Windows metadata for the tests: fresh volumes made by mkntfs in
files, mounted with ntfs-3g, Windows values written raw (security descriptors, DOS attributes,
creation times, short names, streams, a junction), and a view of a tree with every NTFS value
to compare. Shared by test_ntfs, test_partitions, test_convert, test_exact_targets and the unit
tests of NTFS records."""

import contextlib
import errno
import os
import stat
import struct
import subprocess

from diffimg.windows import ntfs

STREAM = b"user.Zone.Identifier"


def sid(authority: int, *subs: int) -> bytes:
    return struct.pack("<BB", 1, len(subs)) + authority.to_bytes(6, "big") + b"".join(
        struct.pack("<I", s) for s in subs)


EVERYONE = sid(1, 0)
SYSTEM = sid(5, 18)
ADMINS = sid(5, 32, 544)
TRUSTED_INSTALLER = sid(5, 80, 956008885, 3418522649, 1831038044, 1853292631, 2271478464)


def ace(sid: bytes, mask: int) -> bytes:
    body = struct.pack("<I", mask) + sid
    return struct.pack("<BBH", 0, 0, 4 + len(body)) + body        # ACCESS_ALLOWED


def descriptor(owner: bytes, group: bytes, *aces: bytes) -> bytes:
    """A self-relative security descriptor with a DACL of aces."""
    body = b"".join(aces)
    dacl = struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body
    at_owner = 20
    at_group = at_owner + len(owner)
    at_dacl = at_group + len(group)
    return struct.pack("<BBHIIII", 1, 0, 0x8004, at_owner, at_group, 0, at_dacl) + owner + group + dacl


def junction_data(windows_path: str) -> bytes:
    """Reparse data of a junction (a mount point reparse point) to windows_path."""
    substitute = ("\\??\\" + windows_path).encode("utf-16-le")
    printed = windows_path.encode("utf-16-le")
    names = substitute + b"\0\0" + printed + b"\0\0"
    data = struct.pack("<HHHH", 0, len(substitute), len(substitute) + 2, len(printed)) + names
    return struct.pack("<IHH", 0xA0000003, len(data), 0) + data


def new_ntfs(path, size_mib=64, *options):
    """A fresh NTFS volume in the file path (mkntfs)."""
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-f", *options, str(path)], check=True,
                   capture_output=True)
    return path


def set_xattr(path, name: bytes, value: bytes):
    os.setxattr(path, name, value, follow_symlinks=False)


def windows_tree(root):
    """A small Windows-like tree with NTFS metadata of every kind; returns root."""
    os.makedirs(root / "Windows" / "System32")
    os.makedirs(root / "Users" / "Ünïcødé user")
    (root / "Windows" / "System32" / "kernel32.dll").write_bytes(b"MZ" + os.urandom(5000))
    (root / "Windows" / "System32" / "drivers.ini").write_bytes(b"[drivers]\r\n")
    (root / "Windows" / "System32" / "NTOSKRNL.EXE").write_bytes(b"MZ kernel")
    os.link(root / "Windows" / "System32" / "kernel32.dll", root / "Windows" / "kernel32.dll")
    (root / "Users" / "Ünïcødé user" / "Long document name.txt").write_bytes(b"hello")
    (root / "pagefile.sys").write_bytes(b"\0" * 4096)
    os.symlink("Windows/System32", root / "sys32")
    os.mkdir(root / "Documents and Settings")
    set_xattr(root / "Documents and Settings", ntfs.REPARSE, junction_data("C:\\Users"))
    with contextlib.suppress(OSError):           # the first lookup after it drops a stale inode
        os.lstat(root / "Documents and Settings")
    dll = root / "Windows" / "System32" / "kernel32.dll"
    set_xattr(dll, ntfs.ACL, descriptor(TRUSTED_INSTALLER, SYSTEM, ace(TRUSTED_INSTALLER, 0x1F01FF),
                                   ace(EVERYONE, 0x1200A9)))
    set_xattr(root / "Windows", ntfs.ACL, descriptor(SYSTEM, SYSTEM, ace(ADMINS, 0x1F01FF)))
    set_xattr(root / "Users" / "Ünïcødé user" / "Long document name.txt", ntfs.DOS_NAME, b"LONGDO~1.TXT")
    set_xattr(root / "Users" / "Ünïcødé user" / "Long document name.txt", STREAM,
         b"[ZoneTransfer]\r\nZoneId=3\r\n")
    set_xattr(dll, ntfs.CRTIME, bytes.fromhex("01d0123456789abc"))
    set_xattr(root / "Windows", ntfs.CRTIME, bytes.fromhex("01c0000000000001"))
    set_xattr(root / "pagefile.sys", ntfs.ATTRIB, struct.pack(">I", 0x26))        # hidden, system
    set_xattr(root / "Windows" / "System32" / "drivers.ini", ntfs.ATTRIB, struct.pack(">I", 0x21))
    set_xattr(root / "Users", ntfs.ATTRIB, struct.pack(">I", 0x11))                # read-only folder
    return root


def ntfs_view(root) -> dict:
    """path -> (kind, content, mtime, every NTFS value and stream) of the tree at root."""
    view = {}
    for folder, dirs, files in os.walk(root):
        if folder == str(root) and ".diffimg" in dirs:
            dirs.remove(".diffimg")                 # the target's state, not the tree
        for name in dirs + files + ([] if folder != str(root) else ["."]):
            path = os.path.normpath(os.path.join(folder, name))
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            values = {}
            for attr in ntfs.NAMES:
                with contextlib.suppress(OSError):
                    values[attr] = ntfs.get_xattr(path, attr)
            for attr in _listed(path):
                values[os.fsencode(attr)] = ntfs.get_xattr(path, os.fsencode(attr))
            if not stat.S_ISLNK(st.st_mode):       # streams served as files: as xattrs
                for name in _streams_listed(path):
                    with open(stream_path(root, rel, os.fsdecode(name)), "rb") as f:
                        values[b"user." + name] = f.read()
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            kind = stat.S_IFMT(st.st_mode)
            view[rel] = (kind, content, st.st_mtime_ns if kind != stat.S_IFDIR else None,
                         st.st_nlink if kind == stat.S_IFREG else None, values)
    return view


def _listed(path) -> list:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:         # ntfs-3g serving streams as files lists none so
        if exc.errno != errno.ENODATA:
            raise
        return []
    return [name for name in names if name != "ntfs.streams.list"]


def _streams_listed(path) -> list:
    try:
        return [n for n in os.getxattr(path, "ntfs.streams.list").split(b"\0") if n]
    except OSError:                # the default interface: streams are the user.* xattrs
        return []


def imaged(view: dict) -> dict:
    """What an image of a Windows tree holds of its view: not pagefile.sys (windows.py)."""
    return {path: value for path, value in view.items() if path != "pagefile.sys"}


@contextlib.contextmanager
def mounted(volume, mount, *options):
    """The volume mounted with ntfs-3g at mount (made if missing) while the block runs."""
    mount.mkdir(exist_ok=True)
    subprocess.run(["ntfs-3g", *options, str(volume), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def windows_mounted(volume, mount):
    """The volume mounted with ntfs-3g serving streams as files (FILE:NAME), of any size."""
    return mounted(volume, mount, "-o", "streams_interface=windows")


def stream_path(root, rel: str, name: str) -> str:
    """The path of a stream of the entry rel (the root's too: ROOT/:NAME)."""
    return os.path.join(root, rel) + ("/" if rel == "." else "") + ":" + name


def patch_record(volume, number: int, change):
    """Change the MFT record number of the volume file (mkntfs's layout: the $MFT in one run)
    in place: change(record) gets it as a bytearray with its update sequence undone, as NTFS
    reads it, and may edit it; it is written back with the sequence redone."""
    with open(volume, "r+b") as f:
        boot = f.read(512)
        cluster = struct.unpack_from("<H", boot, 11)[0] * boot[13]
        per_record = struct.unpack_from("<b", boot, 64)[0]
        size = cluster * per_record if per_record > 0 else 1 << -per_record
        at = struct.unpack_from("<Q", boot, 48)[0] * cluster + number * size
        f.seek(at)
        record = bytearray(f.read(size))
        assert record[:4] == b"FILE"
        usa, count = struct.unpack_from("<HH", record, 4)
        for i in range(1, count):                  # each sector's last two bytes, as written
            record[i * 512 - 2:i * 512] = record[usa + 2 * i:usa + 2 * i + 2]
        change(record)
        for i in range(1, count):
            record[usa + 2 * i:usa + 2 * i + 2] = record[i * 512 - 2:i * 512]
            record[i * 512 - 2:i * 512] = record[usa:usa + 2]
        f.seek(at)
        f.write(record)


def attributes(record: bytearray):
    """(offset, type) of each attribute of an MFT record."""
    at = struct.unpack_from("<H", record, 20)[0]
    while at + 8 <= len(record):
        kind, length = struct.unpack_from("<II", record, at)
        if kind == 0xFFFFFFFF or length < 24:
            return
        yield at, kind
        at += length


OLD_NS = -1234567800           # 1930-ish, to the 100 ns: ntfs-3g's stat shows -1 s


def filled_volume(tmp_path):
    """A volume holding every kind ntfs-3g shows and every value diffimg records, made
    through ntfs-3g's mount (tmp_path/m)."""
    volume = new_ntfs(tmp_path / "v.ntfs", 64)
    mount = tmp_path / "m"
    with mounted(volume, mount):
        windows_tree(mount)
        os.mkfifo(mount / "fifo")
        os.mknod(mount / "null", 0o600 | 0o020000, os.makedev(1, 3))
        os.symlink("/an/absolute/target", mount / "abslink")
        (mount / "empty").write_bytes(b"")
        (mount / "folder with stream").mkdir()
        os.setxattr(mount / "folder with stream", "user.zone", b"zone")
        (mount / "old").write_bytes(b"from before 1970")
        os.utime(mount / "old", ns=(0, OLD_NS))
        for i in range(300):                     # a folder whose index is not resident
            (mount / "Windows" / f"f{i:03}.dll").write_bytes(b"MZ%d" % i)
    with windows_mounted(volume, mount), open(str(mount / "big") + ":large", "wb") as f:
        f.write(os.urandom(200_000))                            # a stream over 64 KiB
    return volume
