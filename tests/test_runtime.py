"""plp/runtime.py: the garbage collector settled once the server has started."""

from __future__ import annotations

import gc

from plp.runtime import GC_YOUNG_THRESHOLD, settle_memory


def test_settle_memory_freezes_startup_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        settle_memory()
        assert gc.get_freeze_count() > 0  # what existed at start is out of the collector's view
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        assert gc.isenabled()  # cycles are still collected, just less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
