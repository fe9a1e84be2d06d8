"""Log hygiene for the whole test session (SPEC §3, §11: no password, token, cookie or hash).

A pytest plugin, loaded by tests/conftest.py (`pytest_plugins`), so it sees every test of a run.

A handler on the root logger keeps the text of every log record of the session. For every test
that builds the app context, an autouse fixture wraps (calls through, changes nothing) the
password hasher and the cookie signer to note each password, session token, token hash and
cookie value the test used, and at teardown adds the bcrypt hashes and audit rows of that
test's database. `test_session_log_hygiene` (in tests/test_log.py) is moved to the end of
the in-process tests (it runs an attack scenario of its own first) and asserts that no noted
secret appears in any record or audit row.

Browser tests are moved after every other test: the session-scoped Playwright (sync API) keeps
its event loop running in the main thread, and pytest-tornado cannot run its own loop after.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from plp.sessions.base import hash_token

HYGIENE_TEST = "test_session_log_hygiene"
MIN_SECRET = 8  # shorter strings (rejected passwords like "a") would match ordinary text
BCRYPT_RE = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
SIGNED_COOKIE_RE = re.compile(r"2\|1:\d+\|10:\d{10}\|")


@dataclass
class Hygiene:
    """What the session logged and which secrets its tests used."""

    records: list[str] = field(default_factory=list)
    audit_rows: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # value -> "kind (test id)"

    def note(self, value: object, kind: str, where: str) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET:
            self.secrets.setdefault(value, f"{kind} ({where})")


HYGIENE = Hygiene()


class CaptureHandler(logging.Handler):
    """Keeps the full text of every record: message, arguments applied, traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is still text worth scanning
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        HYGIENE.records.append(f"{record.name}: {text}")


_HANDLER = CaptureHandler(level=logging.DEBUG)


def _install() -> None:
    root = logging.getLogger()
    if _HANDLER not in root.handlers:  # setup_logging() replaces root handlers
        root.addHandler(_HANDLER)
    if root.level > logging.DEBUG or root.level == logging.NOTSET:
        root.setLevel(logging.DEBUG)


def find_leaks(secrets: dict[str, str], texts: Iterable[str]) -> list[str]:
    """One line per (secret, text) where a secret, or any cookie/bcrypt shape, appears."""
    leaks = []
    for text in texts:
        for value, kind in secrets.items():
            if value in text:
                leaks.append(f"{kind} found in: {text[:300]}")
        for pattern, kind in ((BCRYPT_RE, "bcrypt hash"), (SIGNED_COOKIE_RE, "signed cookie")):
            if pattern.search(text):
                leaks.append(f"{kind} shape found in: {text[:300]}")
    return leaks


def pytest_configure(config: pytest.Config) -> None:
    _install()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list):
    def order(item: pytest.Item) -> int:
        if item.get_closest_marker("browser") is not None:
            return 2
        if item.name == HYGIENE_TEST:
            return 1
        return 0

    items.sort(key=order)  # stable: keeps the usual order within each group


@pytest.fixture(autouse=True)
def _note_secrets(request: pytest.FixtureRequest):
    """For tests using the app context: note the secrets they use, keep their audit rows."""
    _install()
    if "ctx" not in request.fixturenames:
        yield
        return
    ctx = request.getfixturevalue("ctx")
    io_loop = request.getfixturevalue("io_loop")
    where = request.node.nodeid
    hasher, signer = ctx.hasher, ctx.signer
    real_hash, real_verify, real_sign = hasher.hash, hasher.verify, signer.sign

    async def hash_(password: str) -> str:
        HYGIENE.note(password, "password", where)
        hashed = await real_hash(password)
        HYGIENE.note(hashed, "password hash", where)
        return hashed

    async def verify(password: str, stored: str | None) -> bool:
        HYGIENE.note(password, "password", where)
        return await real_verify(password, stored)

    def sign(token: str) -> str:
        value = real_sign(token)
        HYGIENE.note(token, "session token", where)
        HYGIENE.note(hash_token(token), "session token hash", where)
        HYGIENE.note(value, "session cookie", where)
        return value

    hasher.hash, hasher.verify, signer.sign = hash_, verify, sign
    yield
    try:
        io_loop.run_sync(lambda: harvest(ctx, where))
    except Exception as exc:  # a test that closed its own database leaves nothing to read
        HYGIENE.records.append(f"(hygiene: could not read the database of {where}: {exc!r})")


async def harvest(ctx, where: str) -> None:
    """Note the bcrypt hashes of ctx's database and keep the text of its audit rows."""
    for user in await ctx.db.list_users():
        found = await ctx.db.get_credentials(user.username)
        if found:
            HYGIENE.note(found[1], "password hash", where)
            HYGIENE.note(found[1].split("$", 1)[-1], "bcrypt hash", where)
    for event in await ctx.db.list_audit(100_000):
        HYGIENE.audit_rows.append(f"{where}: {json.dumps(event.to_json())}")
