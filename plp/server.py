"""Serving: open storage, build the app, listen, prune on a timer, shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from urllib.parse import urlsplit

import tornado.httpserver
from tornado.ioloop import PeriodicCallback

from .app import Context, make_app, make_context
from .config import Settings
from .log import setup_logging
from .sessions.base import SessionStoreUnavailable
from .storage import open_database
from .storage.base import StorageUnavailable

log = logging.getLogger(__name__)

MAX_BODY_SIZE = 1024 * 1024  # bodies over 64 KiB get a JSON 413; past this Tornado drops them
SHUTDOWN_GRACE = 5.0
EXIT_CONFIG = 2


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
        hook = ctx.extras.get("on_prune")
        if hook is not None:
            hook(removed, elapsed)
        if removed:
            log.info("pruned %d expired sessions in %.1f ms", removed, elapsed * 1000)

    return PeriodicCallback(prune, ctx.settings.session_prune_interval * 1000)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for tls-cert/tls-key, TLS 1.2 or newer."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def _where(url: str) -> str:
    """host:port of a service URL, for messages (never the password in it)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.hostname else "(socket)"


async def _start_shared(settings: Settings, ctx: Context) -> bool:
    """Reach the shared session store before listening; False (logged) if it is down."""
    start = getattr(ctx.store, "start", None)
    if start is None:
        return True
    try:
        await start()
        await ctx.hub.start()
    except SessionStoreUnavailable:
        log.error(
            "cannot reach Redis at %s (session-backend redis); start it or fix --redis-url",
            _where(settings.redis_url),
        )
        return False
    return True


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the process exit status."""
    db = open_database(settings.db_url)
    try:
        await db.migrate()
    except StorageUnavailable:
        log.error("cannot reach the database at %s; start it or fix --db", _where(settings.db_url))
        await db.close()
        return EXIT_CONFIG
    ctx = make_context(settings, db=db)
    if not await _start_shared(settings, ctx):
        await ctx.hub.close()
        await ctx.store.close()
        await ctx.throttle.close()
        ctx.hasher.close()
        await db.close()
        return EXIT_CONFIG
    await ctx.hasher.warm()
    app = make_app(ctx)
    try:
        tls = ssl_context(settings)
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot load TLS certificate or key: %s", exc)
        return EXIT_CONFIG
    server = tornado.httpserver.HTTPServer(
        app, ssl_options=tls, max_body_size=MAX_BODY_SIZE, idle_connection_timeout=120
    )
    try:
        server.listen(settings.port, settings.host)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return EXIT_CONFIG
    pruner = make_pruner(ctx)
    pruner.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheme = "https" if settings.tls else "http"
    log.info("plp %s serving on %s://%s:%d", settings.env, scheme, settings.host, settings.port)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: no new connections, closing sockets, finishing requests")
    server.stop()
    pruner.stop()
    closer = ctx.extras.get("on_shutdown")
    if closer is not None:
        await closer()
    try:
        await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE)
    except TimeoutError:
        log.warning("requests still running after %.0f s; closing anyway", SHUTDOWN_GRACE)
    await ctx.store.close()
    await ctx.throttle.close()
    ctx.hasher.close()
    await db.close()
    log.info("stopped")
    return 0


def run_server(settings: Settings) -> int:
    """Set up logging and run the server to completion."""
    setup_logging(settings.log_format, settings.log_level)
    return asyncio.run(serve(settings))
