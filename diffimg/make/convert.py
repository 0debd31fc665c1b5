"""Convert a partclone image (Clonezilla, FOG, the seed's own) into a diffimg image.

The partclone image (raw or compressed, whole or split into NAME.aa, NAME.ab, ...) is restored
by partclone.restore into a sparse file in a private temporary folder, extended to the
filesystem's full size (the header gives it: a short file does not mount), mounted read-only
like any partition (partition.py), and imaged by packer.create; the temporary folder, the mount
and the loop device always go, on errors, Ctrl-C and SIGTERM too (and after a kill -9, at the
next run: runs.py).

The header is read (and checked) before anything is written: format 0001 (partclone before
0.3.0) and 0002, whose layouts are described in partclone's IMAGE_FORMATS.md.
"""

import contextlib
import errno
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import threading
import zlib
from dataclasses import dataclass

from ..errors import DiffimgError, ImageError, InputNotFound, OutputError, ToolError, show_path
from ..progress import Phase
from ..system import runs
from ..system.interrupts import signals_held
from ..system.partition import fs_type, tree_of
from ..system.safefs import open_file, private_to_us, remove
from ..system.tools import spawn
from .packer import PackOptions, create

# compression, found from the first bytes: (magic, name, command that decompresses stdin)
COMPRESSIONS = (
    (b"\x1f\x8b", "gzip", ["gzip", "-dc"]),
    (b"\x28\xb5\x2f\xfd", "zstd", ["zstd", "-dcq"]),
    (b"\xfd7zXZ\x00", "xz", ["xz", "-dc"]),
    (b"\x04\x22\x4d\x18", "lz4", ["lz4", "-dcq"]),
    (b"\x89LZO\x00\r\n\x1a\n", "lzo", ["lzop", "-dc"]),
    (b"BZh", "bzip2", ["bzip2", "-dc"]),
)
_PACKAGE = {"gzip": "gzip", "zstd": "zstd", "xz": "xz-utils", "lz4": "lz4", "lzop": "lzop",
            "bzip2": "bzip2", "partclone.restore": "partclone"}
MAGIC = b"partclone-image"
_V1 = struct.Struct("<15s15s4s2xiQQQ")        # then 4096 unused bytes
_V1_SIZE = _V1.size + 4096
_V2 = struct.Struct("<16s14s4sH16sQQQQI")       # then options; a CRC32 of bytes 0-105 at 106
_V2_SIZE = 110
# partclone's names of the filesystems diffimg can mount (partition.TYPES)
_MOUNTABLE = re.compile(r"(EXTFS|EXT[234]|NTFS|FAT(12|16|32)?|VFAT|BTRFS|XFS)")
_MARGIN = 64 << 20          # beyond the used blocks: the sparse file's own metadata, and slack
# partclone.restore holds a bitmap of every block: 2^32 blocks (16 TiB of 4 KiB blocks) take
# it about 512 MiB; a header asking more is refused before it runs
_MAX_BLOCKS = 1 << 32
_MAX_SIZE = 1 << 52
# partclone's filesystem names -> what blkid must find in the restored volume
_BLKID_TYPES = {"EXTFS": ("ext2", "ext3", "ext4"), "EXT2": ("ext2", "ext3", "ext4"),
                "EXT3": ("ext2", "ext3", "ext4"), "EXT4": ("ext2", "ext3", "ext4"),
                "NTFS": ("ntfs",), "FAT": ("vfat",), "FAT12": ("vfat",), "FAT16": ("vfat",),
                "FAT32": ("vfat",), "VFAT": ("vfat",), "BTRFS": ("btrfs",), "XFS": ("xfs",)}


@dataclass
class Header:
    version: str          # "0001" or "0002"
    filesystem: str       # as partclone names it: EXTFS, NTFS, FAT32, ...
    device_size: int      # bytes
    block_size: int
    total_blocks: int
    used_blocks: int
    tool: str             # the partclone version that made it (0002 only)
    header_bytes: int = 0     # the header, then the bitmap
    bitmap_bytes: int = 0     # 0001: a byte a block; 0002: a bit a block (then its CRC32)
    per_block: int = 0        # 0001: the CRC32 after each block
    checksums: int = 0        # 0002: the bytes of checksums after the used blocks

    @property
    def used_bytes(self) -> int:
        return self.used_blocks * self.block_size

    @property
    def stream_bytes(self) -> int:
        """The length of the whole (decompressed) image its header gives: header, bitmap, the
        used blocks and their checksums. partclone.restore is fed no more than this."""
        bitmap = self.bitmap_bytes + (8 if self.version == "0001" else 4)  # BiTmAgIc, or CRC32
        return self.header_bytes + bitmap + self.used_blocks * (self.block_size + self.per_block) \
            + self.checksums


def parts_of(source) -> list[bytes]:
    """The files of a partclone image given as source: itself; or, for a split image (source
    is NAME.aa, NAME.aaa..., or NAME when only such parts exist), every NAME.SUFFIX of
    lower-case letters in the order split makes them (aa ... yz, zaaa ...: that of their
    names), each a regular file, not a symlink (a part planted beside the image must not
    lead anywhere else)."""
    source = os.fsencode(source)
    split_first = re.fullmatch(rb"(.*)\.a{2,}", source)
    if not split_first and os.path.lexists(source):
        return [source]
    base = split_first[1] if split_first else source
    folder, name = os.path.split(base)
    try:
        names = os.listdir(folder or b".")
    except OSError:
        names = []
    suffixes = sorted(n[len(name) + 1:] for n in names
                      if n.startswith(name + b".") and re.fullmatch(rb"[a-z]{2,}", n[len(name) + 1:]))
    if not suffixes:
        raise InputNotFound(f"no such partclone image: {show_path(source)}")
    parts = [base + b"." + suffix for suffix in suffixes]
    for part in parts:
        if not stat.S_ISREG(os.lstat(part).st_mode):
            raise ImageError(f"{show_path(part)}: a part of a split image that is not a file "
                             "(a symlink, folder or device)")
    return parts


def compression_of(first: bytes) -> tuple[str, list | None]:
    for magic, name, command in COMPRESSIONS:
        if first.startswith(magic):
            return name, command
    return "none", None


def parse_header(data: bytes, source) -> Header:
    """The header at the start of a decompressed partclone image; ImageError when it is not
    one, or says something impossible."""
    def bad(what: str):
        return ImageError(f"{show_path(source)}: not a partclone image ({what})")
    if not data.startswith(MAGIC):
        raise bad("no partclone-image signature")
    version = data[30:34]
    if version == b"0001":
        if len(data) < _V1_SIZE:
            raise bad("its header is cut short")
        _, fs, _, block_size, device_size, total, used = _V1.unpack_from(data)
        tool = ""
        layout = (_V1_SIZE, total, 4, 0)
    elif version == b"0002":
        if len(data) < _V2_SIZE:
            raise bad("its header is cut short")
        _, made_by, _, endian, fs, device_size, total, used, _, block_size = _V2.unpack_from(data)
        if endian != 0xC0DE:
            raise bad("a big-endian image, which this partclone cannot restore here")
        if zlib.crc32(data[:106]) ^ 0xFFFFFFFF != struct.unpack_from("<I", data, 106)[0]:
            raise bad("its header's checksum does not match")
        tool = made_by.split(b"\0")[0].decode("ascii", "replace")
        mode, size, every, bitmap_mode = struct.unpack_from("<HHIxB", data, 96)
        if bitmap_mode != 1:
            raise bad(f"bitmap mode {bitmap_mode}, not a bit a block")
        if mode and (not 0 < size <= 64 or every == 0):
            raise bad("its header gives impossible checksums")
        layout = (_V2_SIZE, -(-total // 8), 0, -(-used // every) * size if mode else 0)
    else:
        raise bad(f"image format {version!r}")
    filesystem = fs.split(b"\0")[0].decode("ascii", "replace")
    if not (512 <= block_size <= 1 << 26 and block_size & (block_size - 1) == 0) \
            or not 0 < total <= _MAX_BLOCKS or not 0 <= used <= total \
            or not total * block_size <= device_size <= _MAX_SIZE:
        raise bad("its header gives impossible sizes")
    return Header(version.decode(), filesystem, device_size, block_size, total, used, tool,
                  *layout)


class _Pipeline:
    """cat PARTS | [decompress] | [last]: processes killed and waited for when it closes; the
    messages of each kept in a temporary file (a talkative one never blocks)."""

    def __init__(self, parts, decompress, last=None, stdout=subprocess.PIPE, limit=None):
        """limit: feed last at most this many bytes (a relay thread counts them); more is
        cut off, last killed, and overflowed set."""
        self.procs, self.logs, self.fds = [], [], []
        self.overflowed, self._relay = False, None
        try:
            # the parts opened here (a split image's without following a symlink), and read
            # by cat through these very descriptors: nothing swapped in meanwhile is read
            for part in parts:
                self.fds.append(os.open(part, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
                                        | (os.O_NOFOLLOW if len(parts) > 1 else 0)))
                if not stat.S_ISREG(os.fstat(self.fds[-1]).st_mode):
                    raise ImageError(f"{show_path(part)} is not a file")
        except OSError as exc:
            self.close()
            raise InputNotFound(f"cannot read {show_path(exc.filename or parts[0])}: "
                                f"{exc.strerror}") from None
        except BaseException:
            self.close()
            raise
        argvs = [["cat", "--", *(f"/dev/fd/{fd}" for fd in self.fds)]] + \
            ([decompress] if decompress else []) + ([last] if last else [])
        try:
            previous = subprocess.DEVNULL
            for n, argv in enumerate(argvs):
                if shutil.which(argv[0]) is None:
                    raise ToolError(f"{argv[0]} is not installed (Debian package "
                                    f"{_PACKAGE.get(argv[0], argv[0])})")
                log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close)
                self.logs.append(log)
                relayed = limit is not None and n == len(argvs) - 1 and n > 0
                proc = spawn(argv, stdin=subprocess.PIPE if relayed else previous, stderr=log,
                             stdout=subprocess.PIPE if n < len(argvs) - 1 else stdout,
                             pass_fds=self.fds if n == 0 else ())
                self.procs.append((argv[0], proc))
                if relayed:
                    self._relay = threading.Thread(target=self._feed, daemon=True,
                                                   args=(previous, proc, limit))
                    self._relay.start()
                elif previous is not subprocess.DEVNULL:
                    previous.close()             # the next one alone reads it
                previous = proc.stdout
        except BaseException:
            self.close()
            raise
        self.stdout = previous

    def failures(self) -> list[str]:
        """What each process that failed said (its last lines), after wait()."""
        found = []
        for (name, proc), log in zip(self.procs, self.logs):
            if proc.returncode not in (0, None):
                log.seek(0)
                lines = [" ".join(line.split()) for line in
                         log.read().decode("utf-8", "replace").splitlines()
                         if line.strip() and "please check" not in line]   # (its log: gone)
                said = "; ".join(lines[-2:])[-300:] if lines else f"exit {proc.returncode}"
                found.append(said if said.startswith(name) else f"{name}: {said}")
        return found

    def _feed(self, source, proc, limit: int):
        """Copy source to proc's stdin, at most limit bytes; if more comes, kill proc (what it
        has written stays within limit) and set overflowed."""
        try:
            left = limit
            while left > 0:
                moved = os.splice(source.fileno(), proc.stdin.fileno(), min(left, 1 << 20))
                if not moved:
                    return
                left -= moved
            if os.read(source.fileno(), 1):
                self.overflowed = True
                proc.kill()
        except OSError:
            pass            # the reader ended (its exit code says how) or was killed
        finally:
            source.close()
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def wait(self):
        for _, proc in self.procs:
            proc.wait()
        if self._relay is not None:
            self._relay.join()

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._relay is not None:
            self._relay.join()          # (it closes what it reads and writes)
        for _, proc in self.procs:
            if proc.stdout is not None:
                proc.stdout.close()
        for log in self.logs:
            log.close()


def read_header(parts, decompress, source) -> Header:
    """The header, checked, and checked against the bitmap after it: partclone.restore writes
    every block the bitmap marks, whatever the header says, so a bitmap marking more blocks
    used than the header (which the room check trusts) is refused."""
    pipeline = _Pipeline(parts, decompress)
    try:
        data = _read(pipeline.stdout, _V1_SIZE)
        header = parse_header(data, source)
        marked, left = 0, header.bitmap_bytes
        chunk = data[header.header_bytes:header.header_bytes + left]
        while True:
            left -= len(chunk)
            if header.version == "0001":
                marked += len(chunk) - chunk.count(0)
            else:
                marked += int.from_bytes(chunk, "little").bit_count()
            if not left:
                break
            chunk = pipeline.stdout.read(min(left, 1 << 20))
            if not chunk:
                raise ImageError(f"{show_path(source)}: a corrupt or truncated partclone image "
                                 "(its bitmap is cut short)")
    finally:
        pipeline.close()
    if marked > header.used_blocks:
        raise ImageError(f"{show_path(source)}: a corrupt partclone image (its bitmap marks "
                         f"{marked} blocks used, its header {header.used_blocks})")
    return header


def _read(stream, n: int) -> bytes:
    """Up to n bytes of stream (fewer only at its end)."""
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def convert(source, out, opts: PackOptions, *, tmp=None, allow_unclean: bool = False) -> dict:
    """Make the full image out of the partclone image source; return its info. tmp: the folder
    for the restored volume (default: out's folder)."""
    parts = parts_of(source)
    try:
        with open_file(parts[0]) as f:      # a regular file only (a FIFO would block)
            first = f.read(16)
    except OSError as exc:
        raise InputNotFound(f"cannot read {show_path(parts[0])}: {exc.strerror}") from None
    compression, decompress = compression_of(first)
    header = read_header(parts, decompress, source)
    if not _MOUNTABLE.fullmatch(header.filesystem):
        raise ImageError(f"{show_path(source)}: a partclone image of {header.filesystem!r}, "
                         "which diffimg cannot mount (ext2/3/4, NTFS, FAT, btrfs and XFS only)")
    if os.path.lexists(out):
        raise OutputError(f"{show_path(out)} already exists; remove it or choose another name")
    tmp = os.fsencode(tmp) if tmp is not None else os.path.dirname(os.path.abspath(os.fsencode(out)))
    _check_room(tmp, header)
    with _private_folder(tmp) as here:
        volume = here + b"/volume"
        try:
            _restore(parts, decompress, volume, header, source, opts)
            found = fs_type(volume)
            if found not in _BLKID_TYPES.get(header.filesystem, ()):
                raise ImageError(f"{show_path(source)}: its header says {header.filesystem}, but "
                                 f"the restored volume holds {found or 'no filesystem blkid knows'}")
            with tree_of(volume, writable=False, allow_unclean=allow_unclean) as tree:
                opts.converted_from = {
                    "format": "partclone", "path": os.fsdecode(os.path.abspath(os.fsencode(source))),
                    "image_version": header.version, "partclone": header.tool,
                    "filesystem": header.filesystem, "compression": compression,
                    "parts": len(parts)}
                return create(tree, out, opts)
        except DiffimgError as exc:     # the volume is named as the user gave it
            exc.message = exc.message.replace(os.fsdecode(volume), os.fsdecode(source))
            raise


def _check_room(tmp: bytes, header: Header):
    """OutputError, saying how much is needed, when tmp cannot hold the used blocks."""
    try:
        st = os.statvfs(tmp)
    except OSError as exc:
        raise OutputError(f"cannot use {show_path(tmp)} for the restored volume: {exc.strerror}") \
            from None
    needed, free = header.used_bytes + _MARGIN, st.f_bavail * st.f_frsize
    if needed > free:
        raise OutputError(f"{show_path(tmp)} has {free / 2**30:.1f} GiB free; restoring the "
                          f"partclone image needs {needed / 2**30:.1f} GiB (its used blocks); "
                          "choose another folder with --tmp")


@contextlib.contextmanager
def _private_folder(where: bytes):
    """A new folder in where, only ours (0700), yielded as /proc/PID/fd/N of this process's fd
    of it: partclone.restore, blkid and the mount reach it through that fd, so renaming the
    folder or planting a symlink in where sends nothing elsewhere (as packer's output). It
    goes with all in it at the end (never across a mount point), or with the next run if
    this one is killed."""
    dir_fd = fd = None
    try:
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        with signals_held():            # made and listed at once: an interrupt leaves neither
            folder = os.fsencode(tempfile.mkdtemp(prefix=f".diffimg-convert-{os.getpid()}-",
                                                  dir=os.fsdecode(where)))
            runs.current().made(folder)
        name = os.path.basename(folder)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dir_fd)
        st = os.fstat(fd)
        if not private_to_us(st) or stat.S_IMODE(st.st_mode) != 0o700:
            raise OSError(errno.EPERM, "the private folder was swapped", folder)
    except OSError as exc:
        for open_fd in (fd, dir_fd):
            if open_fd is not None:
                os.close(open_fd)
        raise OutputError(f"cannot write in {show_path(where)}: {exc.strerror}") from None
    try:
        yield b"/proc/%d/fd/%d" % (os.getpid(), fd)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            remove(dir_fd, name)
        os.close(dir_fd)


def _restore(parts, decompress, volume: bytes, header: Header, source, opts: PackOptions):
    """partclone.restore of the image into the sparse file volume, of the filesystem's size."""
    if opts.on_phase is not None:
        opts.on_phase(Phase.RESTORING_PARTCLONE, f"({header.filesystem}, "
                      f"{header.used_bytes / 2**30:.1f} GiB used)")
    restore = ["partclone.restore", "-q", "-C", "-s", "-", "-O", os.fsdecode(volume),
               "-L", os.fsdecode(volume + b".log")]
    # made first: partclone.restore, making it itself, now and then fails to open it (ENOENT)
    os.close(os.open(volume, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600))
    # fed no more than the header gives: what partclone writes stays within the room checked
    pipeline = _Pipeline(parts, decompress, restore, stdout=subprocess.DEVNULL,
                         limit=header.stream_bytes + (1 << 20))
    try:
        pipeline.wait()
        failed = pipeline.failures()
    finally:
        pipeline.close()
    if pipeline.overflowed:
        raise ImageError(f"{show_path(source)}: a corrupt partclone image (longer than its "
                         f"header gives: {header.used_blocks} used blocks of {header.block_size} "
                         "bytes)")
    if failed:
        text = "; ".join(failed)
        if "No space left" in text:
            raise OutputError(f"restoring {show_path(source)}: no space left ({text})")
        raise ImageError(f"{show_path(source)}: a corrupt or truncated partclone image ({text})")
    try:
        if os.path.getsize(volume) > header.device_size:
            raise ImageError(f"{show_path(source)}: restored past the size its header gives")
        os.truncate(volume, header.device_size)     # partclone stops at the last used block
    except OSError as exc:
        raise OutputError(f"cannot write the restored volume: {exc.strerror}") from None
