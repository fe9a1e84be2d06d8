"""The application factory: joins each module's routes into one Tornado application.

The Context it serves is built by plp/context.py (`make_context`).
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import tornado.web
from tornado import httputil
from tornado.routing import PathMatches, Rule

from .context import Context
from .handlers.bodylimit import BodyLimit
from .log import log_request

log = logging.getLogger(__name__)

# Templates and static files sit beside the package; in the one-file binary PyInstaller
# unpacks them under sys._MEIPASS instead (see scripts/build-binary).
ROOT = Path(getattr(sys, "_MEIPASS", "") or Path(__file__).resolve().parent.parent)
TEMPLATE_PATH = ROOT / "templates"
STATIC_PATH = ROOT / "static"


# A route pattern that is one literal path (no regex syntax at all).
_LITERAL = re.compile(r"[\w/-]+")


def exact_routes(rules: list[Rule]) -> dict[str, Rule]:
    """The rules that can be found by their literal path, in a dict.

    Tornado tries every pattern in order until one matches: about twenty regex matches for
    `/api/users/me`. A rule whose pattern is a literal path can be found by a dict lookup
    instead, when no earlier rule could match that path (the result is then the same).
    Building stops at the first rule that does not match on the path alone.
    """
    exact: dict[str, Rule] = {}
    earlier: list[re.Pattern[str]] = []
    for rule in rules:
        if not isinstance(rule.matcher, PathMatches):
            break
        regex = rule.matcher.regex
        literal = regex.pattern.removesuffix("$")
        if (
            _LITERAL.fullmatch(literal)
            and literal not in exact
            and not any(pattern.match(literal) for pattern in earlier)
        ):
            exact[literal] = rule
        earlier.append(regex)
    return exact


class PlpApplication(tornado.web.Application):
    """A Tornado application that carries the plp Context."""

    def __init__(self, ctx: Context, handlers: list, **settings: Any) -> None:
        self.ctx = ctx
        super().__init__(handlers, **settings)
        self.exact = exact_routes(self.wildcard_router.rules)

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        rule = self.exact.get(request.path)  # type: ignore[arg-type]
        if rule is not None:
            return self.get_handler_delegate(request, rule.target, rule.target_kwargs)
        return super().find_handler(request, **kwargs)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        # Every request's body is counted here: 413 with headers past 64 KiB (SPEC §6).
        inner = super().start_request(server_conn, request_conn)
        return BodyLimit(inner, self, server_conn, request_conn)


def make_app(ctx: Context, **overrides: Any) -> PlpApplication:
    """The Tornado application for a context; route lists are joined in order."""
    from .handlers import (
        admin_pages,
        api,
        auth,
        channels,
        chat,
        chat_page,
        class_pages,
        classes,
        mfa_pages,
        pages,
        passkey_pages,
        passkeys,
        reset,
        reset_pages,
        static,
        totp,
    )

    settings = ctx.settings
    handlers: list = [
        *auth.routes,
        *totp.routes,
        *passkeys.routes,
        *api.routes,
        *channels.routes,
        *classes.routes,
        *chat.routes,
        *pages.routes,
        *mfa_pages.routes,
        *admin_pages.routes,
        *reset.routes,
        *reset_pages.routes,
        *class_pages.routes,
        *chat_page.routes,
        *passkey_pages.routes,
        *api.fallback_routes,
    ]
    app_settings: dict[str, Any] = dict(
        template_path=str(TEMPLATE_PATH),
        static_path=str(STATIC_PATH),
        static_handler_class=static.StaticHandler,
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
