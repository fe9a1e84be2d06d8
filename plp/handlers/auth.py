"""JSON endpoints for signing in and out: /api/auth/*."""

from __future__ import annotations

from ..auth import mfa, service
from ..auth.decorators import authenticated
from .base import ApiHandler
from .mfa_cookie import set_mfa_cookie
from .passkeys import passkey_login, relying_party

CLEAR_SITE_DATA = '"cookies", "storage"'


class CsrfHandler(ApiHandler):
    """GET /api/auth/csrf: the XSRF token for API clients (also sets the `_xsrf` cookie)."""

    def get(self) -> None:
        self.write_json({"token": self.xsrf_token.decode()})


class RegisterHandler(ApiHandler):
    """POST /api/auth/register: create a student account and sign it in."""

    async def post(self) -> None:
        data = self.get_json_body()
        user, token = await service.register_and_sign_in(
            self.ctx,
            username=data.get("username"),
            password=data.get("password"),
            display_name=data.get("displayName"),
            ip=self.ip,
            user_agent=self.user_agent,
            previous=self.session,
        )
        self.set_session_cookie(token)
        self.write_json({"user": user.to_json()}, status=201)


class LoginHandler(ApiHandler):
    """POST /api/auth/login: a new session for valid credentials, or for a user with an
    authenticator app the first half of the sign-in (`plp_mfa`, finished at login/mfa)."""

    async def post(self) -> None:
        data = self.get_json_body()
        user, pending = await mfa.password_sign_in(
            self.ctx, username=data.get("username"), password=data.get("password"), ip=self.ip
        )
        if pending is not None:
            set_mfa_cookie(self, pending)
            self.write_json({"mfaRequired": True, "methods": mfa.METHODS})
            return
        token = await service.start_session(
            self.ctx, user, ip=self.ip, user_agent=self.user_agent, previous=self.session
        )
        await self.ctx.audit.record(
            "login_succeeded", user_id=user.id, username=user.username, ip=self.ip
        )
        self.set_session_cookie(token)
        self.write_json({"user": user.to_json()})


class LogoutHandler(ApiHandler):
    """POST /api/auth/logout: end this session and clear the cookie."""

    @authenticated
    async def post(self) -> None:
        await service.logout(self.ctx, self.user, self.session, ip=self.ip)
        self.clear_session_cookie()
        self.set_header("Clear-Site-Data", CLEAR_SITE_DATA)
        self.write_json({"ok": True})


class LogoutAllHandler(ApiHandler):
    """POST /api/auth/logout-all: end every session of this user."""

    @authenticated
    async def post(self) -> None:
        count = await service.logout_all(self.ctx, self.user, ip=self.ip)
        self.clear_session_cookie()
        self.set_header("Clear-Site-Data", CLEAR_SITE_DATA)
        self.write_json({"ok": True, "ended": count})


class ReauthHandler(ApiHandler):
    """POST /api/auth/reauth {password, code?} or {credential} (a passkey assertion for the
    options of /api/auth/reauth/passkey/options): renew this session's sign-in time, same
    token; the code is needed when the authenticator app is on."""

    @authenticated
    async def post(self) -> None:
        data = self.get_json_body()
        if "credential" in data and "password" not in data:
            await passkey_login.reauth_with_passkey(
                self.ctx,
                relying_party(self),
                self.user,
                self.session,
                credential=data["credential"],
                ip=self.ip,
            )
            self.write_json({"ok": True})
            return
        await mfa.reauth(
            self.ctx,
            self.user,
            self.session,
            password=data.get("password"),
            code=data.get("code"),
            ip=self.ip,
        )
        self.write_json({"ok": True})


routes = [
    (r"/api/auth/csrf", CsrfHandler),
    (r"/api/auth/register", RegisterHandler),
    (r"/api/auth/login", LoginHandler),
    (r"/api/auth/logout", LogoutHandler),
    (r"/api/auth/logout-all", LogoutAllHandler),
    (r"/api/auth/reauth", ReauthHandler),
]
