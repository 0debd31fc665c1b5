"""Files and folders of a chain's tree, taken out without restoring the rest: extract copies
them into a folder with their metadata, cat writes one file's content to a stream.

extract makes each PATH at DEST/PATH with the restore's own planner and executor (temporary
names, every byte checked against its digest, nothing followed out of DEST), the folders above
it made as in the tree where DEST lacks them; it never replaces or deletes anything in DEST,
and records no state there (DEST is not a restored target).
"""

import os
import stat

import xxhash

from ..entry import Kind, entry_from_stat
from ..errors import ImageError, InputNotFound, OutputError, show_path
from ..image.chain import index_chain, open_chain
from ..progress import Phase
from ..system.fsmeta import read_xattrs
from ..system.safefs import open_dir, open_regular, proc_path, split
from ..tree.manifest import unsafe_path
from ..windows import ntfs
from .executor import execute_on_layers, locked_target, stream_layers
from .planner import Source, plan_restore

_CHUNK = 1 << 20


def wanted_paths(paths) -> list[bytes]:
    """The paths asked for, as tree paths (no leading or trailing slash); InputNotFound for one
    that could leave the tree."""
    found = []
    for path in paths:
        rel = os.fsencode(path).strip(b"/")
        if rel and unsafe_path(rel):
            raise InputNotFound(f"{show_path(path)}: not a path inside the tree")
        found.append(rel)
    return found


def _selected(entries, wanted: list[bytes]):
    """(entries of the tree at, below or above a wanted path, in canonical order; the paths of
    those above)."""
    above = {b""}
    for path in wanted:
        while path:
            path = split(path)[0]
            above.add(path)
    prefixes = tuple(p + b"/" for p in wanted if p)
    chosen, found = [], set()
    for e in entries:
        if e.path in wanted or (prefixes and e.path.startswith(prefixes)) or b"" in wanted:
            found.add(e.path)
            chosen.append(e)
        elif e.path in above:
            chosen.append(e)
    missing = [p for p in wanted if p not in found]
    return chosen, above, missing


def extract(images, paths, dest, *, on_progress=None, on_warning=None, on_phase=None):
    """Copy each of paths of the chain images' tree to dest/PATH, dest made if absent (once
    the chain is found sound and holds every path); return the Plan carried out."""
    layers = open_chain(images)
    wanted = wanted_paths(paths)
    warn = on_warning or (lambda message: None)
    phase = on_phase or (lambda phase, detail=None, total=None: None)
    dest = os.fsencode(dest)
    phase(Phase.READING_IMAGES)
    chosen, above, missing = _selected(layers[-1].entries(), wanted)
    if missing:
        raise InputNotFound(f"{show_path(missing[0])}: no such path in the tree of "
                            f"{show_path(layers[-1].path)}")
    _make_folder(dest)
    chosen_paths = {e.path for e in chosen}
    with locked_target(dest) as root_fd:
        target, final = [], []
        for e in ntfs.fit_for_target(chosen, root_fd, warn):
            if e.path in above:
                have = _existing_folder(root_fd, dest, e)
                if have is not None:            # left as it is (its times set back after)
                    target.append(have)
                    final.append(have)
                    continue
            elif e.path in wanted and _exists(root_fd, e.path):
                raise OutputError(f"{show_path(os.path.join(dest, e.path))} already exists; "
                                  "extract never replaces anything: remove it or choose another "
                                  "folder")
            if e.link is not None and e.link not in chosen_paths:
                e.link = None                   # its group's first member stays behind: a copy
            final.append(e)
        p = plan_restore(target, final, index_chain(layers))
        p.stream_layers = stream_layers(p, layers, root_fd)
        p.no_replace = True
        execute_on_layers(p, layers, dest, root_fd, phase, on_progress, "", warn)
    return p


def _make_folder(dest):
    try:
        os.mkdir(dest, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot make {show_path(dest)}: {exc.strerror}") from None


def _existing_folder(root_fd: int, dest: bytes, e):
    """DEST's own folder at e.path, read as a scan reads it, or None when absent; OutputError
    when something else is there."""
    parent, name = split(e.path)
    try:
        dir_fd = open_dir(root_fd, parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot reach {show_path(os.path.join(dest, parent))}: "
                          f"{exc.strerror}") from None
    try:
        where = proc_path(dir_fd, name or b".")      # (DEST itself: its own ".")
        st = os.lstat(where)
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{show_path(os.path.join(dest, e.path))} is not a folder, where "
                              "the tree has one; nothing was changed")
        have = entry_from_stat(e.path, st)
        have.xattrs = read_xattrs(where)
        return have
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)


def _exists(root_fd: int, path: bytes) -> bool:
    parent, name = split(path)
    try:
        dir_fd = open_dir(root_fd, parent)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot look at {show_path(path)} in the destination: "
                          f"{exc.strerror}") from None
    try:
        os.lstat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot look at {show_path(path)} in the destination: "
                          f"{exc.strerror}") from None
    finally:
        os.close(dir_fd)


def cat(images, path, out_fd: int) -> int:
    """Write the content of the file at path in the chain images' tree to out_fd, checked
    against its digest; its size."""
    layers = open_chain(images)
    [rel] = wanted_paths([path])
    entry = next((e for e in layers[-1].entries() if e.path == rel), None)
    if entry is None:
        raise InputNotFound(f"{show_path(path)}: no such path in the tree of "
                            f"{show_path(layers[-1].path)}")
    if entry.kind is not Kind.FILE:
        raise InputNotFound(f"{show_path(path)} is a {entry.kind.name.lower()}, not a file")
    source = _source(layers, entry.digest)
    layer = layers[source.layer]
    if layer.remote:
        return _cat_remote(layer, source.path, entry, out_fd)
    with layer.content() as root:
        try:                # (a dir image's tree swapped for a symlink meanwhile: refused)
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ImageError(f"{show_path(layer.path)}: cannot open its content: "
                             f"{exc.strerror}") from None
        try:
            parent, name = split(source.path)
            dir_fd = open_dir(root_fd, parent)
            try:
                src = open_regular(dir_fd, name, os.O_RDONLY | os.O_CLOEXEC)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise ImageError(f"{show_path(layer.path)}: cannot read {show_path(source.path)} "
                             f"in its container: {exc.strerror}") from None
        finally:
            os.close(root_fd)
        hasher, size = xxhash.xxh3_128(), 0
        try:
            while size <= entry.size and (chunk := os.read(src, min(_CHUNK,
                                                                     entry.size + 1 - size))):
                hasher.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out_fd, view):]
        finally:
            os.close(src)
    if (size, hasher.digest()) != (entry.size, entry.digest):
        raise ImageError(f"{show_path(layer.path)}: the content of {show_path(path)} does not "
                         "match its digest (a damaged image?); what was written is not that file")
    return size


def _cat_remote(layer, stored: bytes, entry, out_fd: int) -> int:
    """cat of a file stored in a layer on a web server: its blocks fetched, written out in
    order, checked against its digest at the end (ImageError then, as for a local layer)."""
    class Out:
        writes_holes = True

        def __init__(self, path, size):
            pass

        def write(self, offset, data):
            view = memoryview(data)
            while view:
                view = view[os.write(out_fd, view):]

        def close(self):
            pass

        def abort(self):
            pass
    layer.content_reader().read([(stored, entry.digest, entry.size)], Out)
    return entry.size


def _source(layers, digest: bytes) -> Source:
    """Where the chain stores a content: the newest diff storing it, else the full image."""
    source = index_chain(layers).sources({digest}).get(digest)
    if source is None:
        raise ImageError(f"{show_path(layers[-1].path)}: no layer of the chain stores content "
                         f"{digest.hex()}")
    return source
