"""A partition given where a folder is expected: a block device (/dev/sda2) or a file holding
a filesystem. blkid says which filesystem; it is mounted for the command (ntfs-3g for NTFS,
the kernel for ext2/3/4, btrfs, xfs and vfat), read-only for a source, and always unmounted,
with its loop device detached, on errors, Ctrl-C and SIGTERM too (mount.mounted_by).

An NTFS volume is checked before it is mounted at all: BitLocker (its boot sector says
-FVE-FS-), the dirty bit of $Volume (Windows did not close it: chkdsk should run first), and,
through a read-only mount, a hibernated Windows (hiberfil.sys starts with "hibr": Fast Startup
too), whose disk is not the state Windows will resume from.

A whole disk (a partition table and no filesystem of its own, blkid's PTTYPE), a file or a device,
is refused with one line listing its partitions (sfdisk -J, each probed by blkid) and how to give
one: its node when it exists, else a loop device over it (losetup -o OFFSET --sizelimit SIZE).
"""

import contextlib
import fcntl
import json
import os
import stat
import struct
import subprocess
import tempfile
import threading

from ..errors import Busy, InputNotFound, ToolError, UnsafeVolume, show_path
from .fsmeta import unescape_field
from .loop import mounted_by

KERNEL_TYPES = ("ext2", "ext3", "ext4", "btrfs", "xfs", "vfat")
TYPES = (*KERNEL_TYPES, "ntfs")
_VOLUME_IS_DIRTY = 0x0001


def is_partition(path) -> bool:
    """Whether path is a block device or a regular file (not a folder) that holds a filesystem
    blkid knows: what tree_of mounts."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if stat.S_ISBLK(st.st_mode):
        return True
    # (a whole disk's file too: tree_of says how to give one of its partitions)
    return stat.S_ISREG(st.st_mode) and (fs_type(path) is not None or _is_bitlocker(path)
                                         or partition_table(path) is not None)


def fs_type(path) -> str | None:
    """The filesystem blkid finds in path by probing it (no cache), or None."""
    try:
        done = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", os.fsencode(path)],
                              capture_output=True, timeout=60)
    except FileNotFoundError:
        raise ToolError("blkid is not installed (Debian package util-linux)") from None
    except subprocess.TimeoutExpired:
        return None
    found = done.stdout.decode("ascii", "replace").strip()
    return (found or None) if done.returncode == 0 else None


def partition_table(path) -> str | None:
    """The kind of partition table (dos, gpt...) blkid finds in path when it holds one and no
    filesystem of its own: a whole disk, not a partition."""
    probe = _probe(path)
    return probe.get("PTTYPE") if "TYPE" not in probe else None


def _probe(path, offset: int | None = None, size: int | None = None) -> dict:
    """What blkid -p says of path (of size bytes at offset), as NAME -> value."""
    window = ["-O", str(offset), "-S", str(size)] if offset is not None else []
    try:
        done = subprocess.run(["blkid", "-p", *window, "-o", "export", os.fsencode(path)],
                              capture_output=True, timeout=60)
    except FileNotFoundError:
        raise ToolError("blkid is not installed (Debian package util-linux)") from None
    except subprocess.TimeoutExpired:
        return {}
    found = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition("=")
        if sep:
            found[name] = value
    return found


# the partition types sfdisk -J names by number (dos) or GUID (gpt) that a lab meets most
_PART_TYPES = {
    "83": "Linux", "82": "Linux swap", "8e": "Linux LVM", "fd": "Linux RAID", "7": "NTFS/exFAT",
    "b": "FAT32", "c": "FAT32", "e": "FAT16", "ef": "EFI System", "5": "extended",
    "f": "extended", "27": "Windows recovery", "ee": "GPT protective",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
    "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery",
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
}


def _whole_disk(path: bytes, table: str) -> str:
    """The one line that says path is a whole disk, lists its partitions and how to give one."""
    where = show_path(path)
    try:
        done = subprocess.run(["sfdisk", "-J", path], capture_output=True, timeout=60)
        listed = json.loads(done.stdout)["partitiontable"] if done.returncode == 0 else None
    except FileNotFoundError:
        listed = None
        why = "sfdisk -l lists them: Debian package fdisk"
    except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        listed, why = None, f"sfdisk -l {where} lists them"
    else:
        why = f"sfdisk -l {where} lists them"
    head = (f"{where} is a whole disk holding a partition table ({table}), not a partition or a "
            "folder: give one of its partitions")
    if not isinstance(listed, dict) or not listed.get("partitions"):
        return f"{head} ({why})"
    sector = listed.get("sectorsize", 512)
    parts, chosen = [], None
    for number, part in enumerate(listed["partitions"], 1):
        try:
            start, size = int(part["start"]) * sector, int(part["size"]) * sector
        except (KeyError, TypeError, ValueError):
            continue
        node = os.fsencode(str(part.get("node", "")))
        digits = node[len(node.rstrip(b"0123456789")):]
        number = int(digits) if digits else number
        code = str(part.get("type", "?"))
        kind = _PART_TYPES.get(code.upper()) or _PART_TYPES.get(code.lower().lstrip("0")) or code
        fstype = _probe(path, start, size).get("TYPE")
        parts.append(f"{number}: start {start}, size {size} ({_size(size)}), {kind}, "
                     + (f"holds {fstype}" if fstype else "no filesystem blkid knows"))
        is_node = False
        with contextlib.suppress(OSError):     # (a disk's own node, never a planted symlink)
            is_node = stat.S_ISBLK(os.lstat(node).st_mode) and stat.S_ISBLK(os.stat(path).st_mode)
        if chosen is None or (fstype in TYPES and not chosen[0]):
            advice = (f"give {show_path(node)}" if is_node else
                      f"give the loop device `losetup -f --show -o {start} --sizelimit {size} "
                      f"{where}` prints (losetup -d it after)")
            chosen = (fstype in TYPES, number, advice)
    return f"{head}: {'; '.join(parts)}; e.g. for partition {chosen[1]}, {chosen[2]}"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _identities(path: bytes, st) -> set:
    """What the bytes of the partition path are, whatever name it is given, as (kind, number,
    inode, start, length) with length 0 for "to the end": ("file", st_dev, st_ino, ...) of a
    file (its hardlinks and bind-mounted names are the same file), ("dev", rdev, 0, ...) of a
    block device; a loop device is also the range of the file or device it serves (its
    offset and size limit), and a file or device is also each loop device over a range of it
    (another partition of the same disk file is not)."""
    own = ("dev", st.st_rdev, 0, 0, 0) if stat.S_ISBLK(st.st_mode) else \
        ("file", st.st_dev, st.st_ino, 0, 0)
    found = {own} | (_served_by(st.st_rdev) if stat.S_ISBLK(st.st_mode) else set())
    for rdev in _loop_devices():
        if rdev != own[1] and _overlap(_served_by(rdev), found):
            found.add(("dev", rdev, 0, 0, 0))
    return found


def _loop_devices() -> list[int]:
    """The rdev of each loop device attached to something."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/sys/block"):
            if name.startswith("loop") and os.path.exists(f"/sys/block/{name}/loop"):
                with contextlib.suppress(OSError, ValueError):
                    with open(f"/sys/block/{name}/dev") as f:
                        major, minor = f.read().strip().split(":")
                    found.append(os.makedev(int(major), int(minor)))
    return found


def _served_by(rdev: int, depth: int = 0) -> set:
    """The ranges the loop device rdev serves (of a file, or of a device, itself perhaps a
    loop device), or none (not a loop device, none attached, its file deleted)."""
    base = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/loop"
    try:
        with open(f"{base}/backing_file", "rb") as f:
            backing = f.read().rstrip(b"\n")
        with open(f"{base}/offset") as f:
            start = int(f.read())
        with open(f"{base}/sizelimit") as f:
            length = int(f.read())
        st = os.stat(backing) if backing.startswith(b"/") else None
    except (OSError, ValueError):
        return set()
    if st is None:
        return set()
    if stat.S_ISBLK(st.st_mode):
        found = {("dev", st.st_rdev, 0, start, length)}
        if depth < 4:       # (a loop device over a loop device: the ranges are not composed)
            found |= _served_by(st.st_rdev, depth + 1)
        return found
    return {("file", st.st_dev, st.st_ino, start, length)}


def _overlap(these: set, those: set) -> bool:
    """Whether two sets of identities share bytes: the same file or device, ranges that meet."""
    for kind, number, inode, start, length in these:
        for other in those:
            if other[:3] != (kind, number, inode):
                continue
            end = start + length if length else None
            other_end = other[3] + other[4] if other[4] else None
            if (end is None or other[3] < end) and (other_end is None or start < other_end):
                return True
    return False


def mounted_at(path: bytes, st) -> bytes | None:
    """Where the partition path (a block device, or a file: on a loop device, or served by
    ntfs-3g itself) is mounted already, under any of its names (a hardlink, a bind-mounted
    folder, a loop device over it, the file or range a loop device serves), or None."""
    wanted = _identities(path, st)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            fields = line.split()
            sep = fields.index(b"-")
            source = os.fsencode(unescape_field(fields[sep + 2]))
            major, minor = fields[2].split(b":")
            found = {("dev", os.makedev(int(major), int(minor)), 0, 0, 0)}
            if source.startswith(b"/"):
                with contextlib.suppress(OSError):
                    source_st = os.stat(source)
                    if stat.S_ISBLK(source_st.st_mode):
                        found |= {("dev", source_st.st_rdev, 0, 0, 0)} | _served_by(
                            source_st.st_rdev)
                    elif stat.S_ISREG(source_st.st_mode):
                        found.add(("file", source_st.st_dev, source_st.st_ino, 0, 0))
        except (ValueError, IndexError):
            continue
        if _overlap(found, wanted):
            return os.fsencode(unescape_field(fields[4]))
    return None


# the partitions this process holds locked (held): identity -> [fd, how many hold it]
_HELD: dict[tuple, list] = {}
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def held(path: bytes):
    """The partition path locked against another diffimg writing it under any of its names
    (a loop device and the file it serves are one partition): Busy (exit 13) when one does.
    A process may hold it more than once (restore, then its state through the mount)."""
    st = os.stat(path)
    # the lock is taken on the file whose bytes these are (a loop device's: the file it
    # serves; another partition of the same disk file shares it), else on the device
    files = sorted(i for i in _identities(path, st) if i[0] == "file")
    key = ("file", *files[0][1:3]) if files else ("dev", st.st_rdev)
    with _HELD_LOCK:
        entry = _HELD.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        fd = _open_lockable(path, st, key)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"another diffimg is writing {show_path(path)} (or the same partition "
                       "under another name, or another partition of the same disk file); try "
                       "again when it has finished") from None
        with _HELD_LOCK:
            entry = _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        with _HELD_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[key]
                os.close(entry[0])


def _open_lockable(path: bytes, st, key) -> int:
    """An fd of the file (or device) the lock is taken on: for a loop device, the file it
    serves (through loop devices over loop devices), checked to be that very file."""
    if key[0] == "file" and stat.S_ISBLK(st.st_mode):
        rdev = st.st_rdev
        for _ in range(5):
            with open(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/loop/backing_file",
                      "rb") as f:
                backing = f.read().rstrip(b"\n")
            fd = os.open(backing, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            found = os.fstat(fd)
            if stat.S_ISREG(found.st_mode) and ("file", found.st_dev, found.st_ino) == key:
                return fd
            os.close(fd)
            if not stat.S_ISBLK(found.st_mode):
                break
            rdev = found.st_rdev
        raise UnsafeVolume(f"{show_path(path)}: the file its loop device serves changed while "
                           "it was looked at; try again")
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def tree_of(path, *, writable: bool, allow_unclean: bool = False):
    """Yield the folder to work on for path: path itself when it is a folder, else the
    partition it names, mounted (read-write only if writable, and then held against another
    diffimg writing it: held) until the block ends. allow_unclean: capture an NTFS volume
    whose dirty bit is set (read-only only)."""
    path = os.fsencode(path)
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if writable and (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
                stack.enter_context(held(path))
        yield from _tree_of(path, writable=writable, allow_unclean=allow_unclean)


def _tree_of(path: bytes, *, writable: bool, allow_unclean: bool = False):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputNotFound(f"no such file, folder or device: {show_path(path)}") from None
    except OSError as exc:
        raise InputNotFound(f"cannot reach {show_path(path)}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        yield path
        return
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise InputNotFound(f"{show_path(path)} is neither a folder, a block device nor a file")
    where = mounted_at(path, st)
    if where is not None:
        raise UnsafeVolume(f"{show_path(path)} is mounted at {show_path(where)}: give that folder "
                           "instead (or unmount it first); a partition is never mounted twice")
    fstype = fs_type(path)
    if fstype == "BitLocker" or _is_bitlocker(path):
        raise UnsafeVolume(f"{show_path(path)} is a BitLocker volume: unlock it first (for "
                           "example with dislocker) and give the unlocked volume")
    if fstype is None:
        table = partition_table(path)
        if table is not None:
            raise InputNotFound(_whole_disk(path, table))
    if fstype not in TYPES:
        raise InputNotFound(f"{show_path(path)} holds no filesystem diffimg can mount"
                            + (f" (blkid: {fstype})" if fstype else ""))
    if fstype == "ntfs":
        if ntfs_dirty(path) and (writable or not allow_unclean):
            raise UnsafeVolume(
                f"{show_path(path)}: Windows did not close this NTFS volume cleanly (its dirty "
                "bit is set): boot Windows and shut it down fully, or run chkdsk on it"
                + ("" if writable else "; --allow-unclean images it as it is, read-only"))
        colon = None if not writable and _library_reads() else _names_with_colon(path)
        if colon:
            raise UnsafeVolume(
                f"{show_path(path)} holds names with ':' (e.g. {show_path(colon)!r}, made on "
                "Linux), which ntfs-3g hides while it serves named streams as files, as diffimg "
                "mounts a partition: mount it with ntfs-3g's default options and give that "
                "folder (streams over 64 KiB cannot be read that way)")
        with _mounted(path, fstype, st, writable=False) as tree:
            hibernated = _hibernated(tree)
            if not writable:
                if hibernated:
                    raise UnsafeVolume(_HIBERNATED % show_path(path))
                with _read_by_library(tree, path):
                    yield tree
                return
        if hibernated:
            raise UnsafeVolume(_HIBERNATED % show_path(path))
    with _mounted(path, fstype, st, writable) as tree:
        if writable and os.statvfs(tree).f_flag & os.ST_RDONLY:
            # ntfs-3g falls back to read-only, saying nothing, on a volume it finds hibernated
            raise UnsafeVolume(f"{show_path(path)} could be mounted only read-only (ntfs-3g "
                               "finds Windows hibernated on it, or the disk is read-only): "
                               + _HIBERNATED_ADVICE)
        if fstype != "ntfs":
            yield tree
            return
        # a restore's target: read through the library too (its scan, its state's rows)
        with _read_by_library(tree, path):
            yield tree


# an ntfs-3g mount tree_of made -> [the partition it serves, its Volume or None]
_NTFS_SOURCES: dict[bytes, list] = {}


@contextlib.contextmanager
def _read_by_library(tree: bytes, partition: bytes):
    """While the block runs, ntfs_volume_of(tree) reads the partition through libntfs-3g."""
    _NTFS_SOURCES[tree] = [partition, None]
    try:
        yield
    finally:
        volume = _NTFS_SOURCES.pop(tree)[1]
        if volume is not None:
            volume.close()


def _library_reads() -> bool:
    """Whether a read-only NTFS source is read through libntfs-3g (ntfs_volume_of), which
    sees names with ':' as they are."""
    if os.environ.get("DIFFIMG_NTFS_FUSE"):
        return False
    try:
        from ..windows import _ntfsvol  # noqa: F401
    except ImportError:
        return False
    return True


def ntfs_volume_of(tree, fresh: bool = False) -> tuple[bytes, object] | None:
    """(partition, its volume opened read-only through libntfs-3g: windows/_ntfsvol.c) when
    tree is the mount of an NTFS partition given as itself, and the compiled reader is built
    (and DIFFIMG_NTFS_FUSE unset): its entries and content are read through the library
    rather than ntfs-3g's FUSE view. None otherwise. The library reads beside ntfs-3g's mount,
    and keeps what it read: on a mount that was written meanwhile (a restore's target, after
    its changes and a sync) it is opened anew (fresh)."""
    found = _NTFS_SOURCES.get(os.fsencode(tree)) if _NTFS_SOURCES else None
    if found is None or not _library_reads():
        return None
    if fresh and found[1] is not None:
        found[1].close()
        found[1] = None
    if found[1] is None:
        from ..windows import _ntfsvol
        try:
            found[1] = _ntfsvol.Volume(found[0])
        except OSError as exc:
            raise ToolError(f"libntfs-3g cannot open {show_path(found[0])}: "
                            f"{exc.strerror or exc}") from None
    return found[0], found[1]


_HIBERNATED_ADVICE = ("boot Windows and shut it down fully (Shift + Shut down, or powercfg /h "
                      "off), then try again")
_HIBERNATED = ("%s: Windows is hibernated on this volume (or shut down with Fast Startup), and "
               "will resume from its hibernation file: " + _HIBERNATED_ADVICE)


def _names_with_colon(path: bytes) -> bytes | None:
    """The path of a file or folder of the (unmounted) NTFS volume whose name holds ':', or
    None: ntfs-3g serving streams as files takes NAME:X for a stream of NAME, and hides it.
    Listed with ntfsls, which reads the volume itself (about 1 s for 50k entries), read as it
    comes: a damaged volume whose folders loop makes it list forever, deeper and deeper."""
    with tempfile.TemporaryFile() as errors:        # (a pipe it filled would stop it)
        try:
            lister = subprocess.Popen(["ntfsls", "-f", "-R", "-p", "/", path],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=errors)
        except FileNotFoundError:
            raise ToolError("ntfsls is not installed (Debian package ntfs-3g)") from None
        with lister:
            watchdog = threading.Timer(3600, lister.kill)
            watchdog.start()
            try:
                found = _first_with_colon(lister.stdout)
            finally:
                watchdog.cancel()
                if found is not None:
                    lister.kill()
                lister.wait()
        errors.seek(0)
        error = errors.read(4096)
    if found is _TOO_DEEP:
        raise UnsafeVolume(f"{show_path(path)}: its folders lead deeper than NTFS allows (they "
                           "form a loop: the volume is damaged): run chkdsk on it, or ntfsfix")
    if found is None and lister.returncode != 0:
        raise ToolError(f"ntfsls cannot list {show_path(path)}: "
                        f"{error.decode(errors='replace').strip()[-300:] or 'it was stopped'}")
    return found


_TOO_DEEP = b"/"


def _first_with_colon(listing) -> bytes | None:
    """The first path with ':' in ntfsls -R's lines ("/FOLDER:" starts a folder's names, a
    name never holds '/', then one name a line); _TOO_DEEP for a folder deeper than NTFS
    allows."""
    folder = b"/"
    for line in listing:
        line = line.rstrip(b"\n")
        if line.startswith(b"/") and line.endswith(b":"):
            folder = line[:-1]
            if len(folder) > _LONGEST_NTFS_PATH or folder.count(b"/") > _DEEPEST_NTFS_PATH:
                return _TOO_DEEP
            if b":" in folder:
                return folder
        elif b":" in line:
            return folder.rstrip(b"/") + b"/" + line
    return None


# the longest path a Windows volume holds: 32,767 UTF-16 units, each at most 3 bytes in UTF-8;
# so at most half as many folders deep
_LONGEST_NTFS_PATH = 32767 * 3
_DEEPEST_NTFS_PATH = 32767 // 2


def _mounted(path: bytes, fstype: str, st, writable: bool):
    mode = "rw" if writable else "ro"
    if fstype == "ntfs":
        def argv(point):
            # umask: only root may write (diffimg trusts its state in .diffimg/ only then);
            # what modes ntfs-3g shows is not recorded anyway (ntfs.Volume.fit); streams as
            # files, which hold any size (streams.py)
            return ["ntfs-3g", "-o", f"{mode},umask=022,nodev,nosuid,streams_interface=windows",
                    path, point]
    else:
        loop = ",loop" if stat.S_ISREG(st.st_mode) else ""
        # read-only: an ext filesystem set to panic on an error (tune2fs -e panic) must not
        # take the imaging server down while it is read
        calm = ",errors=continue" if not writable and fstype.startswith("ext") else ""
        def argv(point):
            return ["mount", "-t", fstype, "-o", f"{mode},nodev,nosuid,noexec{loop}{calm}", path,
                    point]
    return mounted_by(argv, f"mounting {os.fsdecode(path)} ({fstype})")


def _is_bitlocker(path) -> bool:
    """Whether the volume's boot sector has BitLocker's signature (blkid may know it too)."""
    try:
        with open(path, "rb") as f:
            return f.read(11)[3:] == b"-FVE-FS-"
    except OSError:
        return False


def ntfs_dirty(path: bytes) -> bool:
    """Whether the VOLUME_INFORMATION of $Volume (MFT record 3) has its dirty flag set; a
    volume whose records cannot be read so is taken as dirty (ntfs-3g will say more)."""
    try:
        with open(path, "rb") as f:
            boot = f.read(512)
            sector, per_cluster = struct.unpack_from("<HB", boot, 11)
            mft_cluster = struct.unpack_from("<Q", boot, 48)[0]
            per_record = struct.unpack_from("<b", boot, 64)[0]
            # past 0x80 the byte is minus a power of two of sectors (clusters over 64 KiB)
            cluster = sector * (per_cluster if per_cluster <= 0x80 else 1 << (256 - per_cluster))
            size = cluster * per_record if per_record > 0 else 1 << -per_record
            if not (512 <= sector <= 4096 and cluster and 1024 <= size <= 65536
                    and cluster <= 1 << 21):
                return True
            f.seek(mft_cluster * cluster + 3 * size)
            record = bytearray(f.read(size))
        if record[:4] != b"FILE":
            return True
        fixups_at, count = struct.unpack_from("<HH", record, 4)
        for i in range(1, count):          # the update sequence: each 512 bytes' last two
            end = i * 512
            record[end - 2:end] = record[fixups_at + 2 * i:fixups_at + 2 * i + 2]
        at = struct.unpack_from("<H", record, 20)[0]
        while at + 24 <= size:
            kind, length = struct.unpack_from("<II", record, at)
            if kind == 0xFFFFFFFF or length < 24:
                break
            if kind == 0x70 and record[at + 8] == 0:          # VOLUME_INFORMATION, resident
                value_length, value_at = struct.unpack_from("<IH", record, at + 16)
                if value_length >= 12:
                    return bool(struct.unpack_from("<H", record, at + value_at + 10)[0]
                                & _VOLUME_IS_DIRTY)
            at += length
    except (OSError, struct.error, IndexError):
        pass
    return True


def _hibernated(tree: bytes) -> bool:
    """Whether the volume's hiberfil.sys (any case) holds a hibernated session."""
    try:
        names = [n for n in os.listdir(tree) if n.lower() == b"hiberfil.sys"]
        for name in names:     # a regular file only, never a symlink, FIFO or device
            from .osinfo import read_beneath
            if (read_beneath(tree, name, 4) or b"").lower() in (b"hibr", b"wake"):
                return True
    except OSError:
        pass
    return False
