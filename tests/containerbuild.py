"""A small real folder for the tests of containers: what it holds, the Sizes a container is
built for, and a check that a container shows it."""

import os

from diffimg.image.containers import Sizes

FILE_FORMATS = ["squashfs", "btrfs", "ext4"]
FILES = {b"a.txt": b"hello\n", b"empty": b"", b"sub/deeper/big.bin": os.urandom(300_000),
         b"sub/name with spaces \xff": b"any bytes in a name"}


def folder_with_files(root) -> tuple[bytes, Sizes]:
    """A small real folder holding FILES, and the Sizes of what it holds."""
    root = os.fsencode(root)
    for path, data in FILES.items():
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "wb") as f:
            f.write(data)
    sizes = Sizes()
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            sizes.add(len(name), folder=True)
        for name in files:
            sizes.add(len(name), os.path.getsize(os.path.join(folder, name)))
    return root, sizes


def assert_holds_files(shown: bytes):
    """The folder shown (a container's content) holds FILES."""
    for path, data in FILES.items():
        with open(os.path.join(shown, path), "rb") as f:
            assert f.read() == data, path
