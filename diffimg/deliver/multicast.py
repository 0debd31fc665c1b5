"""Whole images to a whole classroom by multicast, through udpcast (udp-sender, udp-receiver).

The port is derived from the image's tree ID (so two classrooms sending two images do not
mix), and the sender always runs with --max-wait and --retries-until-drop: it never waits
forever for a receiver that is not coming, and a receiver that stops answering is dropped
instead of holding the others back. udpcast has no checksum: a copy is proven by diffimg before
use (cache.check_copy), and a receiver that dropped out finishes the rest over HTTP ranges.
"""

import os

from ..errors import ToolError
from ..system import tools

PORT_FIRST = 9000
PORT_SLOTS = 2000


def port_of(tree_id: bytes) -> int:
    """udpcast's port base (even: it uses two ports) for an image's tree ID."""
    return PORT_FIRST + 2 * (int.from_bytes(tree_id[:4], "big") % PORT_SLOTS)


def send(image, tree_id: bytes, *, min_receivers: int, max_wait: int, retries_until_drop: int,
         interface: str | None = None, max_bitrate: str | None = None):
    """Send one image to the receivers that join (udp-sender); returns when it is sent."""
    cmd = ["udp-sender", "--file", os.fsdecode(image), "--portbase", str(port_of(tree_id)),
           "--min-receivers", str(min_receivers), "--max-wait", str(max_wait),
           "--retries-until-drop", str(retries_until_drop), "--nokbd", "--no-progress"]
    if interface:
        cmd += ["--interface", interface]
    if max_bitrate:
        cmd += ["--max-bitrate", max_bitrate]
    tools.run(cmd, "udp-sender")


def receive(part: bytes, tree_id: bytes, size: int, *, start_timeout: int, receive_timeout: int,
            interface: str | None = None) -> bool:
    """Receive one image of size bytes into part (udp-receiver, which may write no more: a
    sender that sends more is cut off); False when it ended before the end (the sender dropped
    it, or never came, or sent too much): the caller finishes the copy otherwise."""
    cmd = ["prlimit", f"--fsize={size}", "udp-receiver", "--file", os.fsdecode(part),
           "--portbase", str(port_of(tree_id)),
           "--nokbd", "--no-progress", "--start-timeout", str(start_timeout),
           "--receive-timeout", str(receive_timeout), "--exit-wait", "500"]
    if interface:
        cmd += ["--interface", interface]
    try:
        tools.run(cmd, "udp-receiver")
    except ToolError:
        return False
    return True
