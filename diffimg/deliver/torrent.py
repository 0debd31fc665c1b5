"""Whole images to a whole classroom by BitTorrent, through libtorrent's own Python bindings
(never a protocol of our own).

    make_torrent(image, web_seed)   IMAGE.torrent beside the image: BitTorrent v2 only (each
                                    piece trusted after its SHA-256 merkle hash), the web server
                                    as a web seed (BEP 19)
    seed(images, ...)               serve them until the time is up or Ctrl-C
    fetch(url, cache, ...)          url.torrent from the web server, the image into the cache
                                    from the peers (found on the LAN, BEP 14 local discovery,
                                    or named), and from the web seed when no peer has a piece

Settings as EZIO uses them on a LAN: no encryption, no uTP (TCP only), unlimited unchoke slots.
"""

import os
import time
import warnings

from ..errors import ImageError, InputNotFound, OutputError, RemoteError, ToolError, show_path
from ..system.http import Server
from ..system.safefs import private_to_us

PIECES = 2000                 # about this many pieces: more to share at once in a class
MIN_PIECE, MAX_PIECE = 256 << 10, 4 << 20
STALL_SECONDS = 120           # no byte from anyone for this long: give up (exit 18)
WEB_SEED_AFTER = 10           # no byte from a peer for this long: the web seed too
MAX_TORRENT = 64 << 20


def _lt():
    try:
        import libtorrent
    except ImportError:
        raise ToolError("BitTorrent needs libtorrent's Python bindings (pip install libtorrent, "
                        "or Debian's python3-libtorrent)") from None
    return libtorrent


def session(port: int, interface: str = "0.0.0.0"):
    lt = _lt()
    return lt.session({
        "listen_interfaces": f"{interface}:{port}",
        "enable_lsd": True, "enable_dht": False, "enable_upnp": False, "enable_natpmp": False,
        "out_enc_policy": int(lt.enc_policy.disabled), "in_enc_policy": int(lt.enc_policy.disabled),
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "unchoke_slots_limit": -1,
        "allow_multiple_connections_per_ip": True,    # a lab behind one address, or one machine
        "user_agent": "diffimg",
        "alert_mask": int(lt.alert.category_t.error_notification
                          | lt.alert.category_t.status_notification
                          | lt.alert.category_t.storage_notification),
    })


def piece_size(size: int) -> int:
    """A power of two near size / PIECES, from MIN_PIECE to MAX_PIECE."""
    piece = MIN_PIECE
    while piece < MAX_PIECE and piece * PIECES < size:
        piece *= 2
    return piece


def torrent_path(image) -> bytes:
    return os.fsencode(image) + b".torrent"


def make_torrent(image, web_seed: str | None = None) -> bytes:
    """Write IMAGE.torrent (v2 only; web_seed: the URL of the image's folder, ending in '/':
    a v2 torrent is laid out as a folder, its pad file included, and the web seed is asked for
    FOLDER/NAME) unless one with that web seed is there; its path."""
    lt = _lt()
    image = os.path.abspath(os.fsencode(image))
    out = torrent_path(image)
    if os.path.exists(out):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                seeds = [w["url"] for w in lt.torrent_info(os.fsdecode(out)).web_seeds()]
        except (RuntimeError, KeyError, TypeError):
            seeds = None
        if seeds == ([web_seed] if web_seed else []):
            return out
    fs = lt.file_storage()
    lt.add_files(fs, os.fsdecode(image))
    ct = lt.create_torrent(fs, piece_size(os.path.getsize(image)),
                           flags=lt.create_torrent.v2_only)
    if web_seed:
        ct.add_url_seed(web_seed)
    ct.set_creator("diffimg")
    lt.set_piece_hashes(ct, os.fsdecode(os.path.dirname(image)))
    data = lt.bencode(ct.generate())
    tmp = out + b".tmp-%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    return out


def seed(images, port: int, seconds: float | None, on_note=None, peers=()):
    """Seed the images (each with its IMAGE.torrent) for seconds, or until Ctrl-C."""
    lt = _lt()
    ses = session(port)
    handles = []
    for image in images:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(os.fsdecode(torrent_path(image)))
        atp.save_path = os.fsdecode(os.path.dirname(os.path.abspath(os.fsencode(image))))
        atp.flags |= lt.torrent_flags.seed_mode      # checked by diffimg: hashed on demand
        handles.append(ses.add_torrent(atp))
    for h in handles:
        for peer in peers:
            h.connect_peer(peer)
    if on_note:
        on_note(f"seeding {len(handles)} image(s) on port {port}")
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            _errors(ses)
            time.sleep(0.5)
    finally:
        uploaded = sum(h.status().all_time_upload for h in handles)
        ses.pause()
    return uploaded


def _errors(ses):
    lt = _lt()
    for alert in ses.pop_alerts():
        if isinstance(alert, (lt.file_error_alert, lt.torrent_error_alert)):
            raise ToolError(f"BitTorrent: {alert.message()}")


def _flushed(ses, handle, timeout: float = 120):
    """Wait until libtorrent has written every piece it holds to the file."""
    lt = _lt()
    handle.flush_cache()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.cache_flushed_alert):
                return
            if isinstance(alert, (lt.file_error_alert, lt.torrent_error_alert)):
                raise ToolError(f"BitTorrent: {alert.message()}")
        ses.wait_for_alert(500)
    raise ToolError("BitTorrent: the downloaded pieces were not written to the file in time")


def fetch(url: str, cache: bytes, name: str, port: int, check, peers=(), seed_for: float = 0,
          on_progress=None) -> bytes:
    """Download url's image by BitTorrent (its torrent at url + '.torrent') into a private
    folder of the cache; once complete, check(path) proves it (raising when it is not sound),
    and the copy is seeded for seed_for seconds more (others may still want its pieces). The
    path of the copy."""
    lt = _lt()
    server = Server(url + ".torrent")
    data = server.tail(MAX_TORRENT)
    if server.size is None or server.size >= MAX_TORRENT:
        raise InputNotFound(f"{url}.torrent: not a torrent file")
    try:
        info = lt.torrent_info(lt.bdecode(data))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ImageError(f"{url}.torrent: not a valid torrent ({exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        files = info.files()
    real = [files.file_path(n) for n in range(files.num_files())
            if not files.file_flags(n) & lt.file_storage.flag_pad_file]
    if real != [name] or not info.info_hashes().has_v2():
        raise ImageError(f"{url}.torrent: not a v2 torrent of the one file {name}")
    folder_fd, part = _part_folder(cache, name)
    # libtorrent writes beneath the very folder diffimg opened (never one swapped meanwhile)
    folder = b"/proc/%d/fd/%d" % (os.getpid(), folder_fd)
    # the web seed is held back: the server's bytes go to the peers, which share them; a client
    # with no peer sending for WEB_SEED_AFTER seconds (the first, or one alone) takes it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        web_seeds = [w["url"] for w in info.web_seeds()]
    info.set_web_seeds([])
    ses = session(port)
    atp = lt.add_torrent_params()
    atp.ti = info
    atp.save_path = os.fsdecode(folder)
    handle = ses.add_torrent(atp)
    for peer in peers:
        handle.connect_peer(peer)
    last, last_change = -1, time.monotonic()
    try:
        while True:
            _errors(ses)
            status = handle.status()
            if status.is_seeding:
                break
            now = time.monotonic()
            if status.total_wanted_done != last:
                last, last_change = status.total_wanted_done, now
                if on_progress is not None:
                    on_progress(0, status.total_wanted_done)
            if web_seeds and now - last_change > WEB_SEED_AFTER:
                for url_seed in web_seeds:
                    handle.add_url_seed(url_seed)
                web_seeds = []
                last_change = now
            elif now - last_change > STALL_SECONDS:
                raise RemoteError(f"{url}: no peer or web seed sent anything for "
                                  f"{STALL_SECONDS} s")
            time.sleep(0.2)
        _flushed(ses, handle)        # seeding is said before the last pieces reach the file
        check(os.path.join(folder, os.fsencode(name)))
        if seed_for > 0:                 # the others may still want pieces of this copy
            deadline = time.monotonic() + seed_for
            while time.monotonic() < deadline:
                _errors(ses)
                time.sleep(0.5)
        os.unlink(os.fsencode(name), dir_fd=folder_fd)     # (check gave the copy its name)
        cache_fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.rmdir(part, dir_fd=cache_fd)
        finally:
            os.close(cache_fd)
    finally:
        ses.remove_torrent(handle)
        ses.pause()
        os.close(folder_fd)


def _part_folder(cache: bytes, name: str) -> tuple[int, bytes]:
    """The fd of the cache's folder for a partial download of name (made when missing; never
    a symlink, always this user's), and its name."""
    part = b".%s.torrent-part" % os.fsencode(name)
    cache_fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.mkdir(part, 0o700, dir_fd=cache_fd)
        except FileExistsError:
            pass
        fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=cache_fd)
    except OSError as exc:
        raise OutputError(f"cannot use {show_path(os.path.join(cache, part))}: {exc.strerror}; "
                          "remove it") from None
    finally:
        os.close(cache_fd)
    if not private_to_us(os.fstat(fd)):
        os.close(fd)
        raise OutputError(f"{show_path(os.path.join(cache, part))} is not this user's; remove it")
    return fd, part
