"""Prometheus metrics on a separate loopback listener (SPEC §11, `metrics-port`).

Each `Metrics` has its own `CollectorRegistry`, so tests can build several apps in one
process. Figures come from the Context's hooks, not from polling: `on_request` (the access
log), `on_prune` (the pruner), `on_message_stored` (chat messages committed) and the
Auditor's listeners (login failures and throttles). Live sessions and open chat sockets are
read at scrape time. Importing this module needs `prometheus-client` (the `metrics` extra).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import tornado.web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .security import write_security_headers

if TYPE_CHECKING:
    from .context import Context
    from .storage.base import Message

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PRUNE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Metrics:
    """The metrics of one plp process, wired into a Context's hooks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions_live = Gauge("plp_sessions_live", "Sessions in the session store", registry=r)
        self.sockets_open = Gauge(
            "plp_chat_sockets_open", "Open chat WebSocket connections in this process", registry=r
        )
        self.requests = Counter(
            "plp_http_requests", "HTTP responses by status code", ["status"], registry=r
        )
        self.request_seconds = Histogram(
            "plp_http_request_duration_seconds",
            "Time to answer an HTTP request",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.login_failures = Counter(
            "plp_login_failures",
            "Failed logins (wrong password, unknown user, disabled)",
            registry=r,
        )
        self.login_throttled = Counter(
            "plp_login_throttled", "Logins refused by the abuse limits", registry=r
        )
        self.logins = Counter("plp_logins", "Successful logins", registry=r)
        self.chat_messages = Counter(
            "plp_chat_messages_stored", "Chat messages committed to the database", registry=r
        )
        self.prune_seconds = Histogram(
            "plp_session_prune_duration_seconds",
            "Time one pruner run took",
            buckets=PRUNE_BUCKETS,
            registry=r,
        )
        self.pruned = Counter("plp_sessions_pruned", "Expired sessions pruned", registry=r)
        self._install()

    def _install(self) -> None:
        hooks = self.ctx.hooks
        hooks.on_request.append(self.on_request)
        hooks.on_prune.append(self.on_prune)
        hooks.on_message_stored.append(self.on_message_stored)
        self.ctx.audit.listeners.append(self.on_audit)

    def on_request(self, status: int, seconds: float) -> None:
        """Count one finished HTTP response."""
        self.requests.labels(status=str(status)).inc()
        self.request_seconds.observe(seconds)

    def on_prune(self, removed: int, seconds: float) -> None:
        """Record one pruner run."""
        self.pruned.inc(removed)
        self.prune_seconds.observe(seconds)

    def on_message_stored(self, message: Message) -> None:
        """Count one chat message committed to the database."""
        self.chat_messages.inc()

    def on_audit(self, event: str) -> None:
        """Count the audit events that are metrics too."""
        if event == "login_failed":
            self.login_failures.inc()
        elif event == "login_throttled":
            self.login_throttled.inc()
        elif event == "login_succeeded":
            self.logins.inc()

    async def refresh(self) -> None:
        """Read the figures that are states, not events, just before a scrape."""
        try:
            self.sessions_live.set(await self.ctx.store.count())
        except Exception as exc:  # a shared store may be down; the scrape still answers
            log.warning("metrics: cannot count sessions: %s", exc)
        try:
            self.sockets_open.set(open_sockets(self.ctx))
        except Exception as exc:
            log.warning("metrics: cannot count chat sockets: %s", exc)

    async def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        await self.refresh()
        return generate_latest(self.registry)

    def make_app(self) -> tornado.web.Application:
        """The Tornado application for the metrics listener: only GET /metrics."""
        return tornado.web.Application(
            [(r"/metrics", MetricsHandler, {"metrics": self})],
            default_handler_class=MetricsNotFound,
            log_function=lambda handler: None,  # scrapes every few seconds would flood the log
        )


def open_sockets(ctx: Context) -> int:
    """Open chat sockets in this process, from the chat hub."""
    hub = getattr(ctx, "hub", None)
    return hub.count() if hub is not None else 0


class MetricsNotFound(tornado.web.RequestHandler):
    """Anything but /metrics on the metrics listener: 404 with the security headers."""

    def set_default_headers(self) -> None:
        # SPEC §10 asks it of every response, this loopback listener's included.
        write_security_headers(self._headers)
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)


class MetricsHandler(MetricsNotFound):
    """GET /metrics: Prometheus text format."""

    def initialize(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def prepare(self) -> None:
        pass

    async def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(await self.metrics.render())
