"""Real Redis and PostgreSQL for tests: URLs from the environment, fresh namespaces per test,
and a private redis-server a test may stop and start.

`scripts/services.sh start` runs both and prints PLP_TEST_REDIS_URL / PLP_TEST_POSTGRES_URL.
Without them a test needing the service skips with the reason, except under CI=true, where
a missing service is a failure: CI must never pass by skipping the shared backends.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.live import free_port
from tests.support.wait import wait_until_blocking

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


class RedisProcess:
    """A private redis-server that can be stopped and started again with its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        import redis

        # No automatic snapshots; stop() saves explicitly so sessions survive the restart.
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("private redis-server exited at start")
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        try:
            wait_until_blocking(answers, 10, "the private redis-server to answer")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        import redis

        client = redis.Redis(port=self.port)
        try:
            client.save()  # synchronous snapshot: the restarted server loads it
        finally:
            client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def subscribers(self, channel: str) -> int:
        import redis

        client = redis.Redis(port=self.port, decode_responses=True)
        try:
            return dict(client.pubsub_numsub(channel)).get(channel, 0)
        finally:
            client.close()
