"""Server-rendered pages and their forms: /, /login, /register, /logout, /dashboard, /chat, ...

The admin console is in admin_pages.py; both build on `PageHandler` here.
"""

from __future__ import annotations

import re
from typing import Any

import tornado.web
from tornado.web import HTTPError

from ..auth import accounts, mfa, service, totp
from ..auth.decorators import authenticated
from ..classes.visibility import visible_channels
from ..errors import DomainError, InvalidInput, NotFound
from ..security import safe_next, write_security_headers
from ..storage.base import iso_from_epoch
from .account_sections import AccountSections
from .auth import CLEAR_SITE_DATA
from .base import BaseHandler, check_body_size
from .display import audit_detail, field_attrs
from .errors import ApiError, http_error
from .mfa_cookie import set_mfa_cookie
from .reauth_page import confirm_recent


class PageHandler(BaseHandler):
    """A page: 413 for oversize forms, errors as an HTML page."""

    async def prepare(self) -> None:
        if self.request.method == "POST":
            check_body_size(self)
        await super().prepare()

    # What /account shows of the authenticator app (totp.status); set before rendering it.
    totp_status: dict[str, Any] | None = None

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(
            field_attrs=field_attrs, audit_detail=audit_detail, totp_status=self.totp_status
        )
        return namespace

    async def load_totp_status(self) -> None:
        """Read the authenticator's state for a render of account.html."""
        self.totp_status = await totp.status(self.ctx, self.user.id)
        # require-mfa holds this user here until a second factor is added: say why.
        self.totp_status["required"] = mfa.must_enrol(self.ctx, self.user)

    def form(self, name: str) -> str:
        """A form field as text ('' when absent)."""
        return self.get_body_argument(name, "", strip=False)

    def redirect_to_next(self) -> None:
        """Follow `next` only when it is a same-site relative path."""
        self.redirect(safe_next(self.get_argument("next", None)))

    async def confirm_recent(self, why: str, *, cancel: str) -> bool:
        """For a sensitive form action (SPEC §14): True when the sign-in is recent or the
        form proves it again; otherwise the "Confirm it is you" page is the answer (see
        reauth_page.py) and this returns False."""
        return await confirm_recent(self, why, cancel=cancel)

    def render_error_form(self, template: str, exc: DomainError, **values: Any) -> None:
        """The form again, with the service's refusal, under the status `ERRORS` gives it."""
        error = http_error(exc)
        self.set_status(error.status_code)
        for name, value in error.headers.items():
            self.set_header(name, value)
        fields = error.fields or {}
        self.render_page(template, error=summary(error.message, fields), fields=fields, **values)


# How form fields are named to people, for "Please correct: ..." summaries.
FIELD_LABELS = {
    "username": "Username",
    "password": "Password",
    "displayName": "Display name",
    "currentPassword": "Current password",
    "newPassword": "New password",
    "confirmPassword": "Repeat new password",
    "code": "Reset code",
}


def summary(message: str, fields: dict[str, str]) -> str:
    """The message over a form: it names the fields to fix when there are several problems."""
    if len(fields) > 1 or message.startswith("Please correct"):
        return "Please correct: " + ", ".join(FIELD_LABELS.get(f, f) for f in fields) + "."
    return message


class IndexHandler(PageHandler):
    def get(self) -> None:
        self.render_page("index.html")


class LoginPage(PageHandler):
    def get(self) -> None:
        if self.user is not None:
            self.redirect_to_next()
            return
        self.render_page("login.html", error=None, fields={}, username="", next=self.next_value())

    def next_value(self) -> str:
        return safe_next(self.get_argument("next", None))

    async def post(self) -> None:
        username = self.form("username")
        try:
            user, pending = await mfa.password_sign_in(
                self.ctx, username=username, password=self.form("password"), ip=self.ip
            )
        except DomainError as exc:
            self.render_error_form("login.html", exc, username=username, next=self.next_value())
            return
        if pending is not None:
            # The second step: the code form, which posts to /login/mfa (mfa_pages.py).
            set_mfa_cookie(self, pending)
            self.render_page(
                "login_mfa.html", error=None, fields={}, next=self.next_value(), use="code"
            )
            return
        token = await service.start_session(
            self.ctx, user, ip=self.ip, user_agent=self.user_agent, previous=self.session
        )
        await self.ctx.audit.record(
            "login_succeeded", user_id=user.id, username=user.username, ip=self.ip
        )
        self.set_session_cookie(token)
        self.redirect_to_next()


class RegisterPage(PageHandler):
    def get(self) -> None:
        if self.user is not None:
            self.redirect("/dashboard")
            return
        self.render_page("register.html", error=None, fields={}, username="", display_name="")

    async def post(self) -> None:
        username, display_name = self.form("username"), self.form("displayName")
        try:
            _user, token = await service.register_and_sign_in(
                self.ctx,
                username=username,
                password=self.form("password"),
                display_name=display_name,
                ip=self.ip,
                user_agent=self.user_agent,
                previous=self.session,
            )
        except DomainError as exc:
            self.render_error_form(
                "register.html", exc, username=username, display_name=display_name
            )
            return
        self.set_session_cookie(token)
        self.redirect("/dashboard")


class LogoutPage(PageHandler):
    """POST /logout ends the session; GET is 405 so a link or image cannot log anyone out."""

    async def post(self) -> None:
        if self.user is not None and self.session is not None:
            await service.logout(self.ctx, self.user, self.session, ip=self.ip)
        self.clear_session_cookie()
        self.set_header("Clear-Site-Data", CLEAR_SITE_DATA)
        self.redirect("/login")


class DashboardPage(PageHandler):
    @authenticated
    async def get(self) -> None:
        # Only the channels the user may see (SPEC §12): other classes' names stay hidden.
        channels = await visible_channels(self.ctx, self.user)
        self.render_page("dashboard.html", channels=channels)


# How each sign-in method reads on /sessions.
METHOD_NAMES = {
    "password": "Password",
    "passkey": "Passkey",
    "password+totp": "Password and authenticator code",
    "reset": "Reset code",
}


class SessionsPage(PageHandler):
    @authenticated
    async def get(self) -> None:
        store = self.ctx.store
        sessions = await store.list_for_user(self.user.id)
        rows = [
            {
                "handle": s.handle,
                "created": iso_from_epoch(s.created_at),
                "last_seen": iso_from_epoch(s.last_seen),
                "expires": iso_from_epoch(s.deadline(store.idle_timeout, store.max_age)),
                "ip": s.ip,
                "user_agent": s.user_agent,
                "method": METHOD_NAMES.get(s.method, s.method),
                "current": s.key == self.session.key,
            }
            for s in sessions
        ]
        self.render_page("sessions.html", sessions=rows, notice=self.get_argument("done", ""))


class SessionRevokePage(PageHandler):
    @authenticated
    async def post(self) -> None:
        handle = self.form("session")
        try:
            await service.revoke_session(self.ctx, self.user, handle, ip=self.ip)
        except NotFound:
            pass  # already ended (another tab, expiry): the list below shows the truth
        if handle and self.session is not None and handle == self.session.handle:
            self.clear_session_cookie()
            self.redirect("/login")
            return
        self.redirect("/sessions?done=revoked")


class LogoutAllPage(PageHandler):
    @authenticated
    async def post(self) -> None:
        await service.logout_all(self.ctx, self.user, ip=self.ip)
        self.clear_session_cookie()
        self.set_header("Clear-Site-Data", CLEAR_SITE_DATA)
        self.redirect("/login")


class AccountPage(AccountSections, PageHandler):
    @authenticated
    async def get(self) -> None:
        await self.load_totp_status()
        self.render_page(
            "account.html",
            error=None,
            fields={},
            form="",
            display_name=self.user.display_name,
            notice=self.get_argument("done", ""),
        )

    @authenticated
    async def post(self) -> None:
        new, confirm = self.form("newPassword"), self.form("confirmPassword")
        try:
            if new != confirm:
                raise InvalidInput(
                    "The new passwords do not match.", {"confirmPassword": "Does not match."}
                )
            token = await service.change_password(
                self.ctx,
                self.user,
                self.session,
                current=self.form("currentPassword"),
                new=new,
                ip=self.ip,
                user_agent=self.user_agent,
            )
        except DomainError as exc:
            await self.load_totp_status()
            self.render_error_form(
                "account.html", exc, notice="", form="password", display_name=self.user.display_name
            )
            return
        self.set_session_cookie(token)
        self.redirect("/account?done=password")


class DisplayNamePage(AccountSections, PageHandler):
    """POST /account/name: a new display name, by the rules of registration."""

    @authenticated
    async def post(self) -> None:
        raw = self.form("displayName")
        try:
            await accounts.change_display_name(self.ctx, self.user, raw)
        except DomainError as exc:
            await self.load_totp_status()
            self.render_error_form("account.html", exc, notice="", form="name", display_name=raw)
            return
        self.redirect("/account?done=name")


class NotFoundHandler(BaseHandler):
    """Unknown paths: a 404 page with the full security headers."""

    async def prepare(self) -> None:
        await super().prepare()
        raise ApiError(404, "not_found", "There is no page at this address.")

    def check_xsrf_cookie(self) -> None:
        pass  # every method ends in 404 anyway; don't let the XSRF check mask it


# Characters no file under static/ has in its name (NUL, controls, backslash).
UNSERVABLE_RE = re.compile(r"[\x00-\x1f\x7f\\]")


class StaticHandler(tornado.web.StaticFileHandler):
    """Static files with the same security headers as every other response."""

    def set_default_headers(self) -> None:
        settings = self.application.ctx.settings  # type: ignore[attr-defined]
        write_security_headers(self._headers, self.request, settings)

    def parse_url_path(self, url_path: str) -> str:
        # Only plain relative names can be files here: a NUL (os.stat raises ValueError: a
        # 500), a control character, a backslash, or an empty, `.` or `..` segment names
        # nothing we serve, so it is a 404 before the file system is asked.
        parts = url_path.split("/")
        if UNSERVABLE_RE.search(url_path) or any(p in ("", ".", "..") for p in parts):
            raise HTTPError(404)
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        # Outside the static directory, a directory, or a name the OS refuses: all "no such
        # file" to the client (a 403 would tell which names exist).
        try:
            return super().validate_absolute_path(root, absolute_path)
        except HTTPError as exc:
            if exc.status_code == 403:
                raise HTTPError(404) from None
            raise
        except (ValueError, OSError):
            raise HTTPError(404) from None

    def check_xsrf_cookie(self) -> None:
        # Static files are read-only: any other method is refused before the XSRF check.
        raise HTTPError(405)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, HTTPError):
            return  # in the access log already; Tornado's line would repeat the raw URI
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        if status_code == 405:
            self.set_header("Allow", "GET, HEAD")
        self.finish(f"{status_code} Not Found\n" if status_code == 404 else f"{status_code}\n")


routes = [
    (r"/", IndexHandler),
    (r"/login", LoginPage),
    (r"/register", RegisterPage),
    (r"/logout", LogoutPage),
    (r"/dashboard", DashboardPage),
    (r"/sessions", SessionsPage),
    (r"/sessions/revoke", SessionRevokePage),
    (r"/sessions/logout-all", LogoutAllPage),
    (r"/account", AccountPage),
    (r"/account/name", DisplayNamePage),
]
