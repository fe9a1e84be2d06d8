"""Handler bases: session lookup, security headers, CORS, XSRF, errors as pages or JSON."""

from __future__ import annotations

import hmac
import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import tornado.web
from tornado.escape import utf8
from tornado.httputil import parse_cookie
from tornado.web import HTTPError

from ..auth import mfa
from ..errors import MfaEnrollmentRequired
from ..security import client_ip, origin_allowed, write_security_headers
from ..sessions.base import Session, SessionStoreUnavailable, end_reason
from ..storage.base import StorageUnavailable, UnstorableValue, User
from .display import device_name, friendly_time
from .errors import ERROR_CODES, ApiError, answer_for, http_error

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024
ENROL_FIRST = "Your account must have a passkey or an authenticator app: add one on /account first."

# Error pages are read by children: plain words instead of protocol jargon.
PAGE_MESSAGES = {
    "method_not_allowed": "This address cannot be opened like that.",
    "xsrf": "This form is out of date (its XSRF security check failed).",
    "too_large": "What you sent is too large: at most 64 KiB fits.",
}


class BaseHandler(tornado.web.RequestHandler):
    """Every HTTP handler: finds the signed-in user before the method runs."""

    session: Session | None = None

    @property
    def ctx(self) -> Context:
        return self.application.ctx  # type: ignore[attr-defined]

    @property
    def user(self) -> User | None:
        return self.current_user  # type: ignore[return-value]

    @property
    def ip(self) -> str:
        """The client address per the trust-proxy rule."""
        cached = getattr(self, "_plp_ip", None)
        if cached is None:
            cached = self._plp_ip = client_ip(self.request, self.ctx.settings)
        return cached

    @property
    def user_agent(self) -> str:
        # Stored with the session: a client-given string, so at most 200 characters (SPEC §9).
        return self.request.headers.get("User-Agent", "")[:200]

    def set_default_headers(self) -> None:
        ctx = self.ctx
        write_security_headers(self._headers, self.request, ctx.settings)
        allowed = ctx.settings.cors_origins
        if allowed:  # the Origin header is looked up only where CORS is configured
            origin = self.request.headers.get("Origin")
            if origin and origin.lower() in allowed:
                self.set_header("Access-Control-Allow-Origin", origin)
                self.set_header("Access-Control-Allow-Credentials", "true")
            self.add_header("Vary", "Origin")

    async def prepare(self) -> None:
        await self.load_session()
        if mfa.must_enrol(self.ctx, self.user) and not self.open_before_enrolment():
            await self.require_enrolment()

    def open_before_enrolment(self) -> bool:
        """Whether this page stays open to a user who must still add a second factor."""
        return mfa.OPEN_PAGES.fullmatch(self.request.path) is not None

    async def require_enrolment(self) -> None:
        """`require-mfa` (SPEC §14): a user of a listed role with no second factor is sent
        to /account to add one (the API answers 403, see ApiHandler)."""
        if not await mfa.has_second_factor(self.ctx, self.user):
            self.redirect("/account")

    async def load_session(self) -> None:
        """Set current_user and session from the signed cookie; invalid cookies are cleared."""
        self.current_user = None
        ctx = self.ctx
        header = self.request.headers.get("Cookie")
        if not header:
            return
        # Tornado's `get_cookie` builds a SimpleCookie of Morsels for every cookie sent; the
        # same parser without Morsels finds the one value we need for a fraction of the cost.
        raw = parse_cookie(header).get(ctx.settings.cookie_name)
        if not raw:
            return
        key, reissue = ctx.signer.session_key(raw)
        session = None
        if key is not None:
            try:
                session = await ctx.store.get_by_key(key)
            except SessionStoreUnavailable as exc:
                raise http_error(exc) from exc
        if session is None:
            ctx.signer.forget(raw)
            self.clear_session_cookie()
            return
        user = await ctx.db.get_user(session.user_id)
        reason = end_reason(session, user)
        if reason is not None or user is None:  # (None has a reason; this narrows the type)
            await ctx.store.end(session.key, reason or "disabled")
            ctx.signer.forget(raw)
            self.clear_session_cookie()
            return
        await ctx.store.touch(session)
        self.session = session
        self.current_user = user
        if reissue is not None:
            self.set_session_cookie(reissue)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(friendly_time=friendly_time, device_name=device_name)
        return namespace

    def get_current_user(self) -> User | None:
        return None  # set by prepare(); get_current_user cannot await

    def refuse_anonymous(self) -> None:
        """Nobody is signed in: a page GET goes to the sign-in page, anything else gets 401."""
        if self.request.method not in ("GET", "HEAD"):
            raise ApiError(401, "not_authenticated", "Sign in to continue.")
        self.redirect("/login?" + urlencode({"next": self.request.uri or "/dashboard"}))

    def set_session_cookie(self, token: str) -> None:
        settings = self.ctx.settings
        self.set_cookie(
            settings.cookie_name,
            self.ctx.signer.sign(token),
            path="/",
            max_age=int(settings.session_max_age),
            httponly=True,
            secure=settings.production,
            samesite="Lax",
        )

    def clear_session_cookie(self) -> None:
        settings = self.ctx.settings
        self.clear_cookie(
            settings.cookie_name,
            path="/",
            httponly=True,
            secure=settings.production,
            samesite="Lax",
        )

    def check_xsrf_cookie(self) -> None:
        try:
            self.verify_xsrf_token()
        except HTTPError as exc:
            self.ctx.spawn(
                self.ctx.audit.record("xsrf_rejected", ip=self.ip, path=self.request.path)
            )
            raise ApiError(
                403, "xsrf", "The form or request is missing a valid XSRF token; reload and retry."
            ) from exc

    def verify_xsrf_token(self) -> None:
        """Tornado's XSRF check, but the token only from the body's `_xsrf` field or a header.

        Tornado's own check reads `get_argument("_xsrf")`, which also takes the query string:
        a token there lands in access logs, proxy logs and browser history (SPEC §4).
        """
        headers = self.request.headers
        supplied = (
            self.get_body_argument("_xsrf", None)
            or headers.get("X-Xsrftoken")
            or headers.get("X-Csrftoken")
        )
        if not supplied:
            raise HTTPError(403, "'_xsrf' argument missing from POST")
        _, token, _ = self._decode_xsrf_token(supplied)
        _, expected, _ = self._get_raw_xsrf_token()
        if not token or not hmac.compare_digest(utf8(token), utf8(expected)):
            raise HTTPError(403, "XSRF cookie does not match POST argument")

    async def head(self, *args: Any, **kwargs: Any) -> None:
        """HEAD is GET without the body (RFC 9110), wherever GET exists; Tornado drops the body."""
        get = type(self).get
        if get is tornado.web.RequestHandler.get:
            raise HTTPError(405)
        result = get(self, *args, **kwargs)
        if result is not None:
            await result

    def allowed_methods(self) -> list[str]:
        """The methods this route implements, for the `Allow` header of a 405."""
        base = tornado.web.RequestHandler
        methods = [
            m
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(type(self), m.lower()) is not getattr(base, m.lower())
        ]
        return methods[:1] + ["HEAD"] + methods[1:] if "GET" in methods else methods

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight: answered only for allowed origins."""
        origin = self.request.headers.get("Origin", "")
        if not origin or not origin_allowed(origin, self.request, self.ctx.settings):
            raise ApiError(403, "forbidden", "Cross-origin requests from this origin are refused.")
        self.set_header(
            "Access-Control-Allow-Methods",
            ", ".join(self.allowed_methods()),
        )
        self.set_header("Access-Control-Allow-Headers", "Content-Type, X-XSRFToken")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)

    def error_info(self, status_code: int, kwargs: dict[str, Any]) -> tuple[str, str, dict | None]:
        """(code, message, fields) for an error being written."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if isinstance(exc, ApiError):
            for name, value in exc.headers.items():
                self.set_header(name, value)
            return exc.code, exc.message, exc.fields
        if status_code >= 500:
            return "server_error", "Something went wrong on our side; please try again.", None
        code = ERROR_CODES.get(status_code, "error")
        if isinstance(exc, HTTPError) and exc.log_message and status_code < 500:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = (
                HTTPStatus(status_code).phrase
                if status_code in HTTPStatus._value2member_map_
                else "Error"
            )
        return code, message, None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        code, message, _fields = self.error_info(status_code, kwargs)
        if self.current_user is not None:
            self.set_header("Cache-Control", "no-store")  # it names the user: like any page
        message = PAGE_MESSAGES.get(code, message)
        self.render(
            "error.html",
            status=status_code,
            title=HTTPStatus(status_code).phrase
            if status_code in HTTPStatus._value2member_map_
            else "Error",
            message=message,
            code=code,
        )

    def _handle_request_exception(self, e: BaseException) -> None:
        # Domain and backend errors leave a handler as the answer `ERRORS` gives them (a
        # database or session store that is down: 503 `unavailable`, not a 500).
        if answer_for(e) is None:
            super()._handle_request_exception(e)
            return
        if isinstance(e, (SessionStoreUnavailable, StorageUnavailable)):
            log.warning("%s: backend unavailable (%s)", self.request.path, e)
        elif isinstance(e, UnstorableValue):
            # Validation should have refused it; the database did. Still the client's input.
            log.warning("%s: value refused by the database (%s)", self.request.path, e)
        try:
            raise http_error(e) from e  # Tornado reads the error being handled from exc_info
        except ApiError as api:
            super()._handle_request_exception(api)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, HTTPError):
            return  # client errors are in the access log; no traceback for them
        super().log_exception(typ, value, tb)

    def render_page(self, template: str, **kwargs: Any) -> None:
        """Render a page; signed-in pages are never cached."""
        if self.current_user is not None:
            self.set_header("Cache-Control", "no-store")
        self.render(template, **kwargs)


class ApiHandler(BaseHandler):
    """JSON endpoints: errors as `{"error", "message"}`, bodies parsed strictly, no redirects."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        headers = self._headers  # constants, as in BaseHandler.set_default_headers
        headers["Content-Type"] = "application/json; charset=UTF-8"
        headers["Cache-Control"] = "no-store"

    def refuse_anonymous(self) -> None:
        # An API client cannot follow a redirect to a sign-in form: 401 whatever the method.
        raise ApiError(401, "not_authenticated", "Sign in to continue.")

    def compute_etag(self) -> str | None:
        # API responses are `Cache-Control: no-store`, so an ETag could never be used;
        # skipping it saves hashing every body.
        return None

    async def prepare(self) -> None:
        check_body_size(self)  # every endpoint, whether or not it reads the body
        await super().prepare()

    def open_before_enrolment(self) -> bool:
        return mfa.OPEN_API.fullmatch(self.request.path) is not None

    async def require_enrolment(self) -> None:
        if not await mfa.has_second_factor(self.ctx, self.user):
            raise MfaEnrollmentRequired(ENROL_FIRST)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        code, message, fields = self.error_info(status_code, kwargs)
        body: dict[str, Any] = {"error": code, "message": message}
        if fields:
            body["fields"] = fields
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body))

    def write_json(self, data: dict, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, separators=(",", ":")))

    def get_json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400/413 ApiError."""
        body = self.request.body
        if len(body) > MAX_JSON_BODY:
            raise ApiError(413, "too_large", "The request body is larger than 64 KiB.")
        if not body.strip():
            raise ApiError(400, "bad_request", "The request body must be a JSON object.")
        try:
            # UTF-8 only (RFC 8259): json.loads on bytes would also guess UTF-16/32.
            data = json.loads(body.decode("utf-8"))
            # Lone surrogates ("\ud800") parse, but can be neither stored nor logged.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError):
            raise ApiError(400, "bad_request", "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "The request body must be a JSON object.")
        return data


def check_body_size(handler: BaseHandler) -> None:
    """413 for any body over the JSON limit (forms included)."""
    if len(handler.request.body) > MAX_JSON_BODY:
        raise ApiError(413, "too_large", "The request body is larger than 64 KiB.")
