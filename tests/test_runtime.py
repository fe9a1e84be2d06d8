"""plp/runtime.py: the garbage collector settled once the server has started, and HTTP dates
made once per second."""

from __future__ import annotations

import calendar
import datetime as _dt
import email.utils
import gc
import time

import pytest
from tornado import httputil

from plp.runtime import GC_YOUNG_THRESHOLD, cache_http_dates, settle_memory


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


@pytest.fixture
def cached_dates(monkeypatch):
    monkeypatch.setattr(httputil, "format_timestamp", httputil.format_timestamp)
    cache_http_dates()
    return httputil.format_timestamp


def _expected(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def test_http_dates_are_the_same_text_within_and_across_seconds(cached_dates):
    assert cached_dates.plp_cached
    # Within one second, the next, back (a clock step), an int, and the epoch.
    for ts in (
        1_700_000_000.0,
        1_700_000_000.999,
        1_700_000_001.2,
        1_700_000_000.5,
        1_800_000_000,
        0.3,
    ):
        assert cached_dates(ts) == _expected(ts), ts
    now = time.time()
    assert cached_dates(now) == _expected(now)


def test_other_timestamps_are_formatted_as_before(cached_dates):
    moment = _dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=_dt.UTC)
    expected = "Mon, 06 May 2030 07:08:09 GMT"
    assert cached_dates(moment) == expected
    assert cached_dates(moment.utctimetuple()) == expected
    assert cached_dates(-1.5) == _expected(calendar.timegm(time.gmtime(-1.5)))
    with pytest.raises(TypeError):
        cached_dates("yesterday")


def test_installing_twice_wraps_once(cached_dates):
    cache_http_dates()
    assert httputil.format_timestamp is cached_dates
