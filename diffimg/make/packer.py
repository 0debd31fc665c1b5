"""Make images: create (a full image of a tree) and diff (a differential image on a chain).

Both scan the tree into a manifest, put the content the image must store into a container,
prove that the container holds exactly that content (read back and hashed), append the
metadata, and only then give the image its name. On any failure nothing is left under it.
"""

import contextlib
import errno
import fcntl
import itertools
import mmap
import os
import stat
import tempfile
import time
from dataclasses import dataclass

import xxhash

from .. import __version__
from ..entry import Kind, content_files
from ..errors import ImageError, OutputError, ScanError, ToolError, show_path
from ..image import containers, squashmap
from ..image.chain import is_image, open_chain
from ..image.containers import Sizes
from ..image.format import ALIGN, ImageKind, append_metadata, container_tree
from ..progress import Phase
from ..scan import leftout
from ..scan.hashing import Beneath, Content, Hashed, Problem, copy_batch, hash_batch, open_for_read
from ..scan.ntfswalk import open_content, why
from ..scan.scanner import scan
from ..system import runs
from ..system.fsmeta import source_info
from ..system.interrupts import signals_held
from ..system.osinfo import detect
from ..system.partition import is_partition, ntfs_volume_of
from ..system.safefs import DIR_FLAGS, private_to_us, remove, rename_noreplace
from ..system.workers import run_pooled
from ..target.keep import Matcher, chain_kept, find_kept, folds_case, linked_inodes
from ..target.quickcheck import tree_hints
from ..tree.delta import stored_contents
from ..tree.differ import diff_trees
from ..tree.manifest import ManifestWriter, read_entries, write_manifest
from ..tree.statcache import StatRecorder
from ..windows import streams
from ..windows.ntfs import read_from_ntfs
from . import tarstream


@dataclass
class PackOptions:
    fmt: str = "squashfs"
    level: int = containers.squashfs.ZSTD_LEVEL     # zstd level of squashfs containers
    checksum: bool = False
    trust_mtime: bool = False         # diff: trust size and mtime alone (quickcheck.py)
    excludes: tuple = ()
    windows_files: bool = False       # keep what a Windows tree leaves out by default (scan/leftout.py)
    on_progress: object = None        # (entries, bytes) while scanning
    on_warning: object = None         # (message)
    on_phase: object = None           # (Phase, detail) as each step starts
    converted_from: dict | None = None    # create: the partclone image the tree came from
    keeps: tuple = ()                 # diff: --keep patterns, paths left as the chain has them


def _what_exists(out: bytes) -> str:
    """Why out cannot be the new image, and what to do: never "remove it" where it holds an
    image or a filesystem (the chain's base, the model's partition given twice)."""
    try:
        st = os.stat(out)
    except OSError:
        st = None
    if st is not None and stat.S_ISBLK(st.st_mode):
        return "is a block device (a disk or partition): give a file name for the new image"
    if is_image(out):
        return ("is an image already (diffimg never writes over one, a layer of the chain "
                "least of all): give the new image a name of its own")
    if st is not None and stat.S_ISREG(st.st_mode) and is_partition(out):
        return "holds a filesystem (a partition file): give the new image a name of its own"
    return "already exists; remove it or choose another name"


class _Output:
    """Where an image is made: a private folder beside the output (mode 0700, a random name
    holding this run's PID), reached through this process's fd of it, /proc/PID/fd/N, by this
    process, its workers and the tools alike: no one can plant a symlink at a temporary name,
    and renaming the folder sends nothing elsewhere. The image gets its name only at the end."""

    def __init__(self, out, container: containers.Container):
        self.container = container
        self.out = os.fsencode(out)
        directory, self._name = os.path.split(os.path.abspath(self.out))
        if os.path.lexists(self.out):
            raise OutputError(f"{show_path(self.out)} {_what_exists(self.out)}")
        self._dir_fd = self._fd = None
        try:
            self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            # (the name cut short, to fit in NAME_MAX: the random part makes it unique)
            with signals_held():           # made and listed at once: Ctrl-C leaves neither
                private = tempfile.mkdtemp(
                    prefix=f".{os.fsdecode(self._name[:100])}.diffimg-{os.getpid()}-",
                    dir=os.fsdecode(directory))
                runs.current().made(private)   # a later run removes it if this one is killed
            self._private = os.path.basename(os.fsencode(private))
            self._fd = os.open(self._private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                               | os.O_CLOEXEC, dir_fd=self._dir_fd)
            st = os.fstat(self._fd)
            if not private_to_us(st) or stat.S_IMODE(st.st_mode) != 0o700:
                raise OSError(errno.EPERM, "the private folder was swapped", private)
            here = b"/proc/%d/fd/%d/" % (os.getpid(), self._fd)
            self.tmp, self.manifest = here + b"image", here + b"manifest"
            container.make_output(self.tmp)
            self.staging = container.staging_folder(self.tmp, beside=here + b"staging")
        except FileNotFoundError:
            self.cleanup()
            raise OutputError(f"no such folder: {show_path(directory)}") from None
        except OSError as exc:
            self.cleanup()
            raise OutputError(f"cannot write in {show_path(directory)}: {exc.strerror}") from None

    def commit(self):
        try:
            rename_noreplace(self._fd, b"image", self._dir_fd, self._name)
        except FileExistsError:
            raise OutputError(f"{show_path(self.out)} appeared meanwhile; not replacing it") from None

    def cleanup(self):
        """The private folder and all in it go (never across a mount point)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            with contextlib.suppress(OSError):
                remove(self._dir_fd, self._private)
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def _phase(opts, phase: Phase, detail: str | None = None, total: tuple | None = None):
    if opts.on_phase is not None:
        if total is not None:
            opts.on_phase(phase, detail, total=total)
        else:
            opts.on_phase(phase, detail)


def create(tree, out, opts: PackOptions) -> dict:
    """Make a full image of tree at out; return its info."""
    tree = os.fsencode(tree)
    container = containers.get(opts.fmt, level=opts.level)
    output = _Output(out, container)
    packing = None
    left_out = _windows_left_out(tree, opts)
    try:
        skipped = []
        # squashfs is fed the stored files as a stream once they are scanned (no read-back:
        # on the 100k-entry bench tree 13.3 s against 24.8 s for mksquashfs of the tree plus
        # the read-back); btrfs is packed from the tree while it is scanned
        streamed = hasattr(container, "start_stream")
        # large NTFS streams are stored apart from the tree's files (streams.py)
        whole_tree = not opts.excludes and not left_out and not streams.windows_interface(tree)
        if container.packs_from_tree_while_scanning and whole_tree:
            # a container packed straight from the tree needs nothing from the scan: run both
            _phase(opts, Phase.PACKING, f"{container.name} from {show_path(tree)} in the background")
            packing = container.start(tree, output.tmp)
        trailer = _scan(tree, output, opts, left_out, skipped)
        stored = lambda: itertools.chain(  # noqa: E731  (each pass reads anew)
            content_files(read_entries(output.manifest)),
            streams.stored_items(streams.of_entries(read_entries(output.manifest))))
        # the dir format has nothing to build from the tree: its staged folder is the content
        direct = container.needs_build and whole_tree and not skipped and not streamed
        if packing is not None and not direct:
            packing.stop()            # the tree has mount points inside: pack what was scanned
            packing = None
        stored_files, stored_bytes = _pack(tree, output, opts, stored, direct, packing)
        packing = None
        info = _info(ImageKind.FULL, container, trailer, None, stored_files, stored_bytes,
                     source_info(tree), detect(tree))
        if opts.converted_from is not None:     # the tree is a temporary mount of it
            info["converted_from"] = opts.converted_from
            info["source"] = {"path": opts.converted_from["path"],
                              **{k: v for k, v in info["source"].items() if k == "fstype"}}
        _note_windows_defaults(info, opts, left_out)
        _finish(output, opts, info, None)
        return info
    finally:
        if packing is not None:
            packing.stop()
        output.cleanup()


def diff(tree, chain, out, opts: PackOptions) -> dict | None:
    """Make a differential image of tree on top of chain (base, diff...) at out; return its
    info, or None (and make nothing) when the tree equals the chain's last tree."""
    tree = os.fsencode(tree)
    layers = open_chain(chain)
    parent = layers[-1]
    container = containers.get(opts.fmt, level=opts.level)
    output = _Output(out, container)
    try:
        _phase(opts, Phase.CLASSIFYING)
        # one pass: the scan is written to the new manifest while the differ merge-joins it
        # with the parent's entries. The quick-check hints come from a read of their own: a
        # shared one (tee) would hold every parent entry the scan never asks about (all of them
        # when the tree has no files), and memory would grow with the tree
        parent_entries = parent.entries()
        hints, trust_mtime = None, False
        if not opts.checksum:
            hints, trust_mtime = tree_hints(tree, parent.manifest_reader, parent.tree_id,
                                            opts.trust_mtime, opts.on_warning)
        stats = StatRecorder.for_scan(tree)
        left_out = _windows_left_out(tree, opts)
        matcher, kept, kept_links = _kept_from_chain(tree, opts.keeps, parent)
        with ManifestWriter(output.manifest, source_info(tree), stats) as writer:
            scanned = scan(tree, previous=hints, checksum=opts.checksum, trust_mtime=trust_mtime,
                           excludes=opts.excludes, on_progress=opts.on_progress,
                           on_warning=opts.on_warning, leave_out=left_out | kept, windows_files=True)
            if matcher is not None:
                scanned = chain_kept(scanned, parent.entries(), matcher, show_path(tree),
                                     kept_links)
            changes = diff_trees(parent_entries, writer.recording(_names_fit(tree, scanned)),
                                 parent.file_hints())
        trailer = writer.trailer
        if trailer["tree_id"] == parent.tree_id:
            return None
        to_store = stored_contents(changes)
        stored_files, stored_bytes = _pack(tree, output, opts, lambda: iter(to_store), direct=False)
        info = _info(ImageKind.DIFF, container, trailer, parent.tree_id, stored_files, stored_bytes,
                     source_info(tree), detect(tree))
        _note_windows_defaults(info, opts, left_out)
        _finish_diff(output, opts, info, changes)
        return info
    finally:
        output.cleanup()


def _kept_from_chain(tree: bytes, patterns, parent) -> tuple[Matcher | None, set, set]:
    """diff --keep: (what covers the kept paths, those of them in tree, left out of its scan,
    the inode numbers of the files there with other links); names match in any case on a
    Windows tree or an NTFS or FAT one (keep.folds_case)."""
    if not patterns:
        return None, set(), set()
    windows_tree = read_from_ntfs(parent.info.get("source"))
    root_fd = os.open(tree, DIR_FLAGS)
    try:
        fold = folds_case(root_fd, windows_tree)
        kept = find_kept(root_fd, patterns, fold)
        return Matcher(patterns, fold), kept, linked_inodes(root_fd, kept)
    finally:
        os.close(root_fd)


def diff_of_entries(entries, parent, out, opts: PackOptions, *, source: dict, os_info: dict,
                    contents) -> dict | None:
    """Make a differential image at out on top of the image parent, of a tree given as its
    entries in canonical order (rebase.py); return its info, or None (and make nothing) when
    the tree is parent's. contents(digests): a context manager giving, for the digests of the
    files and large streams the image stores, {digest: a hashing.Beneath of a file holding
    it}; each is hashed on its way into the container."""
    container = containers.get(opts.fmt, level=opts.level)
    output = _Output(out, container)
    try:
        _phase(opts, Phase.CLASSIFYING)
        with ManifestWriter(output.manifest, source) as writer:
            changes = diff_trees(parent.entries(), writer.recording(entries), parent.file_hints())
        trailer = writer.trailer
        if trailer["tree_id"] == parent.tree_id:
            return None
        stored = stored_contents(changes)
        with contents({item[1] for item in stored}) as where:
            to_store = [(path, digest, size, where[digest]) for path, digest, size, *_ in stored]
            try:
                stored_files, stored_bytes = _pack(b"", output, opts, lambda: iter(to_store),
                                                   direct=False)
            except ScanError as exc:    # read from images: one that does not hold its records
                raise ImageError(f"an image does not hold the content its records say: "
                                 f"{exc.message}") from None
        info = _info(ImageKind.DIFF, container, trailer, parent.tree_id, stored_files, stored_bytes,
                     source, os_info)
        if parent.info.get("windows_defaults") is True:
            info["windows_defaults"] = True
        _finish_diff(output, opts, info, changes)
        return info
    finally:
        output.cleanup()


def _finish_diff(output, opts, info: dict, changes):
    """Count the diff's changes by action in info, append the metadata, name the image."""
    assert changes, "trees differ but no change was classified"
    info["changes"] = {}
    for c in changes:
        info["changes"][c.action] = info["changes"].get(c.action, 0) + 1
    _finish(output, opts, info, changes)


def _scan(tree, output, opts, left_out, skipped):
    _phase(opts, Phase.SCANNING)
    stats = StatRecorder.for_scan(tree)
    entries = scan(tree, checksum=opts.checksum, excludes=opts.excludes,
                   on_progress=opts.on_progress, on_warning=opts.on_warning,
                   leave_out=left_out, windows_files=True,
                   on_skip=skipped.append if skipped is not None else None)
    return write_manifest(output.manifest, _names_fit(tree, entries), source_info(tree), stats)


def _names_fit(tree, entries):
    """The entries, stopped at one whose name Linux filesystems cannot hold (over 255 bytes:
    ntfs-3g serves NTFS names of up to 255 UTF-16 units): an image of it could be read by no
    restore but one onto NTFS, and no container can hold it."""
    for e in entries:
        if len(e.path) > 255 and len(e.name) > 255:
            raise ScanError(f"{show_path(os.path.join(tree, e.path))}: a name of {len(e.name)} "
                            "bytes, over the 255 Linux filesystems and images can hold; not "
                            "supported yet")
        yield e


def _pack(tree, output, opts, stored, direct: bool, packing=None):
    """Put the stored files into the container and prove it holds them; (files, bytes).
    stored() yields the (path, digest, size) of the files to store, afresh at each call; packing is
    the container tool already started on the tree, if any."""
    container = output.container
    total = [0, 0]                      # what is stored, for the progress of each step
    for _, _, size, *_ in stored():
        total[0] += 1
        total[1] += size
    total = tuple(total)
    if packing is not None:
        _phase(opts, Phase.PACKING, container.name)
        packing.wait()
    elif direct:
        _phase(opts, Phase.PACKING, f"{container.name} from {show_path(tree)}")
        container.build(tree, output.tmp, _sizes_of(output.manifest))
    elif hasattr(container, "start_stream"):
        _phase(opts, Phase.PACKING, f"{container.name}, streamed", total)
        return _stream(tree, output, stored(), opts.on_progress)
    else:
        _phase(opts, Phase.COPYING, total=total)
        sizes = _stage(tree, output.staging, stored(), opts.on_progress)
        if container.needs_build:
            _phase(opts, Phase.PACKING, container.name)
            container.build(output.staging, output.tmp, sizes)
    _phase(opts, Phase.CHECKING, total=total)
    length = container.content_length(output.tmp)
    return _check(output.tmp, container.name, length, stored(), opts.on_progress)


def _stream(tree, output, stored, on_progress=None) -> tuple[int, int]:
    """Send the stored files from the tree to the container tool as one tar stream, hashing
    each file's bytes as they are sent: the container then holds content whose digest and size
    were checked on its way in, with no staging copy and no read back (verify reads it all)."""
    running = output.container.start_stream(output.tmp)
    pipe = running.stdin.fileno()
    with contextlib.suppress(OSError):       # fewer wake-ups of the tool; the default works too
        fcntl.fcntl(pipe, _F_SETPIPE_SZ, _CHUNK)
    buffer = memoryview(bytearray(_CHUNK))
    counts = [0, 0]
    # an NTFS partition given as itself: its content read through libntfs-3g (ntfswalk.py)
    volume = ntfs_volume_of(tree) if tree else None
    try:
        for path, digest, size, *source in stored:
            if volume is not None and not (source and isinstance(source[0], Beneath)):
                _send_from_volume(pipe, buffer, volume[1], tree, path, digest, size, *source)
            else:
                _send(pipe, buffer, tree, path, digest, size, *source)
            counts[0] += 1
            counts[1] += size
            if on_progress is not None:
                on_progress(*counts)
        _write_all(pipe, tarstream.END)
    except BrokenPipeError:
        pass                            # the tool ended early: wait() says why
    except BaseException:
        running.stop()
        raise
    running.wait()
    return counts[0], counts[1]


_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031


def _send(pipe: int, buffer: memoryview, tree: bytes, path: bytes, digest: bytes, size: int,
          source: bytes | None = None):
    """One file into the tar stream at path: exactly size bytes, which must have the digest,
    read from the tree at source (a large stream's FILE:NAME), or at path."""
    where = source if isinstance(source, Beneath) else \
        os.path.join(tree, source if source is not None else path)
    _check_names(path, where)
    try:
        fd = open_for_read(where)
    except OSError as exc:
        raise ScanError(f"cannot read {show_path(str(where))}: {exc.strerror}") from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:                     # (a folder's fd cannot even be wrapped for reading)
        os.close(fd)
        raise ScanError(f"{show_path(str(where))} is no longer a file; run the command again")
    with open(fd, "rb", buffering=0) as f:
        _copy_hashed(pipe, buffer, f, where, path, digest, size)


def _send_from_volume(pipe: int, buffer: memoryview, volume, tree: bytes, path: bytes,
                      digest: bytes, size: int, source: bytes | None = None):
    """_send, the content read from the volume (its mount is tree, which messages name)."""
    where = os.path.join(tree, source if source is not None else path)
    _check_names(path, where)
    reader = _volume_content(volume, where, path, source)
    try:
        _copy_hashed(pipe, buffer, reader, where, path, digest, size)
    finally:
        reader.close()


def _volume_content(volume, where, path: bytes, source: bytes | None):
    """A reader of the content at path of the volume, or of a large stream (source FILE:NAME,
    streams.stored_items: a stream's name holds no ':')."""
    rel, _, stream = source.rpartition(b":") if source is not None else (path, b"", None)
    try:
        return open_content(volume, rel, stream)
    except OSError as exc:
        # (nothing else writes to a volume diffimg holds mounted read-only: a listed name that
        # cannot be found again is a damaged index)
        raise ScanError(f"cannot read {show_path(where)}: {why(exc)}") from None


def _check_names(path: bytes, where):
    longest = max(len(name) for name in path.split(b"/")) if len(path) > 255 else 0
    if longest > 255:       # ntfs-3g serves such names (255 UTF-16 units), squashfs holds none
        raise ScanError(f"{show_path(str(where))}: a name of {longest} bytes, over the 255 a squashfs "
                        "image (and Linux) can hold; not supported yet")


def _copy_hashed(pipe: int, buffer: memoryview, f, where, path: bytes, digest: bytes, size: int):
    """Exactly size bytes of f (readinto) into the tar stream as path, which must have the
    digest; else the error that where changed."""
    _write_all(pipe, tarstream.file_header(path, size))
    hasher, left = xxhash.xxh3_128(), size
    while left:
        try:
            n = f.readinto(buffer[:min(left, _CHUNK)])
        except OSError as exc:
            raise ScanError(f"cannot read {show_path(str(where))}: {exc.strerror}") from None
        if not n:
            break                   # shorter than scanned: the digest check says so
        hasher.update(buffer[:n])
        _write_all(pipe, buffer[:n])
        left -= n
    if left or hasher.digest() != digest or f.readinto(buffer[:1]):
        raise _changed(where)
    _write_all(pipe, tarstream.padding(size))


def _changed(where) -> Exception:
    """The error for stored content that is not what its record says."""
    if isinstance(where, Beneath):      # read from an image (rebase): a damaged or crafted one
        return ImageError(f"{show_path(str(where))}: not the content its record says (a damaged "
                          "or crafted image)")
    return ScanError(f"{show_path(where)} changed since it was scanned; run the command again")


def _write_all(pipe: int, data):
    view = memoryview(data)
    while view:
        view = view[os.write(pipe, view):]


def _sizes_of(manifest) -> Sizes:
    sizes = Sizes()
    for e in read_entries(manifest):
        size = e.size if e.kind is Kind.FILE and e.link is None else 0
        if e.kind is Kind.SYMLINK and len(e.target) > 60:
            size = len(e.target)
        xattr_bytes = sum(len(k) + len(v) for k, v in e.xattrs.items()) if e.xattrs else 0
        sizes.add(len(e.name), size, xattr_bytes, folder=e.kind is Kind.DIR, xattrs=e.xattrs,
                  path=e.path)
    return sizes


def _stage(tree, staging, stored, on_progress=None) -> Sizes:
    """Copy the stored files from tree into staging, checking each copy's digest."""
    os.makedirs(staging, exist_ok=True)
    sizes = Sizes()
    made = {b""}

    def pairs():
        for path, digest, size, *source in stored:
            parent = os.path.dirname(path)
            missing = []                 # the folders above path not made yet, deepest first
            while parent not in made:
                missing.append(parent)
                parent = os.path.dirname(parent)
            for folder in reversed(missing):   # (one mkdir each: os.makedirs recurses per level)
                try:
                    os.mkdir(os.path.join(staging, folder))
                except FileExistsError:
                    pass
                except OSError as exc:
                    hint = " (a path of over 4,096 bytes: only a squashfs image holds it)" \
                        if exc.errno == errno.ENAMETOOLONG else ""
                    raise OutputError(f"cannot stage {show_path(path)} for the container: "
                                      f"{exc.strerror}{hint}") from None
                made.add(folder)
                sizes.add(len(os.path.basename(folder)), folder=True)
            where = source[0] if source and isinstance(source[0], Beneath) else \
                os.path.join(tree, *source or [path])
            yield (where, os.path.join(staging, path)), (path, digest, size, where,
                                                         source[0] if source else None)

    def check(item, copied):
        path, digest, size, where, _ = item
        if copied.problem is not None:
            error = OutputError if copied.problem is Problem.NO_SPACE else ScanError
            raise error(f"cannot copy {show_path(where if isinstance(where, bytes) else str(where))}"
                        f": {copied.message}")
        if copied.content.digest != digest or copied.content.size != size:
            raise _changed(where)
        sizes.add(len(os.path.basename(path)), copied.content.size)
        if on_progress is not None:
            on_progress(sizes.entries, sizes.file_bytes)

    volume = ntfs_volume_of(tree) if tree else None
    if volume is None:
        run_pooled(copy_batch, pairs(), check)
        return sizes
    # an NTFS partition read through libntfs-3g: copied here (the library is this process's),
    # and a reparse point's streams, which ntfs-3g's mount cannot serve, with the rest
    buffer = memoryview(bytearray(_CHUNK))
    for (where, dest), item in pairs():
        path, digest, size, _, source = item
        check(item, Hashed(None, None, _copy_from_volume(volume[1], buffer, where, dest, path,
                                                         source)))
    return sizes


def _copy_from_volume(volume, buffer: memoryview, where, dest: bytes, path: bytes,
                      source: bytes | None) -> Content:
    """Copy the content at path (or a large stream: source FILE:NAME) of the volume into the
    new file dest, hashing it as it goes (the caller compares)."""
    reader = _volume_content(volume, where, path, source)
    hasher, size = xxhash.xxh3_128(), 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with open(fd, "wb") as out:
            while n := reader.readinto(buffer):
                hasher.update(buffer[:n])
                out.write(buffer[:n])
                size += n
    except OSError as exc:
        error = OutputError if exc.errno == errno.ENOSPC else ScanError
        raise error(f"cannot copy {show_path(where)}: {exc.strerror}") from None
    finally:
        reader.close()
    return Content(hasher.digest(), False, size, 0, 0, 0, 0, 0, 0, 0)   # (what check reads)


def _check(image, fmt, length, expected, on_progress=None):
    """Hash every expected (path, digest, size) in the container; ImageError naming what
    differs."""
    bad = []
    counts = [0, 0]

    def check(item, hashed):
        path, digest, size = item[:3]
        if hashed.problem is not None or hashed.content.digest != digest \
                or hashed.content.size != size:
            bad.append(path)
        else:
            counts[0] += 1
            counts[1] += hashed.content.size
            if on_progress is not None:
                on_progress(*counts)

    with container_tree(image, fmt, length) as root:
        run_pooled(hash_batch, ((Beneath(os.fsencode(root), item[0]), item) for item in expected),
                   check)
    if bad:
        raise ImageError(f"the packed image does not hold what was scanned: {len(bad)} files "
                         f"differ or are missing, e.g. {show_path(bad[0])} (did the tree change "
                         "while it was packed?)")
    return counts[0], counts[1]


def _windows_left_out(tree, opts) -> set:
    """The paths of the tree its image leaves out by default (scan/leftout.py), found once: the
    scan is given them, and info lists them."""
    return set() if opts.windows_files else leftout.left_out_in(tree)


def _note_windows_defaults(info: dict, opts, left_out: set):
    """Say in info that the tree's Windows defaults were left out (scan/leftout.py), and which."""
    if info["os"].get("family") == "windows" and not opts.windows_files:
        info["windows_defaults"] = True
        if left_out:
            info["left_out"] = sorted(os.fsdecode(p) for p in left_out)


def _info(kind, container, trailer, parent_id, stored_files, stored_bytes, source: dict,
          os_info: dict) -> dict:
    return {
        "kind": kind,
        "format": container.name,
        "tree_id": trailer["tree_id"],
        "parent_id": parent_id,
        "created_ns": time.time_ns(),
        "tool": f"diffimg {__version__}",
        "source": source,
        "os": os_info,
        "entries": trailer["entries"],
        "files": trailer["files"],
        "bytes": trailer["bytes"],
        "stored_files": stored_files,
        "stored_bytes": stored_bytes,
        "compression": container.compression,
    }


def _ranges_of(f, container, length: int) -> bytes | None:
    """The ranges blob of a squashfs container (where each stored file's blocks lie, for
    clients that fetch only some of them over HTTP: remote.py); None for other formats."""
    if container.name != "squashfs" or length == 0:
        return None
    with mmap.mmap(f.fileno(), length, prot=mmap.PROT_READ) as data:
        try:
            return squashmap.ranges_blob(squashmap.read_map(data, length))
        except squashmap.SquashfsError as exc:
            raise ToolError(f"mksquashfs made a container diffimg cannot read ({exc})") from None


def _finish(output, opts, info, changes):
    """Append the metadata, flush it to disk, and give the image its name."""
    _phase(opts, Phase.WRITING_METADATA)
    meta, mode = output.container.metadata_file(output.tmp)
    index_entry = {"format": output.container.name, "offset": 0,
                   "length": output.container.content_length(output.tmp)}
    with open(meta, mode) as f:
        ranges = _ranges_of(f, output.container, index_entry["length"])
        f.seek(0, os.SEEK_END)
        if f.tell() % ALIGN:
            f.write(b"\0" * (ALIGN - f.tell() % ALIGN))
        info["container_bytes"] = index_entry["length"]
        append_metadata(f, index_entry, output.manifest, changes, info, ranges)
        f.flush()
        os.fsync(f.fileno())
    output.commit()
