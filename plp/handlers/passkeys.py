"""JSON endpoints for passkeys (SPEC §14): a user's own passkeys under /api/users/me/passkeys,
passkey sign-in under /api/auth/login/passkey, and the options for a passkey reauth.

The sign-in challenge travels with the browser as a random id in a short-lived signed cookie
(`plp_passkey`); registration and reauth challenges are bound to the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..auth import service
from ..auth.decorators import authenticated
from ..lazy import lazy_module
from ..security import own_origin
from ..sessions.base import METHOD_PASSKEY
from .api import parse_id
from .base import ApiHandler, BaseHandler

if TYPE_CHECKING:
    from ..auth.webauthn_rp import RelyingParty

# py_webauthn is loaded by the first passkey request, not at start (plp/lazy.py).
passkeys = lazy_module("plp.auth.passkeys")
passkey_login = lazy_module("plp.auth.passkey_login")
webauthn_rp = lazy_module("plp.auth.webauthn_rp")

SIGN_IN_COOKIE = "plp_passkey"


def relying_party(handler: BaseHandler) -> RelyingParty:
    """The RP ID (`rp-id`, else the request's host name) and this server's own origin as the
    client sees it (the same rule as the chat socket's Origin check)."""
    settings = handler.ctx.settings
    request = handler.request
    return webauthn_rp.RelyingParty(
        rp_id=settings.rp_id or request.host_name, origin=own_origin(request, settings)
    )


def sign_in_cookie_name(handler: BaseHandler) -> str:
    """`__Host-plp_passkey` in production, like the session cookie."""
    return ("__Host-" if handler.ctx.settings.production else "") + SIGN_IN_COOKIE


class PasskeyOptionsHandler(ApiHandler):
    """POST /api/users/me/passkeys/options: creation options for a new passkey."""

    @authenticated
    async def post(self) -> None:
        options = await passkeys.registration_options(
            self.ctx, relying_party(self), self.user, self.session
        )
        self.write_json(options)


class PasskeysHandler(ApiHandler):
    """GET /api/users/me/passkeys: the list; POST {credential, name?}: add one."""

    @authenticated
    async def get(self) -> None:
        found = await passkeys.list_passkeys(self.ctx, self.user)
        self.write_json({"passkeys": [p.to_json() for p in found]})

    @authenticated
    async def post(self) -> None:
        data = self.get_json_body()
        passkey = await passkeys.add_passkey(
            self.ctx,
            relying_party(self),
            self.user,
            self.session,
            credential=data.get("credential"),
            name=data.get("name"),
            ip=self.ip,
        )
        self.write_json({"passkey": passkey.to_json()}, status=201)


class PasskeyHandler(ApiHandler):
    """PATCH /api/users/me/passkeys/{id} {name}; DELETE (recent sign-in)."""

    @authenticated
    async def patch(self, raw_id: str) -> None:
        data = self.get_json_body()
        passkey = await passkeys.rename_passkey(
            self.ctx, self.user, parse_id(raw_id), data.get("name")
        )
        self.write_json({"passkey": passkey.to_json()})

    @authenticated
    async def delete(self, raw_id: str) -> None:
        await passkeys.delete_passkey(
            self.ctx, self.user, self.session, parse_id(raw_id), ip=self.ip
        )
        self.set_status(204)
        self.finish()


class LoginPasskeyOptionsHandler(ApiHandler):
    """POST /api/auth/login/passkey/options: request options, no `allowCredentials`."""

    async def post(self) -> None:
        attempt, options = await passkey_login.sign_in_options(
            self.ctx, relying_party(self), ip=self.ip
        )
        self.set_signed_cookie(
            sign_in_cookie_name(self),
            attempt,
            expires_days=None,
            max_age=int(webauthn_rp.CHALLENGE_TTL),
            path="/",
            httponly=True,
            secure=self.ctx.settings.production,
            samesite="Strict",
        )
        self.write_json(options)


class LoginPasskeyHandler(ApiHandler):
    """POST /api/auth/login/passkey {credential}: a new session signed in by `passkey`."""

    async def post(self) -> None:
        data = self.get_json_body()
        name = sign_in_cookie_name(self)
        raw = self.get_signed_cookie(name, max_age_days=1)
        attempt = raw.decode("ascii", "replace") if raw else None
        self.clear_cookie(name, path="/", secure=self.ctx.settings.production)
        user = await passkey_login.sign_in(
            self.ctx,
            relying_party(self),
            attempt=attempt,
            credential=data.get("credential"),
            ip=self.ip,
        )
        token = await service.start_session(
            self.ctx,
            user,
            ip=self.ip,
            user_agent=self.user_agent,
            previous=self.session,
            method=METHOD_PASSKEY,
        )
        await self.ctx.audit.record(
            "login_succeeded", user_id=user.id, username=user.username, ip=self.ip, method="passkey"
        )
        self.set_session_cookie(token)
        self.write_json({"user": user.to_json()})


class ReauthPasskeyOptionsHandler(ApiHandler):
    """POST /api/auth/reauth/passkey/options: request options for a passkey reauth, for the
    signed-in user's own passkeys; answered by `POST /api/auth/reauth {credential}`."""

    @authenticated
    async def post(self) -> None:
        options = await passkey_login.reauth_options(
            self.ctx, relying_party(self), self.user, self.session
        )
        self.write_json(options)


routes = [
    (r"/api/users/me/passkeys/options", PasskeyOptionsHandler),
    (r"/api/users/me/passkeys", PasskeysHandler),
    (r"/api/users/me/passkeys/([^/]+)", PasskeyHandler),
    (r"/api/auth/login/passkey/options", LoginPasskeyOptionsHandler),
    (r"/api/auth/login/passkey", LoginPasskeyHandler),
    (r"/api/auth/reauth/passkey/options", ReauthPasskeyOptionsHandler),
]
