"""JSON endpoints of the authenticator app (SPEC §14): /api/users/me/totp* and the second
step of a password sign-in, /api/auth/login/mfa."""

from __future__ import annotations

from ..auth import mfa, totp
from ..auth.decorators import authenticated
from .base import ApiHandler
from .mfa_cookie import clear_mfa_cookie, read_mfa_cookie


class TotpHandler(ApiHandler):
    """POST starts enrolment (a new pending secret); DELETE turns the app off."""

    @authenticated
    async def post(self) -> None:
        self.write_json(await totp.start_enrolment(self.ctx, self.user))

    @authenticated
    async def delete(self) -> None:
        await totp.disable(self.ctx, self.user, self.session, ip=self.ip)
        self.set_status(204)
        self.finish()


class TotpConfirmHandler(ApiHandler):
    """POST {code}: the pending secret becomes active; the recovery codes, shown once."""

    @authenticated
    async def post(self) -> None:
        data = self.get_json_body()
        codes = await totp.confirm_enrolment(self.ctx, self.user, data.get("code"), ip=self.ip)
        self.write_json({"recoveryCodes": codes})


class LoginMfaHandler(ApiHandler):
    """POST {code} or {recoveryCode}: finish the half-done sign-in `plp_mfa` carries."""

    async def post(self) -> None:
        data = self.get_json_body()
        pending = read_mfa_cookie(self)
        try:
            user, token = await mfa.finish_sign_in(
                self.ctx,
                pending,
                code=data.get("code"),
                recovery_code=data.get("recoveryCode"),
                ip=self.ip,
                user_agent=self.user_agent,
                previous=self.session,
            )
        except mfa.SignInExpired:
            clear_mfa_cookie(self)
            raise
        clear_mfa_cookie(self)
        self.set_session_cookie(token)
        self.write_json({"user": user.to_json()})


routes = [
    (r"/api/users/me/totp", TotpHandler),
    (r"/api/users/me/totp/confirm", TotpConfirmHandler),
    (r"/api/auth/login/mfa", LoginMfaHandler),
]
