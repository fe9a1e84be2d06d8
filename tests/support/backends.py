"""Real Redis and PostgreSQL for tests: URLs from the environment, fresh namespaces per test.

`scripts/services.sh start` runs both and prints PLP_TEST_REDIS_URL / PLP_TEST_POSTGRES_URL.
Without them a test needing the service skips with the reason, except under CI=true, where
a missing service is a failure: CI must never pass by skipping the shared backends.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

REDIS_ENV = "PLP_TEST_REDIS_URL"
POSTGRES_ENV = "PLP_TEST_POSTGRES_URL"
HINT = "run `scripts/services.sh start` and export what it prints"


def missing(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: services are required)", pytrace=False)
    pytest.skip(f"{reason}; {HINT}")


def redis_url() -> str:
    """The test Redis URL, checked to answer."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        missing(f"{REDIS_ENV} is not set")
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        missing(f"Redis at {REDIS_ENV} does not answer: {exc}")
    finally:
        client.close()
    return url


def unique_prefix() -> str:
    """A key prefix (and pub/sub channel namespace) no other test uses."""
    return f"plptest:{uuid.uuid4().hex[:12]}:"


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key a test wrote under its prefix."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def postgres_url() -> str:
    """The test PostgreSQL URL, checked to answer."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        missing(f"{POSTGRES_ENV} is not set")
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        missing(f"PostgreSQL at {POSTGRES_ENV} does not answer: {exc}")
    return url


def fresh_postgres_database(url: str) -> tuple[str, str]:
    """Create an empty database next to the test one; return (its URL, its name)."""
    import psycopg

    name = f"plptest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name)), name


def drop_postgres_database(url: str, name: str) -> None:
    """Drop a database made by `fresh_postgres_database` (closing leftover connections)."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
