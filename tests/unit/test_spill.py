"""SpillList: a list kept mostly on disk, for the plans of very large trees."""

import os

from diffimg.system import runs, spill


def test_items_come_back_in_order_as_often_as_asked_and_only_the_tail_stays_in_memory():
    items = [(b"path/%d" % i, i, os.urandom(16)) for i in range(3 * spill.BATCH + 5)]
    kept = spill.SpillList()
    assert not kept and len(kept) == 0 and list(kept) == []
    for item in items:
        kept.append(item)
    assert len(kept) == len(items) and kept
    assert len(kept._tail) == 5 and len(kept._batches) == 3
    assert list(kept) == items and list(kept) == items
    # the spilled batches are in an unlinked file of this run's folder: nothing has a name
    assert [name for name in os.listdir(runs.current().folder) if name.startswith(b"tmp")] == []
    kept.close()
