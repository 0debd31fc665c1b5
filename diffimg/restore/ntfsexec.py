"""restore onto an NTFS partition that holds nothing yet, written through libntfs-3g.

A partition given as itself (a device or a volume file), unmounted, whose root lists no entry
(as mkntfs leaves it: a new disk, a reformatted one) is written the way wimapply writes: the
volume opened by the library (windows/_ntfswrite.c) in a process of its own (apart.py), each
entry made under its own name in canonical order, content copied from the images and hashed as
it is written, each value set raw (named streams, a reparse point's holes, the short name, the
security descriptor, reparse data, EAs, object ID, DOS attributes, then the times last, so no
ARCHIVE bit or time is added afterwards), with no round trip through the kernel. An entry whose
content or stream cannot be read or does not match its digest is removed at once and the run
stops. The volume is then closed, mounted by ntfs-3g, and the state recorded through the mount
as after any restore (target/state.py); the partition is held (partition.held) throughout.

Any other target (a partition holding entries, mounted, dirty, hibernated, a chain on a web
server, an image not read from NTFS, DIFFIMG_NTFS_FUSE=1) is restored through ntfs-3g's mount
(restore.py): restore_onto_empty answers None without changing anything.

A run stopped or killed half-way leaves the writing process to finish the entry it is on and
close the volume cleanly: entries without their times or values, and no state. The next
restore finds the volume not empty, and goes through the mount, rewriting what its size and
time do not prove (restore.py, _trusted_hints).
"""

import contextlib
import errno
import os
import stat
import struct

from ..entry import Kind
from ..errors import ImageError, OutputError, show_path
from ..image.chain import index_chain, open_chain
from ..progress import Phase, human_bytes
from ..scan.ntfswalk import walk_volume, written_stats
from ..scan.scanner import _lookup
from ..system import partition
from ..system.safefs import open_regular, split
from ..target.keep import Kept
from ..target.state import State, finish, layer_record
from ..windows import ntfs, streams
from . import apart
from .executor import execute_on_layers, locked_target
from .writer import From, _Layers

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_AGAIN = ("; the partition is now partly restored: once the cause is mended, run the restore "
          "again (it goes through ntfs-3g's mount then, and takes up what this run left)")


def restore_onto_empty(images, target, *, keep=(), on_progress=None, on_warning=None,
                       on_phase=None, command="restore", host=None):
    """restore images onto target through libntfs-3g when target is an unmounted NTFS
    partition that holds nothing yet (the module's docstring); the Plan carried out, or None
    when the target is not one (nothing was done: restore it through the mount)."""
    path = os.fsencode(target)
    if not _fits(path):
        return None
    layers = open_chain(images)
    final = layers[-1]
    if any(layer.remote for layer in layers) or not ntfs.read_from_ntfs(final.info.get("source")):
        return None
    from ..windows import _ntfsvol
    with partition.held(path):         # (until the state is recorded)
        try:       # (writable: a volume the library would not write is found out now)
            volume = _ntfsvol.Volume(path, writable=True)
        except OSError:
            return None             # (hibernated, read-only...: the mount's checks say why)
        try:
            children, bad_names = volume.listdir(_ntfsvol.ROOT)
            if children or bad_names:
                return None
            p, run = _plan(volume, layers, path, keep, on_warning, on_phase, command, host)
        finally:
            volume.close()
        _carry_out(p, layers, path, on_phase, on_progress, on_warning)
        # the state, through the mount, as after any restore
        with partition.tree_of(path, writable=True) as tree, locked_target(tree) as root_fd:
            finish(root_fd, run, final, Kept(set()), lambda index, e, st: True,
                   written_stats(tree))
    return p


def _fits(path: bytes) -> bool:
    """Whether path is a partition the library may write: a device or file, mounted nowhere,
    holding NTFS with its dirty bit clear, with the writer built and not turned off."""
    if os.environ.get("DIFFIMG_NTFS_FUSE"):
        return False
    try:
        from ..windows import _ntfsvol  # noqa: F401
        st = os.stat(path)
    except (ImportError, OSError):
        return False
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return False
    return (partition.mounted_at(path, st) is None and partition.fs_type(path) == "ntfs"
            and not partition.ntfs_dirty(path))


def _plan(volume, layers, path, keep, on_warning, on_phase, command, host):
    """(the plan that makes the empty volume the chain's tree, the state to record)."""
    from .planner import plan_restore
    from .restore import _check_rights
    phase = on_phase or (lambda phase, detail=None, total=None: None)
    warn = on_warning or (lambda message: None)
    phase(Phase.READING_IMAGES)
    chain = index_chain(layers)
    final = layers[-1]
    for pattern in keep:
        warn(f"--keep {os.fsdecode(pattern)!r} matches nothing in {show_path(path)} (in any case):"
             " it keeps nothing")
    target_entries = walk_volume(volume, path, find_previous=_lookup(None, False), excluded=None,
                                 left_out=set(), wanted_sizes=(), warn=warn)
    wanted = ntfs.fit_for_target(final.entries(), None, warn)
    p = plan_restore(target_entries, wanted, chain, Kept(set()), holes_seen=True)
    p.stream_layers = streams.layers_storing(layers, {
        digest for e in _valued(p) for _, _, digest in streams.large(e.xattrs)})
    _check_rights(path, p, False, warn)
    free = volume.free_bytes()
    if p.needs() > free:
        raise OutputError(f"{show_path(path)} has not enough room: this run writes "
                          f"{human_bytes(p.needs())} from the images, and the partition has "
                          f"{human_bytes(free)} free; restore onto a larger partition; nothing "
                          "was changed")
    return p, State(False, None, [layer_record(layer) for layer in layers[:-1]]
                    + [layer_record(final, host)], command, keep=[os.fsdecode(k) for k in keep])


def _carry_out(p, layers, path: bytes, on_phase, on_progress, on_warning):
    """Carry out p on the volume at path, the layers it reads mounted."""
    phase = on_phase or (lambda phase, detail=None, total=None: None)

    def carry_out(layer_roots):
        apart.run(path, lambda volume, say, stopping: _Writer(volume, path, stopping).carry_out(
            p, layer_roots, say), phase, on_progress)
    execute_on_layers(p, layers, path, None, phase, on_progress, _AGAIN, on_warning,
                      lambda: None, carry_out=carry_out)


def _valued(p):
    """The entries the plan writes or gives values."""
    yield from (w.entry for w in p.writes)
    yield from p.specials
    yield from p.metas
    yield from p.dir_metas


class _Writer:
    """Carries out a plan made against an empty volume: every entry is new."""

    def __init__(self, volume, shown: bytes, stopping):
        from ..windows._ntfsvol import ROOT
        self.volume, self.shown, self.stopping = volume, shown, stopping
        self.mft = {b"": ROOT}              # path -> MFT record number of what this run made

    def carry_out(self, p, layer_roots: dict, say):
        """say(Phase, total=None) as each step starts, say(None, files, bytes) as files are
        written."""
        if p.deletes or p.rescues:
            raise AssertionError("a plan against an empty volume deletes nothing")
        sources = {digest: layer_roots[n] for digest, n in p.stream_layers.items()}
        layers = _Layers()
        try:
            say(Phase.MAKING_FOLDERS)
            for e in p.dirs:
                self._check_stop()
                self._make(e, "d")
            say(Phase.MAKING_SPECIALS)
            for e in p.specials:
                self._check_stop()
                mft = self._special(e)
                try:
                    self._values(mft, e, sources)
                except BaseException:        # (a reparse point's stream that cannot be read)
                    self._remove(e.path)
                    raise
            counts = p.counts()
            say(Phase.WRITING_FILES, total=(counts["files_written"], counts["bytes_written"]))
            nbytes = 0
            for files, w in enumerate(p.writes, 1):
                self._check_stop()
                self._write(w, layer_roots, layers, sources)
                nbytes += w.entry.size
                say(None, files, nbytes)
            say(Phase.LINKING)
            for e in p.links:
                self._check_stop()
                parent, name = split(e.path)
                self._do(e.path, self.volume.link, self.mft[e.link], self.mft[parent], name)
                self.mft[e.path] = self.mft[e.link]
            say(Phase.SETTING_METADATA)
            for e in p.metas:
                self._check_stop()
                self._values(self.mft[e.path], e, sources)
            for e in reversed(p.dir_metas):     # deepest first: a folder after its content
                self._check_stop()
                self._values(self.mft[e.path], e, sources)
        finally:
            layers.close()

    def _check_stop(self):
        if self.stopping():
            raise apart.Stopped

    def _do(self, path: bytes, call, *args, **kwargs):
        """call(*args, **kwargs), its failure said with the entry's path on the partition."""
        try:
            return call(*args, **kwargs)
        except OSError as exc:
            if getattr(exc, "ntfs_source", False):
                raise
            if exc.errno == errno.ENOSPC:
                raise OutputError(f"{show_path(self.shown)} is full while writing "
                                  f"{show_path(path)}") from None
            raise OutputError(f"cannot write {show_path(path)} on {show_path(self.shown)}: "
                              f"{exc.strerror}") from None

    def _make(self, e, kind: str, **extra) -> int:
        parent, name = split(e.path)
        mft = self._do(e.path, self.volume.make, self.mft[parent], name, kind, **extra)
        self.mft[e.path] = mft
        return mft

    def _special(self, e) -> int:
        if e.kind is Kind.SYMLINK and ntfs.is_reparse_point(e.xattrs):
            # a reparse point: an empty folder or file (as its attributes say) given its data
            return self._make(e, "d" if ntfs.is_directory(e.xattrs) else "f")
        if e.kind is Kind.SYMLINK:
            return self._make(e, "l", target=e.target)
        code = {Kind.FIFO: "p", Kind.SOCKET: "s", Kind.CHAR: "c", Kind.BLOCK: "b"}[e.kind]
        return self._make(e, code, rdev=e.rdev or 0)

    def _write(self, w, layer_roots: dict, layers: _Layers, sources: dict):
        """The file made, filled from the image and given its streams and values; when any of
        that fails it is removed (nothing half-written keeps its name), and the run stops."""
        e, fd = w.entry, None
        if w.source.origin is From.LAYER:
            folder, name = split(w.source.path)
            try:
                fd = open_regular(layers.fd(layer_roots[w.source.layer], folder), name, _READ)
            except OSError as exc:
                raise self._damaged(w, f"cannot open its content: {exc.strerror}") from None
        elif w.source.origin is not From.EMPTY:
            raise AssertionError("a plan against an empty volume takes nothing from it")
        try:
            mft = self._make(e, "f")
            try:
                if fd is not None:
                    try:
                        written = self._do(e.path, self.volume.write, mft, None, fd, e.size,
                                           bool(e.sparse))
                    except OSError as exc:           # reading the image failed
                        raise self._damaged(w, f"cannot read its content: {exc.strerror}") \
                            from None
                    if written != (e.digest, e.size):
                        raise self._damaged(w, "the stored content does not match its digest "
                                            "and size")
                self._values(mft, e, sources)
            except BaseException:
                self._remove(e.path)
                raise
        finally:
            if fd is not None:
                os.close(fd)

    def _remove(self, path: bytes):
        parent, name = split(path)
        with contextlib.suppress(OSError):
            self.volume.unlink(self.mft[parent], name)

    @staticmethod
    def _damaged(w, why: str) -> ImageError:
        where = f" in image {w.source.layer + 1}" if w.source.layer is not None else ""
        return ImageError(f"{show_path(w.entry.path)}: {why}{where} (a damaged image?); it was "
                          "not restored")

    def _values(self, mft: int, e, sources: dict):
        """e's named streams, a reparse point's holes, short name and values on the inode mft,
        times last."""
        x = e.xattrs or {}
        for key, value in x.items():
            if key.startswith(streams.INLINE):
                self._do(e.path, self.volume.write, mft, key[len(streams.INLINE):], value,
                         len(value), False)
            elif key.startswith(streams.REF):
                self._stream(e.path, mft, key[len(streams.REF):], value, sources)
        if ntfs.HOLES in x:             # (a WOF file's unnamed data: before its reparse data)
            self._do(e.path, self.volume.set_holes, mft, int.from_bytes(x[ntfs.HOLES]))
        if ntfs.DOS_NAME in x and e.path:
            parent, _ = split(e.path)
            try:
                self.volume.set_dos_name(mft, self.mft[parent], x[ntfs.DOS_NAME])
            except OSError as exc:
                raise OutputError(f"cannot give {show_path(e.path)} its short name "
                                  f"{show_path(x[ntfs.DOS_NAME])}: {exc.strerror}") from None
        mtime = ntfs.ntfs_time_of(e.mtime_ns)
        crtime = struct.unpack(">q", x[ntfs.CRTIME])[0] if ntfs.CRTIME in x else mtime
        attrib = struct.unpack(">I", x[ntfs.ATTRIB])[0] if ntfs.ATTRIB in x else None
        self._do(e.path, self.volume.set_values, mft, acl=x.get(ntfs.ACL),
                 reparse=x.get(ntfs.REPARSE), ea=x.get(ntfs.EA), object_id=x.get(ntfs.OBJECT_ID),
                 attrib=attrib, times=(crtime, mtime, mtime))

    def _stream(self, path: bytes, mft: int, name: bytes, value: bytes, sources: dict):
        size, digest = streams.referenced(value)
        root = sources.get(digest)
        if root is None:
            raise ImageError(f"{show_path(path)}: its stream {show_path(name)} is stored in no "
                             "image of the chain (a damaged image?)")
        try:
            fd = streams._open_stored(root, digest)
        except OSError as exc:
            raise ImageError(f"{show_path(path)}: cannot open its stream {show_path(name)}: "
                             f"{exc.strerror} (a damaged image?)") from None
        try:
            written = self._do(path, self.volume.write, mft, name, fd, size, False)
        except OSError as exc:
            raise ImageError(f"{show_path(path)}: cannot read its stream {show_path(name)}: "
                             f"{exc.strerror} (a damaged image?)") from None
        finally:
            os.close(fd)
        if written != (digest, size):
            raise ImageError(f"{show_path(path)}: its stored stream {show_path(name)} does not "
                             "match its digest (a damaged image?)")
