"""plp/redis/client.py: which Redis errors mean "cannot be reached or cannot store" (503),
and which are bugs to be seen."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    ConnectionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from plp.redis.client import is_down, unavailable
from plp.sessions.base import SessionStoreUnavailable

MISCONF = (
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist "
    "to disk. Commands that may modify the data set are disabled."
)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("refused"),
        TimeoutError("slow"),
        OSError("reset"),
        OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
        ReadOnlyError("READONLY You can't write against a read only replica."),
        ResponseError(MISCONF),
    ],
)
def test_unreachable_or_unable_to_store(exc):
    assert is_down(exc)


@pytest.mark.parametrize(
    "exc",
    [ResponseError("ERR wrong number of arguments"), NoScriptError("NOSCRIPT"), ValueError()],
)
def test_other_errors_are_bugs_not_outages(exc):
    assert not is_down(exc)


@pytest.mark.gen_test
async def test_unavailable_turns_only_outages_into_503():
    @unavailable
    async def failing(exc: Exception) -> None:
        raise exc

    with pytest.raises(SessionStoreUnavailable):
        await failing(ResponseError(MISCONF))
    with pytest.raises(ResponseError):
        await failing(ResponseError("ERR syntax error"))
