"""Pages of the authenticator app (SPEC §14): the code step of a form sign-in (/login/mfa)
and the "Authenticator app" section of /account (start, confirm, turn off)."""

from __future__ import annotations

from typing import Any

from ..auth import mfa, totp
from ..auth.decorators import authenticated
from ..errors import DomainError, InvalidCode, SignInExpired
from ..security import safe_next
from .account_sections import AccountSections
from .errors import http_error
from .mfa_cookie import clear_mfa_cookie, read_mfa_cookie
from .pages import PageHandler

USES = ("code", "recovery")


class LoginMfaPage(PageHandler):
    """GET shows the code form (or the recovery-code form, `?use=recovery`); POST finishes
    the half-done sign-in and goes on to `next`."""

    def next_value(self) -> str:
        return safe_next(self.get_argument("next", None))

    def use(self) -> str:
        use = self.get_argument("use", "code")
        return use if use in USES else "code"

    def get(self) -> None:
        if read_mfa_cookie(self) is None:
            self.redirect("/login")
            return
        self.render_page(
            "login_mfa.html", error=None, fields={}, next=self.next_value(), use=self.use()
        )

    async def post(self) -> None:
        use = self.use()
        try:
            user, token = await mfa.finish_sign_in(
                self.ctx,
                read_mfa_cookie(self),
                code=self.form("code") if use == "code" else None,
                recovery_code=self.form("recoveryCode") if use == "recovery" else None,
                ip=self.ip,
                user_agent=self.user_agent,
                previous=self.session,
            )
        except (SignInExpired, InvalidCode) as exc:
            if isinstance(exc, SignInExpired) or exc.message == mfa.TOO_MANY:
                clear_mfa_cookie(self)
                self.start_again(exc)
                return
            self.render_error_form("login_mfa.html", exc, next=self.next_value(), use=use)
            return
        except DomainError as exc:
            self.render_error_form("login_mfa.html", exc, next=self.next_value(), use=use)
            return
        clear_mfa_cookie(self)
        self.set_session_cookie(token)
        self.redirect_to_next()

    def start_again(self, exc: DomainError) -> None:
        """The sign-in is over: the password form again, with why, at 401."""
        answer = http_error(exc)
        self.set_status(401)
        self.render_page(
            "login.html", error=answer.message, fields={}, username="", next=self.next_value()
        )


class TotpStartPage(AccountSections, PageHandler):
    """POST /account/totp: a new pending secret; /account then shows its QR code."""

    @authenticated
    async def post(self) -> None:
        try:
            await totp.start_enrolment(self.ctx, self.user)
        except DomainError as exc:
            await self.render_account(error=http_error(exc).message)
            return
        self.redirect("/account?done=totp-started#totp")

    async def render_account(self, **values: Any) -> None:
        """/account with the authenticator section's own message, codes or field errors."""
        await self.load_totp_status()
        assert self.totp_status is not None
        self.totp_status.update(values)
        self.render_page(
            "account.html",
            error=None,
            fields=values.get("fields", {}),
            form="totp",
            display_name=self.user.display_name,
            notice="",
        )


class TotpConfirmPage(TotpStartPage):
    """POST /account/totp/confirm {code}: active; the recovery codes are shown once."""

    @authenticated
    async def post(self) -> None:
        try:
            codes = await totp.confirm_enrolment(self.ctx, self.user, self.form("code"), ip=self.ip)
        except DomainError as exc:
            answer = http_error(exc)
            self.set_status(answer.status_code)
            await self.render_account(error=answer.message, fields=answer.fields or {})
            return
        await self.render_account(codes=codes)


class TotpOffPage(AccountSections, PageHandler):
    """POST /account/totp/off: turn the app off, after the inline "Confirm it is you"."""

    @authenticated
    async def post(self) -> None:
        if not await self.confirm_recent("Turning off the authenticator app", cancel="/account"):
            return
        try:
            await totp.disable(self.ctx, self.user, self.session, ip=self.ip)
        except DomainError:
            pass  # already off (another tab): the page below shows the truth
        self.redirect("/account?done=totp-off#totp")


routes = [
    (r"/login/mfa", LoginMfaPage),
    (r"/account/totp", TotpStartPage),
    (r"/account/totp/confirm", TotpConfirmPage),
    (r"/account/totp/off", TotpOffPage),
]
