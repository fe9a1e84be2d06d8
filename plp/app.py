"""The application factory: builds the shared context and joins each module's routes."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tornado.web

from .audit import Auditor
from .auth.passwords import PasswordHasher
from .chat import ChatHub, make_hub
from .chat.wire import text_frame
from .config import Settings
from .log import log_request
from .sessions import SessionStore, make_store
from .sessions.cookie import CookieSigner
from .storage.base import Database
from .throttle import Throttle, make_throttle

log = logging.getLogger(__name__)

# Templates and static files sit beside the package; in the one-file binary PyInstaller
# unpacks them under sys._MEIPASS instead (see scripts/build-binary).
ROOT = Path(getattr(sys, "_MEIPASS", "") or Path(__file__).resolve().parent.parent)
TEMPLATE_PATH = ROOT / "templates"
STATIC_PATH = ROOT / "static"


@dataclass
class Context:
    """What handlers need, made once per process; handlers reach it as `self.ctx`."""

    settings: Settings
    db: Database
    store: SessionStore
    throttle: Throttle
    hasher: PasswordHasher
    audit: Auditor
    signer: CookieSigner
    clock: Callable[[], float] = time.time
    extras: dict[str, Any] = field(default_factory=dict)
    hub: ChatHub = field(default_factory=ChatHub)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background, keeping a reference until it finishes."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class PlpApplication(tornado.web.Application):
    """A Tornado application that carries the plp Context."""

    def __init__(self, ctx: Context, handlers: list, **settings: Any) -> None:
        self.ctx = ctx
        super().__init__(handlers, **settings)


def make_context(
    settings: Settings,
    *,
    db: Database,
    store: SessionStore | None = None,
    throttle: Throttle | None = None,
    clock: Callable[[], float] = time.time,
) -> Context:
    """The Context for settings; `db` must already be migrated. The secret must be set."""
    if not settings.session_secret:
        raise ValueError("settings.session_secret is empty; call config.ensure_secret first")
    store = store or make_store(settings, clock=clock)
    if settings.session_backend == "redis":
        # Several processes: fan-out through Redis pub/sub (sessions are shared there too).
        from .chat.redis_broker import RedisBroker
        from .chat.redis_node import make_shared

        # Socket caps and presence are counted in Redis too, so the processes act as one.
        sockets, presence = make_shared(settings.redis_url)
        hub = ChatHub(
            RedisBroker(settings.redis_url), wire=text_frame, presence=presence, sockets=sockets
        )
    else:
        hub = make_hub(settings, wire=text_frame)
    # Once per app: an ended session (logout, revocation, expiry...) closes its chat sockets.
    store.add_end_listener(hub.session_ended)
    ctx = Context(
        settings=settings,
        db=db,
        store=store,
        throttle=throttle or make_throttle(settings, clock=clock),
        hasher=PasswordHasher(settings.bcrypt_rounds),
        audit=Auditor(db, clock=clock),
        signer=CookieSigner(
            settings.cookie_name,
            settings.session_secret,
            settings.session_secret_previous,
            settings.session_max_age,
        ),
        clock=clock,
        hub=hub,
    )
    # server.py awaits this at SIGTERM/SIGINT: in-flight sends commit, then sockets get 1001.
    ctx.extras["on_shutdown"] = hub.shutdown
    return ctx


def make_app(ctx: Context, **overrides: Any) -> PlpApplication:
    """The Tornado application for a context; route lists are joined in order."""
    from .handlers import api, auth, chat, pages

    settings = ctx.settings
    handlers: list = [
        *auth.routes,
        *api.routes,
        *chat.routes,
        *pages.routes,
        *api.fallback_routes,
    ]
    app_settings: dict[str, Any] = dict(
        template_path=str(TEMPLATE_PATH),
        static_path=str(STATIC_PATH),
        static_handler_class=pages.StaticHandler,
        default_handler_class=pages.NotFoundHandler,
        xsrf_cookies=True,
        xsrf_cookie_kwargs=dict(httponly=False, samesite="Lax", secure=settings.production),
        cookie_secret=settings.session_secret,
        login_url="/login",
        log_function=log_request,
        compress_response=False,
        websocket_ping_interval=25,
        websocket_ping_timeout=60,
        websocket_max_message_size=16 * 1024,
        debug=False,
    )
    app_settings.update(overrides)
    return PlpApplication(ctx, handlers, **app_settings)
