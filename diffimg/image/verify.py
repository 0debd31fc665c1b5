"""Verify images: metadata intact, chain linked, and the container holding every stored file
with the content its manifest or delta says."""

import itertools
import mmap
import os

from ..entry import content_files
from ..errors import DiffimgError, InputNotFound, NeedsRoot, RemoteError, ToolError, show_path
from ..progress import Phase
from ..scan.hashing import Beneath, Problem, hash_batch
from ..system.workers import run_pooled
from ..tree.delta import check_applied, check_delta, stored_contents
from ..windows import streams
from .chain import misplaced, open_image
from .format import Image, ImageKind


def verify_chain(paths, on_layer=None, on_note=None, on_phase=None, on_progress=None) -> list[str]:
    """Problems found in the chain of images at paths (empty when all is good). A chain that
    starts with a diff (its parent not given) is checked in all that needs no parent, and
    on_note(message) says what was not. on_phase(Phase, detail, total=...) as each layer's
    stored content is checked, on_progress(files, bytes) as it is."""
    problems = []
    previous = None
    for index, path in enumerate(paths):
        name = show_path(path)
        if on_layer is not None:
            on_layer(name)
        try:
            image = open_image(path)
        except (InputNotFound, RemoteError):
            raise                    # bad input (exit 3) or server (18, 19), not a bad image
        except DiffimgError as exc:
            problems.append(exc.message)
            previous = None
            continue
        problems += image.check_blobs()
        if index == 0 and image.kind != ImageKind.FULL and on_note is not None:
            on_note(f"{name} is a diff and its parent was not given: its link to the parent, and "
                    "that the parent's tree changed by its delta is its tree, are not checked "
                    "(give the whole chain: verify BASE [DIFF...])")
        if index > 0 and image.kind != ImageKind.DIFF:
            problems.append(f"{name}: a full image cannot follow another layer")
        if previous is not None and image.kind == ImageKind.DIFF and image.parent_id != previous.tree_id:
            # one line naming the misplaced layer, not every path its parent's tree lacks
            problems.append(misplaced(_opened_quietly(paths), previous, image))
            previous = None
        try:
            # one read of the manifest: checked whole, and for a full image it also lists the
            # files to hash while they are hashed
            delta = None
            if on_phase is not None:
                on_phase(Phase.VERIFYING, name, total=(image.info.get("stored_files", 0),
                                                       image.info.get("stored_bytes", 0)))
            with image.manifest_reader() as m:
                found = []
                if image.kind == ImageKind.FULL:
                    found += _check_content(image, stored_files(image, m.entries()), on_progress)
                else:
                    delta = image.delta()
                    found += check_delta(m.entries(), delta)
                    found += _check_content(image, stored_files(image, delta=delta), on_progress)
                if m.trailer["tree_id"] != image.tree_id:
                    found.append("manifest's tree ID does not match the image's")
                m.check_stat_section()
            if image.kind == ImageKind.DIFF and previous is not None and not found:
                found += check_applied(previous.entries(), delta, image.entries())
            problems += [f"{name}: {p}" for p in found]
        except (ToolError, NeedsRoot, RemoteError):
            raise                    # the machine (or server) cannot check it: not a bad image
        except DiffimgError as exc:
            problems.append(exc.message)
        previous = image
    return problems


def _opened_quietly(paths) -> list:
    """The images among paths that open (for naming a misplaced layer's parent)."""
    opened = []
    for path in paths:
        try:
            opened.append(open_image(path))
        except DiffimgError:
            pass
    return opened


def stored_files(image, entries=None, delta=None):
    """(container path, digest, size, ...) of each file the image's container must hold: a full
    image's files that are not later hardlink members (from entries, its manifest's, when
    given), a diff's store records (from delta, when given), and the large streams of either."""
    if image.kind == ImageKind.FULL:
        return itertools.chain(content_files(image.entries() if entries is None else entries),
                               streams.stored_items(streams.of_entries(image.entries())))
    return stored_contents(image.delta() if delta is None else delta)


def _check_content(image: Image, stored, on_progress=None) -> list[str]:
    """Problems with the files the container must hold: stored, (path, digest, size) (and, for
    a large stream, where it was read). A remote image's are fetched and hashed as they come
    (nothing is written); a local image's ranges blob must also match its container's own
    tables, since remote clients trust it (remote.py)."""
    if image.remote:
        bad = image.content_reader().check([item[:3] for item in stored], on_progress)
        return bad + check_ranges(image)
    bad = check_ranges(image)
    done = [0, 0]

    def check(item, hashed):
        path, digest, size = item[:3]
        if on_progress is not None and hashed.content is not None:
            done[0] += 1
            done[1] += hashed.content.size
            on_progress(*done)
        if hashed.problem is Problem.VANISHED:
            bad.append(f"{show_path(path)}: missing from the container")
        elif hashed.problem is not None:
            bad.append(f"{show_path(path)}: {hashed.message}")
        elif hashed.content.digest != digest:
            bad.append(f"{show_path(path)}: content does not match its digest")
        elif hashed.content.size != size:
            bad.append(f"{show_path(path)}: holds {hashed.content.size:,} bytes, its record says "
                       f"{size:,}")

    with image.content() as root:
        items = ((Beneath(os.fsencode(root), item[0]), item) for item in stored)
        run_pooled(hash_batch, items, check)
    return bad


def check_ranges(image: Image) -> list[str]:
    """Problems with a squashfs image's ranges blob: it must locate every file exactly where
    the container's own tables do. An image on a web server: its superblock and tables are
    fetched first (into its local copy of its metadata)."""
    if "ranges" not in image.blobs:
        return []
    from .remote import read_ranges
    from .squashmap import SquashfsError, read_map
    length = image.container.get("length", 0)
    try:
        block_size, fragments, files = read_ranges(image)
        source = image.container_tables() if image.remote else image.path
        with open(source, "rb") as f, mmap.mmap(f.fileno(), length,
                                                 prot=mmap.PROT_READ) as data:
            tables = read_map(data, length, files)
    except (OSError, ValueError, SquashfsError) as exc:
        return [f"its container's tables cannot be read ({exc})"]
    except RemoteError:
        raise                        # the server's failure, not the image's
    except DiffimgError as exc:
        return [exc.message]
    if block_size != tables["block_size"] or fragments != tables["fragments"] or {
            path: [b.start, list(b.words), b.fragment, b.fragment_offset, b.size]
            for path, b in files.items()} != {rec[0]: rec[1:] for rec in tables["files"]}:
        return ["its ranges blob does not match its container (remote clients would read "
                "other bytes)"]
    return []
