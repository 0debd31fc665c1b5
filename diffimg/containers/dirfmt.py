"""The dir format: a plain folder. The content is copied into IMAGE/tree by the packer, so
there is nothing to build and nothing to mount."""

fstype = None
TREE = b"tree"
META = b"diffimg.meta"


def build(source: bytes, out: bytes, sizes=None):
    raise AssertionError("the dir format is built by staging into IMAGE/tree")
