"""Serving: open storage, build the app, listen, prune on timers, shut down gracefully.

Shutdown (SPEC §11), on the first SIGTERM or SIGINT: stop accepting connections, run the
`ctx.hooks.on_shutdown` listeners (chat closes its sockets with 1001), let in-flight HTTP
requests finish for up to SHUTDOWN_GRACE seconds, close idle keep-alive connections, write
the session snapshot, close the stores, store the last audit counts, close the database,
exit 0. A second signal while that runs exits at once (status 128 + signal number) without
a snapshot; a repeat within FORCE_AFTER seconds of the first is taken as the same request
and ignored.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.httpserver
from tornado.ioloop import PeriodicCallback

from .app import make_app
from .auth.cutoff import CutoffWatcher
from .config import ConfigError, Settings
from .context import Context, make_context
from .httpserver import DrainingHTTPServer
from .log import setup_logging
from .runtime import cache_http_dates, settle_memory
from .security import ssl_context
from .sessions.base import SessionStoreUnavailable
from .snapshot import restore_sessions, save_sessions, snapshot_path
from .storage import open_database
from .storage.base import StorageUnavailable, utcnow

log = logging.getLogger(__name__)

# Only a backstop: the application's BodyLimit (plp/handlers/bodylimit.py) lifts it per
# request and answers any body over 64 KiB with a 413 itself.
MAX_BODY_SIZE = 64 * 1024
SHUTDOWN_GRACE = 5.0
AUDIT_PRUNE_INTERVAL = 3600.0  # seconds; rows are kept for days, so hourly is plenty
AUDIT_CLOSE_WAIT = 2.0  # seconds to store the last audit counts at shutdown
EXIT_CONFIG = 2
# A repeat of the stop signal this soon is the same request delivered twice (systemd signals
# the whole cgroup and the one-file binary's launcher forwards it; a terminal signals the
# whole process group), not an operator insisting.
FORCE_AFTER = 1.0
METRICS_HOST = "127.0.0.1"  # never the `host` setting: metrics are for the local scraper only


def make_pruner(ctx: Context) -> PeriodicCallback:
    """A PeriodicCallback that drops expired sessions and stale throttle entries."""

    async def prune() -> None:
        started = time.perf_counter()
        try:
            removed = await ctx.store.prune_expired()
            await ctx.throttle.prune()
        except SessionStoreUnavailable as exc:
            log.warning("session pruning skipped: %s", exc)
            return
        except Exception:
            log.exception("session pruning failed")
            return
        elapsed = time.perf_counter() - started
        ctx.hooks.pruned(removed, elapsed)
        if removed:
            log.info("pruned %d expired sessions in %.1f ms", removed, elapsed * 1000)

    return PeriodicCallback(prune, ctx.settings.session_prune_interval * 1000)


def make_audit_pruner(ctx: Context) -> Callable[[], Awaitable[int]]:
    """A coroutine function deleting audit rows older than audit-retention-days; how many."""

    async def prune() -> int:
        days = ctx.settings.audit_retention_days
        try:
            removed = await ctx.audit.prune(utcnow() - datetime.timedelta(days=days))
        except StorageUnavailable as exc:
            log.warning("audit pruning skipped: %s", exc)
            return 0
        except Exception:
            log.exception("audit pruning failed")
            return 0
        if removed:
            log.info("pruned %d audit rows older than %d days", removed, days)
        return removed

    return prune


def _where(url: str) -> str:
    """host:port of a service URL, for messages (never the password in it)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.hostname else "(socket)"


async def _greet(settings: Any, ctx: Any, scheme: str) -> None:
    """Say where to open the browser and, while there is no admin, how to make one."""
    host = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
    log.info("open %s://%s:%d/ in a browser", scheme, host, settings.port)
    try:
        users = await ctx.db.list_users()
    except Exception:  # a hint only: a failure here shows up on the first request anyway
        return
    if not any(u.role == "admin" for u in users):
        log.info(
            "no admin account yet; create one with: "
            "python run.py create-user --username NAME --role admin"
        )


async def _start_backends(settings: Settings, ctx: Context) -> bool:
    """Reach the shared backends before listening; False (logged) if Redis is down."""
    try:
        await ctx.backends.start()
    except SessionStoreUnavailable:
        log.error(
            "cannot reach Redis at %s (session-backend redis); start it or fix --redis-url",
            _where(settings.redis_url),
        )
        return False
    return True


class _Shutdown:
    """The first signal asks for a graceful stop; a second one exits at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.requested = asyncio.Event()
        self._previous: dict[int, Any] = {}
        self._first_at = 0.0

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.getsignal(sig)
            self.loop.add_signal_handler(sig, self._first, sig)

    def _first(self, sig: signal.Signals) -> None:
        log.info("received %s: shutting down (send it again to exit at once)", sig.name)
        self._first_at = time.monotonic()
        for other in self._previous:
            self.loop.remove_signal_handler(other)
            # A plain handler, not the loop's: it runs even if the loop is stuck.
            signal.signal(other, self._force)
        self.requested.set()

    def _force(self, signum: int, _frame: object) -> None:
        if time.monotonic() - self._first_at < FORCE_AFTER:
            return
        os.write(2, b"plp: second signal during shutdown; exiting now\n")
        os._exit(128 + signum)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            try:
                self.loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                pass
            signal.signal(sig, previous)


def _metrics_support(settings: Settings) -> Any:
    """The metrics module when metrics-port is set; ConfigError if prometheus_client is missing."""
    if not settings.metrics_port:
        return None
    try:
        from . import metrics
    except ImportError:
        raise ConfigError(
            "--metrics-port needs the prometheus-client package: pip install prometheus-client "
            "(in a checkout: pip install -e '.[metrics]')"
        ) from None
    return metrics


async def _bounded(what: str, awaitable: Awaitable[Any], seconds: float) -> None:
    try:
        await asyncio.wait_for(awaitable, max(seconds, 0.01))
    except TimeoutError:
        log.warning("%s did not finish within %.1f s; going on", what, seconds)
    except Exception:
        log.exception("%s failed during shutdown", what)


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the process exit status.

    Raises ConfigError (exit 2, one line) for an unusable certificate or missing metrics
    support, before anything is opened.
    """
    tls = ssl_context(settings)
    metrics_module = _metrics_support(settings)
    db = open_database(settings.db_url)
    try:
        await db.migrate()
    except StorageUnavailable as exc:
        if settings.db_url.startswith(("postgresql://", "postgres://")):
            log.error(
                "cannot reach the database at %s; start it or fix --db", _where(settings.db_url)
            )
        else:
            log.error("cannot start: %s (--db %s)", exc, settings.db_url)
        await db.close()
        return EXIT_CONFIG
    ctx = make_context(settings, db=db)
    if not await _start_backends(settings, ctx):
        await _close(ctx)
        return EXIT_CONFIG
    snapshot = snapshot_path(settings.data_dir)
    restore_sessions(
        ctx.store, snapshot, (settings.session_secret, *settings.session_secret_previous)
    )
    await ctx.hasher.warm()
    app = make_app(ctx)
    cache_http_dates()
    settle_memory()
    metrics_server = None
    if metrics_module is not None:
        metrics = metrics_module.Metrics(ctx)
        metrics_server = tornado.httpserver.HTTPServer(metrics.make_app())
    server = DrainingHTTPServer(
        app, ssl_options=tls, max_body_size=MAX_BODY_SIZE, idle_connection_timeout=120
    )
    try:
        server.listen(settings.port, settings.host)
        if metrics_server is not None:
            metrics_server.listen(settings.metrics_port, METRICS_HOST)
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        server.stop()
        await _close(ctx)
        return EXIT_CONFIG
    server.idle.start()
    pruner = make_pruner(ctx)
    pruner.start()
    cutoffs = CutoffWatcher(ctx)
    await cutoffs.start()
    prune_audit = make_audit_pruner(ctx)
    await prune_audit()
    audit_pruner = PeriodicCallback(prune_audit, AUDIT_PRUNE_INTERVAL * 1000)
    audit_pruner.start()
    shutdown = _Shutdown(asyncio.get_running_loop())
    shutdown.install()
    scheme = "https" if settings.tls else "http"
    log.info("plp %s serving on %s://%s:%d", settings.env, scheme, settings.host, settings.port)
    if metrics_server is not None:
        log.info("metrics on http://%s:%d/metrics", METRICS_HOST, settings.metrics_port)
    await _greet(settings, ctx, scheme)
    if ready is not None:
        ready.set()
    try:
        await shutdown.requested.wait()
        audit_pruner.stop()
        cutoffs.stop()
        await _drain(ctx, server, pruner)
        save_sessions(ctx.store, snapshot, settings.session_secret)
        if metrics_server is not None:
            metrics_server.stop()
            await _bounded("closing metrics connections", metrics_server.close_all_connections(), 1)
        await _close(ctx)
    finally:
        shutdown.uninstall()
    log.info("stopped")
    return 0


async def _drain(ctx: Context, server: DrainingHTTPServer, pruner: PeriodicCallback) -> None:
    """Stop accepting, close sockets, let requests finish: all within SHUTDOWN_GRACE."""
    deadline = time.monotonic() + SHUTDOWN_GRACE
    log.info("shutting down: no new connections, closing sockets, finishing requests")
    server.stop()
    server.idle.stop()
    pruner.stop()
    closing = ctx.hooks.shutdown()
    await _bounded("shutdown hooks (closing chat sockets)", closing, deadline - time.monotonic())
    in_flight = server.in_flight()
    if in_flight:
        log.info("waiting for %d requests in flight", in_flight)
    await _bounded("in-flight requests", server.wait_idle(), deadline - time.monotonic())
    pending = [t for t in ctx._tasks if not t.done()]
    if pending:
        await _bounded(
            "background tasks", asyncio.wait(pending), max(deadline - time.monotonic(), 0.5)
        )
    await _bounded("closing connections", server.close_all_connections(), 1.0)


async def _close(ctx: Context) -> None:
    """Release everything (the backends' close is safe after the chat hub's shutdown)."""
    await ctx.backends.close()
    ctx.hasher.close()
    # Last, before the database goes: requests and sockets above may still have refused some.
    await _bounded("writing the audit trail", ctx.audit.close(), AUDIT_CLOSE_WAIT)
    await ctx.db.close()


def run_server(settings: Settings) -> int:
    """Set up logging and run the server to completion."""
    setup_logging(settings.log_format, settings.log_level)
    # The database, its WAL, the snapshot and the secret are for this account only.
    os.umask(0o077)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    return asyncio.run(serve(settings))
