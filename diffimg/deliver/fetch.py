"""Copy a whole image from a web server into a cache folder: by byte ranges, by BitTorrent
between the clients (the web server a web seed), or by udpcast multicast with the rest over
HTTP; a copy gets its name in the cache only once every stored file's digest is proven."""

import contextlib
import os
import stat
import urllib.parse

from ..errors import ImageError, OutputError, show_path
from ..image.chain import open_image
from ..progress import human_bytes
from ..system.safefs import pwrite_all
from . import cache, multicast, torrent

RESUME_BACK = 4 << 20      # a receiver that dropped out: the last bytes it wrote are fetched again


def to_cache(url, cache_dir: bytes, via: str, progress, note, *, port: int = 6881, peers=(),
             seed_for: float = 0, interface=None, start_timeout: int = 120,
             receive_timeout: int = 20) -> bytes:
    """The path of the proven copy of the image at url in cache_dir, fetched via "http",
    "torrent" or "multicast" unless a sound copy is there already (note(message) says what
    was found); progress is a ProgressLine."""
    name = cache.cached_name(url)
    dest = os.path.join(cache_dir, os.fsencode(name))
    if cache.in_cache(dest, open_image(url), note):
        return dest
    if via == "http":
        return cache.fetch_http(url, cache_dir, on_progress=progress)
    if via == "torrent":
        return _by_torrent(url, cache_dir, name, dest, port, list(peers), seed_for, progress)
    return _by_multicast(url, cache_dir, name, dest, interface, start_timeout, receive_timeout,
                         progress)


def _by_torrent(url, cache_dir, name, dest, port, peers, seed_for, progress) -> bytes:
    def check(path):
        """A sound copy takes its name at once (a second link: it is seeded on meanwhile)."""
        problems = cache.check_copy(path)
        if problems:
            raise ImageError(f"the copy of {name} is damaged ({problems[0]})")
        if os.path.lexists(dest) and not stat.S_ISREG(os.lstat(dest).st_mode):
            raise OutputError(f"{show_path(dest)} is not a file; remove it")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
        os.link(path, dest, follow_symlinks=False)
    if not peers:                   # the seeder, on the web server's machine, at this port
        peers = [(urllib.parse.urlsplit(url).hostname, port)]
    torrent.fetch(url, cache_dir, name, port, check, peers, seed_for, progress)
    return dest


def _by_multicast(url, cache_dir, name, dest, interface, start_timeout, receive_timeout,
                  progress) -> bytes:
    remote = open_image(url)
    size = remote.server.size
    part = os.path.join(cache_dir, os.fsencode(cache.part_name(name)))
    fd = cache.open_part(part)
    try:
        os.ftruncate(fd, 0)             # a new copy each time
        # udp-receiver writes the very file diffimg opened (never a name swapped meanwhile)
        whole = multicast.receive(b"/proc/%d/fd/%d" % (os.getpid(), fd), remote.tree_id, size,
                                  start_timeout=start_timeout, receive_timeout=receive_timeout,
                                  interface=interface)
        have = os.fstat(fd).st_size
        if not whole or have != size:
            progress.warn(f"{name}: multicast ended at {human_bytes(have)} of "
                          f"{human_bytes(size)}; fetching the rest over HTTP")
            start = max(0, min(have, size) - RESUME_BACK)
            os.ftruncate(fd, start)
            remote.server.fetch([(start, size - start)],
                                lambda offset, data: pwrite_all(fd, data, offset))
    except OSError as exc:
        raise OutputError(f"cannot write {show_path(part)}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return cache.settle(part, dest)
    except ImageError:                  # udpcast has no checksum: one more try, all by HTTP
        progress.warn(f"{name}: the multicast copy is damaged; fetching it over HTTP")
        return cache.fetch_http(url, cache_dir, on_progress=progress)
