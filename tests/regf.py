"""A minimal Windows registry hive file (regf), written from the format's layout, for tests of
what diffimg reads from a Windows tree's SOFTWARE hive: keys holding REG_SZ and REG_DWORD
values. Only what a reader needs: the base block, one hive bin, nk, li, vk and value-list
cells."""

import struct

REG_SZ, REG_DWORD = 1, 4


class _Cells:
    def __init__(self):
        self.data = bytearray()

    def add(self, body: bytes) -> int:
        """A used cell holding body; its offset from the start of the hive bins."""
        size = (4 + len(body) + 7) & ~7
        at = 0x20 + len(self.data)
        self.data += struct.pack("<i", -size) + body + bytes(size - 4 - len(body))
        return at


def _value(cells: _Cells, name: str, kind: int, value) -> int:
    if kind == REG_DWORD:
        raw = struct.pack("<I", value)
        length, where = 0x80000004, struct.unpack("<I", raw)[0]     # held inline
    else:
        raw = (value + "\0").encode("utf-16-le")
        length, where = len(raw), cells.add(raw)
    encoded = name.encode("ascii")
    return cells.add(b"vk" + struct.pack("<HIIIHH", len(encoded), length, where, kind, 1, 0)
                     + encoded)


def _key(cells: _Cells, name: str, tree: dict, parent: int, root: bool) -> int:
    """An nk cell for the key name holding tree: {subkey: dict, value name: (type, value)}."""
    values = [_value(cells, k, *v) for k, v in tree.items() if isinstance(v, tuple)]
    value_list = cells.add(struct.pack(f"<{len(values)}I", *values)) if values else 0xFFFFFFFF
    # the key's own cell is written after its children: they name it as their parent by a
    # placeholder fixed below
    children = [(k, v) for k, v in tree.items() if isinstance(v, dict)]
    at_fix = []
    child_cells = []
    for child, subtree in sorted(children, key=lambda c: c[0].upper()):
        offset = _key(cells, child, subtree, 0, False)
        child_cells.append(offset)
        at_fix.append(offset)
    subkeys = cells.add(b"li" + struct.pack(f"<H{len(child_cells)}I", len(child_cells),
                                            *child_cells)) if child_cells else 0xFFFFFFFF
    encoded = name.encode("ascii")
    flags = 0x2C if root else 0x20
    body = (b"nk" + struct.pack("<HQIIIIIIIIIIIIIIIHH", flags, 0, 0, parent, len(child_cells), 0,
                                subkeys, 0xFFFFFFFF, len(values), value_list, 0xFFFFFFFF,
                                0xFFFFFFFF, 0, 0, 0, 0, 0, len(encoded), 0) + encoded)
    me = cells.add(body)
    for child in at_fix:            # each child's parent field (offset 4 + 16 in its cell)
        at = child - 0x20 + 4 + 16
        cells.data[at:at + 4] = struct.pack("<I", me)
    return me


def hive(tree: dict) -> bytes:
    """The bytes of a hive whose root key holds tree."""
    cells = _Cells()
    root = _key(cells, "ROOT", tree, 0, True)
    used = 0x20 + len(cells.data)
    size = (used + 4095) & ~4095
    if size - used:
        cells.data += struct.pack("<i", size - used) + bytes(size - used - 4)   # free cell
    hbin = b"hbin" + struct.pack("<IIQQI", 0, size, 0, 0, 0) + bytes(cells.data)
    base = bytearray(4096)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, 0, 1, 5, 0, 1, root, size, 1)
    checksum = 0
    for (word,) in struct.iter_unpack("<I", bytes(base[:508])):
        checksum ^= word
    struct.pack_into("<I", base, 508, checksum)
    return bytes(base) + hbin
