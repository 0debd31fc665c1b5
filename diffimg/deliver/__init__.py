"""Bringing whole images to a classroom's caches: HTTP, BitTorrent, multicast."""
