"""Pages for reset codes (SPEC §13): /reset, where a pupil sets a new password with a code,
and the admin console's "Make reset code", which shows a new code once."""

from __future__ import annotations

from ..auth import reset
from ..auth.decorators import require_role
from ..errors import DomainError, InvalidCode, InvalidInput
from .api import parse_id
from .pages import PageHandler


class ResetPage(PageHandler):
    """GET/POST /reset: username, code and a new password (twice); success signs in."""

    def get(self) -> None:
        self.render_page("reset.html", error=None, fields={}, username="")

    async def post(self) -> None:
        username = self.form("username")
        new = self.form("newPassword")
        try:
            if new != self.form("confirmPassword"):
                raise InvalidInput(
                    "The new passwords do not match.", {"confirmPassword": "Does not match."}
                )
            _user, token = await reset.reset_password(
                self.ctx,
                username=username,
                code=self.form("code"),
                new_password=new,
                ip=self.ip,
                user_agent=self.user_agent,
                previous=self.session,
            )
        except DomainError as exc:
            if isinstance(exc, InvalidCode):
                exc.fields = {"code": exc.message}  # shown at the code field on the page
            self.render_error_form("reset.html", exc, username=username)
            return
        self.set_session_cookie(token)
        self.redirect("/dashboard")


class AdminResetCodePage(PageHandler):
    """POST /admin/users/{id}/reset-code: a new code for the user, shown on this page once.

    A POST answered with a page, not a redirect: the code must never be in a URL.
    """

    @require_role("admin")
    async def post(self, raw_id: str) -> None:
        user_id = parse_id(raw_id)
        if not await self.confirm_recent("Making a reset code", cancel="/admin"):
            return
        code, expires = await reset.issue_code(
            self.ctx, self.user, user_id, ip=self.ip, session=self.session
        )
        target = await self.ctx.db.get_user(user_id)
        self.render_page(
            "reset_code.html",
            target=target,
            code=code,
            expires=expires,
            back="/admin",
            back_label="Back to administration",
        )


routes = [
    (r"/reset", ResetPage),
    (r"/admin/users/([^/]+)/reset-code", AdminResetCodePage),
]
