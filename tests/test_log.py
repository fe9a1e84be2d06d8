"""Log hygiene (SPEC §3, §11) over every log record and audit row of the test session: the
scanner of tests/support/hygiene.py, and the session-wide check it feeds; the log formats,
and the access line written straight to plp's own handler (plp/log.py)."""

from __future__ import annotations

import io
import logging
import logging.handlers
import re
import secrets
import sys

import pytest

from tests.support import PASSWORD
from tests.support.hygiene import HYGIENE, find_leaks, harvest

NAME = "plp_session"


@pytest.mark.gen_test
async def test_scanner_catches_planted_values(ctx, io_loop):
    planted = "planted-" + secrets.token_hex(16)
    assert not find_leaks({planted: "planted"}, HYGIENE.records)
    logging.getLogger("plp.somewhere").warning("oops, leaked %s here", planted)
    leaks = find_leaks({planted: "planted"}, HYGIENE.records)
    assert len(leaks) == 1 and "plp.somewhere" in leaks[0]
    # Through the audit trail: a detail value is kept (and found), a secret-named key dropped.
    other = "planted-" + secrets.token_hex(16)
    await ctx.audit.record("logout", username="x", note=other)
    await ctx.audit.record("logout", username="x", password_hash=planted + "-dropped")
    rows = [str(e.to_json()) for e in await ctx.db.list_audit(10)]
    assert find_leaks({other: "planted"}, rows)
    assert not find_leaks({planted + "-dropped": "planted"}, rows)
    # Secrets nobody registered are still caught by their shape.
    assert find_leaks({}, ["cookie 2|1:0|10:1700000000|11:plp_session|4:YWJj|ab"])
    assert find_leaks({}, ["hash $2b$04$" + "a" * 53])
    assert not find_leaks({}, ["an ordinary line 2|3 with $2 in it"])
    # Throw away the planted audit rows so the session-wide check does not see them.
    HYGIENE.records[:] = [r for r in HYGIENE.records if planted not in r]


@pytest.mark.gen_test
async def test_session_log_hygiene(make_client, make_user, ctx, clock):
    """Runs after every other in-process test (see tests/support/hygiene.py)."""
    # An attack scenario of its own, so the check means something even when run alone.
    await make_user("victim")
    await make_user("boss", "admin")
    attacker = make_client()
    for guess in ("letmein12", "password1!", "victim2024", "qwertyuiop", "iloveyou99", "x" * 300):
        await attacker.login("victim", guess)
    await attacker.login("victim", PASSWORD)  # throttled
    await attacker.fetch("/api/auth/login", "POST", json_body={"username": "victim"}, xsrf=False)
    clock.advance(3600)
    user = make_client()
    assert (await user.login("victim")).code == 200
    await user.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": "bad guess here", "newPassword": "next secret words"},
    )
    await user.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": PASSWORD, "newPassword": "next secret words"},
    )
    cookie = user.cookies[NAME]
    await make_client().fetch("/api/users/me", headers={"Cookie": f"{NAME}={cookie}x"})
    await make_client().fetch(f"/login?next=/x&password={PASSWORD}")
    await make_client().register("newkid", password="brand new kid password")
    await user.fetch("/api/auth/logout", "POST")
    await make_client().fetch("/api/users/me", headers={"Cookie": f"{NAME}={cookie}"})
    boss = make_client()
    await boss.login("boss")
    await boss.fetch("/api/admin/audit")
    await harvest(ctx, "test_session_log_hygiene")

    kinds = {kind.split(" (")[0] for kind in HYGIENE.secrets.values()}
    assert {"password", "session token", "session token hash", "session cookie"} <= kinds
    assert {"password hash", "bcrypt hash"} <= kinds
    assert len(HYGIENE.records) > 20 and len(HYGIENE.audit_rows) > 10
    assert any("plp.audit" in r for r in HYGIENE.records)
    assert any("plp.access" in r for r in HYGIENE.records)
    leaks = find_leaks(HYGIENE.secrets, HYGIENE.records + HYGIENE.audit_rows)
    assert not leaks, "\n".join(leaks[:20])


def _record(created: float, msg: str = "line") -> logging.LogRecord:
    record = logging.LogRecord("plp.access", logging.INFO, __file__, 1, msg, None, None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


def test_text_format_is_the_default_formatters_with_the_date_made_once_a_second():
    from plp.log import TextFormatter

    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    fast, plain = TextFormatter(fmt), logging.Formatter(fmt)
    # Within one second, across a second, back again (a clock step), and a later day.
    for created in (
        1_700_000_000.001,
        1_700_000_000.999,
        1_700_000_001.5,
        1_700_000_000.25,
        1_800_000_123.75,
    ):
        assert fast.format(_record(created)) == plain.format(_record(created))


def test_json_time_is_utc_with_milliseconds_and_follows_the_clock():
    import json

    from plp.log import JsonFormatter

    fmt = JsonFormatter()
    first = json.loads(fmt.format(_record(1_700_000_000.25)))
    same_second = json.loads(fmt.format(_record(1_700_000_000.75)))
    next_second = json.loads(fmt.format(_record(1_700_000_001.0)))
    assert first["time"] == "2023-11-14T22:13:20.250Z"
    assert same_second["time"] == "2023-11-14T22:13:20.750Z"
    assert next_second["time"] == "2023-11-14T22:13:21.000Z"


@pytest.fixture
def plp_logging(monkeypatch):
    """setup_logging(fmt) writing to a StringIO in place of stderr; the test session's own
    handlers come back afterwards. Returns a function: fmt -> the stream."""
    from plp import log

    monkeypatch.setattr(log, "_direct", None)
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def install(fmt: str) -> io.StringIO:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        log.setup_logging(fmt, "info")
        return stream

    yield install
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_direct_access_line_is_the_line_logging_writes(fmt, plp_logging):
    from plp import log

    plp_logging(fmt)
    direct = log._direct
    assert direct is not None and direct.usable()
    for created, level, access in (
        (1_700_000_000.001, logging.INFO, ("GET", "/api/users/me", 200, 0.00123)),
        (1_700_000_000.999, logging.WARNING, ("POST", "/login?next=%2F", 404, 0.25)),
        (1_800_000_123.5, logging.ERROR, ("PUT", "/x?token=***", 500, 12.34567)),
    ):
        method, uri, status, seconds = access
        fields = {"status": status, "method": method, "uri": uri, "seconds": seconds}
        record = log.access_log.makeRecord(
            "plp.access",
            level,
            __file__,
            1,
            "%d %s %s %.1fms",
            (status, method, uri, 1000.0 * seconds),
            None,
            extra={
                "access": {
                    "status": status,
                    "method": method,
                    "uri": uri,
                    "ms": round(1000.0 * seconds, 1),
                }
            },
        )
        record.created = created
        record.msecs = log._msecs(created)
        expected = direct.handler.format(record)
        assert direct.formatter.access_line(created, level, fields) == expected


@pytest.mark.gen_test
async def test_access_lines_go_straight_to_the_stream_only_when_nothing_else_listens(
    client, plp_logging
):
    from plp import log

    stream = plp_logging("text")
    assert (await client.fetch("/healthz?token=abc&x=1")).code == 200
    line = stream.getvalue().splitlines()[-1]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO plp\.access: "
        r"200 GET /healthz\?token=\*\*\*&x=1 \d+\.\dms",
        line,
    ), line
    # A second handler (a test's capture, an operator's extra): the ordinary path,
    # which both handlers see.
    extra = logging.handlers.BufferingHandler(10)
    logging.getLogger().addHandler(extra)
    assert not log._direct.usable()
    assert (await client.fetch("/healthz?y=2")).code == 200
    assert "/healthz?y=2" in stream.getvalue().splitlines()[-1]
    assert [r.getMessage() for r in extra.buffer][-1].startswith("200 GET /healthz?y=2 ")
