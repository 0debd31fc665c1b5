"""diffimg fetch / seed: whole images to a classroom's caches, by HTTP, BitTorrent or multicast.

    server:   diffimg seed IMAGE... --via torrent --web-seed http://server/images
              diffimg seed IMAGE... --via multicast --min-receivers 30
    clients:  diffimg fetch http://server/images/base.img ... --cache /cache --via torrent
              diffimg restore /cache/base.img ... /mnt/target
"""

import os
import sys
import time

import click

from ..deliver import cache, fetch, multicast, torrent
from ..errors import show_path
from ..image.format import Image
from ..progress import ProgressLine, human_bytes
from . import cli, progress_option


def _peer(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{text}: not HOST:PORT")
    return host.strip("[]"), int(port)


@cli.command("fetch")
@click.argument("urls", nargs=-1, required=True)
@click.option("--cache", "cache_dir", required=True, type=click.Path(path_type=bytes),
              help="The folder the images are copied into (a cache partition).")
@click.option("--via", type=click.Choice(["http", "torrent", "multicast"]), default="http",
              show_default=True, help="How the bytes come: byte ranges from the web server, "
              "BitTorrent between the clients (the web server a web seed), or udpcast multicast "
              "(the rest over HTTP if the receiver drops out).")
@click.option("--port", type=int, default=6881, show_default=True,
              help="torrent: the port this client listens on.")
@click.option("--peer", "peers", multiple=True, help="torrent: HOST:PORT of a peer to join "
              "(default: the seeder on the web server's host, at --port); the others are found "
              "on the LAN (local service discovery).")
@click.option("--seed-for", type=float, default=0, show_default=True,
              help="torrent: seconds to go on seeding a finished image to the others.")
@click.option("--interface", help="multicast: the network interface to receive on.")
@click.option("--start-timeout", type=int, default=120, show_default=True,
              help="multicast: seconds to wait for the sender to start.")
@click.option("--receive-timeout", type=int, default=20, show_default=True,
              help="multicast: seconds without data before the rest is fetched over HTTP.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@progress_option
def fetch_command(urls, cache_dir, via, port, peers, seed_for, interface, start_timeout,
                  receive_timeout, quiet):
    """Copy the images at URLS into the cache folder, each proven (every stored file's digest)
    before it gets its name; print their paths. A copy already in the cache is checked and
    kept; a damaged one is fetched again."""
    cache_dir = cache.check_cache_folder(cache_dir)
    peer_addresses = [_peer(p) for p in peers]
    for url in urls:
        started = time.monotonic()
        progress = ProgressLine(f"fetching {url}", quiet, unit="files")

        def note(message, quiet=quiet):
            if not quiet:
                print(f"diffimg: {message}", file=sys.stderr)
        path = fetch.to_cache(url, cache_dir, via, progress, note, port=port, peers=peer_addresses,
                              seed_for=seed_for, interface=interface, start_timeout=start_timeout,
                              receive_timeout=receive_timeout)
        progress.clear()
        if not quiet:
            size = os.path.getsize(path)
            print(f"diffimg: {show_path(path)}: {human_bytes(size)} in "
                  f"{time.monotonic() - started:.1f} s, checked", file=sys.stderr)
        sys.stdout.buffer.write(os.fsencode(path) + b"\n")
    return 0


@cli.command("seed")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=bytes))
@click.option("--via", type=click.Choice(["torrent", "multicast"]), required=True)
@click.option("--web-seed", help="torrent: the web server's URL of the images' folder, written "
              "into each new IMAGE.torrent as its web seed (BEP 19).")
@click.option("--port", type=int, default=6881, show_default=True, help="torrent: the port.")
@click.option("--for", "seconds", type=float, help="torrent: seed this many seconds (default: "
              "until Ctrl-C).")
@click.option("--min-receivers", type=int, default=1, show_default=True,
              help="multicast: start once this many receivers have joined.")
@click.option("--max-wait", type=int, default=60, show_default=True,
              help="multicast: start this many seconds after the first receiver joined, "
              "however many there are.")
@click.option("--retries-until-drop", type=int, default=30, show_default=True,
              help="multicast: drop a receiver that stopped answering after this many retries.")
@click.option("--max-bitrate", help="multicast: udp-sender's --max-bitrate (e.g. 600m).")
@click.option("--interface", help="multicast: the network interface to send on.")
def seed_command(images, via, web_seed, port, seconds, min_receivers, max_wait,
                 retries_until_drop, max_bitrate, interface):
    """Serve whole images to a classroom: seed them by BitTorrent (IMAGE.torrent is made beside
    each image, for the web server to serve with it), or send each once by multicast."""
    opened = [Image(image) for image in images]          # bad input is said before anything
    if via == "torrent":
        for image in images:
            torrent.make_torrent(image, web_seed.rstrip("/") + "/" if web_seed else None)
        sent = torrent.seed(images, port, seconds,
                            on_note=lambda m: print(f"diffimg: {m}", file=sys.stderr))
        print(f"diffimg: seeded {human_bytes(sent)}", file=sys.stderr)
        return 0
    for image, img in zip(images, opened):
        print(f"diffimg: sending {show_path(image)} on port {multicast.port_of(img.tree_id)}",
              file=sys.stderr)
        multicast.send(image, img.tree_id, min_receivers=min_receivers, max_wait=max_wait,
                       retries_until_drop=retries_until_drop, interface=interface,
                       max_bitrate=max_bitrate)
    return 0
