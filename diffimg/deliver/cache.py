"""A cache folder of whole images, as an imaging client's cache partition holds them.

    fetch_http(url, cache)      the image at url copied into cache, resumed where a copy
                                stopped, and proven before it gets its name
    check_copy(path)            problems with a copied image: metadata and every stored file
    cached_name(url)            the name a copy gets in the cache (the URL's last part)

A copy is written to `.NAME.part` and renamed to NAME only once its metadata digests and every
stored file's content check out (whatever brought it: HTTP, BitTorrent, multicast). A cached
NAME is checked again before it is trusted; a damaged one is fetched again.
"""

import os
import stat
import urllib.parse

from ..errors import DiffimgError, ImageError, InputNotFound, OutputError, show_path
from ..image.chain import open_image
from ..image.format import Image
from ..image.remote import ContentReader, file_fetch
from ..image.verify import check_ranges, stored_files
from ..system.safefs import private_to_us, pwrite_all


def cached_name(url: str) -> str:
    """The URL path's last part: a plain file name (no folder, not hidden)."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name.startswith(".") or "/" in name or not name.isprintable() \
            or len(name) > 200:
        raise InputNotFound(f"{url}: does not end in an image's file name")
    return name


def part_name(name: str) -> str:
    return f".{name}.part"


def check_copy(path, on_progress=None) -> list[str]:
    """Problems with an image copied whole: its metadata (footer, index, every blob's digest)
    and every file its container stores, read through its ranges blob (no mount)."""
    try:
        image = Image(path)
    except DiffimgError as exc:
        return [exc.message]
    problems = image.check_blobs()
    if problems:
        return problems
    if "ranges" not in image.blobs:
        return [f"{show_path(path)}: a {image.format} image has no ranges blob; only squashfs "
                "images are copied whole by diffimg fetch"]
    try:
        reader = ContentReader(image, file_fetch(path))
        problems += reader.check([item[:3] for item in stored_files(image)], on_progress)
    except DiffimgError as exc:
        problems.append(exc.message)
    problems += check_ranges(image)     # the blob remote clients trust: as the tables say
    return [p if p.startswith(show_path(path)) else f"{show_path(path)}: {p}" for p in problems]


def in_cache(dest: bytes, remote, on_note=None) -> bool:
    """Whether dest already holds the remote image, sound: the server's size and tree, every
    stored file checked (then nothing is fetched, nor a swarm or multicast joined)."""
    if not os.path.isfile(dest) or os.path.islink(dest):
        return False
    name = show_path(os.path.basename(dest))
    if os.path.getsize(dest) == remote.server.size and _same_tree(dest, remote.tree_id) \
            and not check_copy(dest):
        if on_note:
            on_note(f"{name}: already in the cache")
        return True
    if on_note:
        on_note(f"{name}: the cached copy is not the server's or is damaged; fetching it again")
    return False


def fetch_http(url: str, cache: bytes, on_progress=None) -> bytes:
    """Copy url's image into the cache folder over HTTP (resuming a partial copy); its path.
    ImageError when the copy does not check out."""
    name = cached_name(url)
    remote = open_image(url)
    size = remote.server.size
    dest = os.path.join(cache, os.fsencode(name))
    part = os.path.join(cache, os.fsencode(part_name(name)))
    fd = open_part(part)
    try:
        have = os.fstat(fd).st_size
        if have > size:
            os.ftruncate(fd, 0)
            have = 0
        done = [have]

        def sink(offset, data):
            pwrite_all(fd, data, offset)
            done[0] += len(data)
            if on_progress is not None:
                on_progress(1, done[0])
        remote.server.fetch([(have, size - have)], sink)
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {show_path(part)}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return settle(part, dest)


def check_cache_folder(cache) -> bytes:
    """cache as bytes, when it is a folder of this user's that no one else can write (a name
    planted there, a symlink or a FIFO, could send a copy elsewhere); OutputError otherwise."""
    cache = os.fsencode(cache)
    try:
        st = os.stat(cache)
    except OSError:
        raise InputNotFound(f"no such folder: {show_path(cache)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InputNotFound(f"{show_path(cache)} is not a folder")
    if not private_to_us(st):
        raise OutputError(f"{show_path(cache)}: the cache folder must be owned by this user and "
                          "writable by no one else (chmod go-w): what others plant there could "
                          "send a copy elsewhere")
    # nor may anyone else rename it or a folder above it (a sticky folder such as /tmp keeps
    # what is ours), nor swap a symlink on the way to it
    for folder in sorted(_folders_on_the_way(cache)):
        above = os.stat(folder)
        if above.st_uid not in (0, os.geteuid()) or (above.st_mode & 0o022
                                                     and not above.st_mode & stat.S_ISVTX):
            raise OutputError(f"{show_path(cache)}: {show_path(folder)} above the cache "
                              "folder can be changed by others; use a cache folder only this "
                              "user and root can reach")
    return cache


_MAX_HOPS = 40          # symlinks followed on the way, as the kernel allows


def _folders_on_the_way(path: bytes) -> set[bytes]:
    """Every folder whose entries are read to reach path, as the kernel resolves it (each
    symlink followed where it lies, ".." from where it is reached), with every folder above
    each: who can change one of them can send path elsewhere. path's own folder aside."""
    passed: set[bytes] = set()
    here = os.getcwd().encode() if not path.startswith(b"/") else b"/"
    todo = path.split(b"/")
    hops = 0
    while todo:
        name = todo.pop(0)
        if name in (b"", b"."):
            continue
        if name == b"..":
            here = os.path.dirname(here)
            continue
        passed.add(here)
        there = os.path.join(here, name)
        try:
            st = os.lstat(there)
        except OSError as exc:
            raise InputNotFound(f"{show_path(path)}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_HOPS:
                raise InputNotFound(f"{show_path(path)}: too many symlinks on the way")
            target = os.readlink(there)
            here = b"/" if target.startswith(b"/") else here
            todo = target.split(b"/") + todo
        else:
            here = there
    above = set()
    for folder in passed:
        while folder not in above:
            above.add(folder)
            folder = os.path.dirname(folder)
    return above


def open_part(part: bytes) -> int:
    """The partial copy's fd (made when missing): a regular file, never followed through a
    symlink, never blocking on a FIFO; OutputError otherwise."""
    try:
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o600)
    except OSError as exc:
        raise OutputError(f"cannot write {show_path(part)}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"{show_path(part)} is not a file; remove it")
    return fd


def _same_tree(path, tree_id: bytes) -> bool:
    try:
        return Image(path).tree_id == tree_id
    except DiffimgError:
        return False


def settle(part: bytes, dest: bytes) -> bytes:
    """Give a complete copy its name once it checks out; a bad one is removed (ImageError)."""
    problems = check_copy(part)
    if problems:
        os.unlink(part)
        raise ImageError(f"the copy of {show_path(os.path.basename(dest))} is damaged "
                         f"({problems[0]}); it was removed: fetch it again")
    if os.path.lexists(dest) and not stat.S_ISREG(os.lstat(dest).st_mode):
        raise OutputError(f"{show_path(dest)} is not a file; remove it")
    os.replace(part, dest)
    return dest
