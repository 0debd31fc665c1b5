"""The delta: what a differential image does to its parent tree (spec/image.md).

One record per changed path, in canonical order. The entry itself (every attribute) is in the
image's manifest; the record says how to obtain it.
"""

from dataclasses import dataclass

DELETE = "delete"    # the path (with its subtree) is gone
STORE = "store"      # file content stored in this image, at the same path
COPY = "copy"        # file content stored in this image at another path (source)
PARENT = "parent"    # file content already in the parent tree, at source
META = "meta"        # same content at the same path; only metadata changed
NEW = "new"          # a non-file entry, new or changed (folder, symlink, device, FIFO, socket)
LINK = "link"        # a later hardlink member of source (its group's first path)

ACTIONS = (DELETE, STORE, COPY, PARENT, META, NEW, LINK)
_ACTIONS = set(ACTIONS)


@dataclass(slots=True)
class Change:
    path: bytes
    action: str
    source: bytes | None = None     # COPY, PARENT: where the content is; LINK: the first member
    replaces: bool = False          # the parent has another kind of entry here: remove it first
    digest: bytes | None = None     # files: the content (in memory while classifying; recorded)

    def to_record(self) -> list:
        return [self.path, self.action, self.source, self.replaces, self.digest]

    @classmethod
    def from_record(cls, rec) -> "Change":
        if type(rec) is not list or len(rec) < 5 or type(rec[0]) is not bytes \
                or rec[1] not in _ACTIONS or (rec[2] is not None and type(rec[2]) is not bytes) \
                or type(rec[3]) is not bool or (rec[4] is not None and type(rec[4]) is not bytes):
            raise ValueError(f"bad delta record {rec!r:.80}")
        return cls(rec[0], rec[1], rec[2], rec[3], rec[4])
