"""The dir format: a plain folder. The packer copies the content straight into IMAGE/tree, so
there is nothing to build and nothing to mount; the metadata is the new file IMAGE/diffimg.meta."""

import os

from . import Container

TREE = b"tree"
META = b"diffimg.meta"


class Dir(Container):
    name = "dir"
    needs_build = False

    def build(self, source: bytes, out: bytes, sizes=None):
        raise AssertionError("the dir format is built by staging into IMAGE/tree")

    def make_output(self, tmp: bytes):
        os.mkdir(tmp)

    def staging_folder(self, tmp: bytes, beside: bytes) -> bytes:
        return os.path.join(tmp, TREE)

    def content_length(self, tmp: bytes) -> int:
        return 0            # no container bytes precede the metadata

    def metadata_file(self, image: bytes) -> tuple[bytes, str]:
        return os.path.join(image, META), "xb"

    def content_folder(self, image: bytes) -> bytes | None:
        return os.path.join(image, TREE)
