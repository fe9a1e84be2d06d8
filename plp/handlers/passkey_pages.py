"""The passkey forms of /account: rename and remove (adding needs the browser's WebAuthn
API, so static/passkeys.js does it through the JSON API).

Removing asks for a recent sign-in inline (`PageHandler.confirm_recent`) and then carries on.
"""

from __future__ import annotations

from ..auth.decorators import authenticated
from ..errors import DomainError
from .account_sections import AccountSections
from .api import parse_id
from .pages import PageHandler
from .passkeys import passkeys


class PasskeyFormBase(AccountSections, PageHandler):
    """A passkey form: on a refusal, /account again with the error at that passkey's form."""

    def refused(self, passkey_id: str, exc: DomainError) -> None:
        fields = {f"passkey-{passkey_id}-{k}": v for k, v in (exc.fields or {}).items()}
        exc.fields = fields or {f"passkey-{passkey_id}-name": exc.message}
        self.render_error_form(
            "account.html",
            exc,
            notice="",
            form=f"passkey-{passkey_id}",
            display_name=self.user.display_name,
        )


class PasskeyRenamePage(PasskeyFormBase):
    """POST /account/passkeys/{id}/rename {name}."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        try:
            await passkeys.rename_passkey(self.ctx, self.user, parse_id(raw_id), self.form("name"))
        except DomainError as exc:
            self.refused(raw_id, exc)
            return
        self.redirect("/account?done=passkey-renamed")


class PasskeyDeletePage(PasskeyFormBase):
    """POST /account/passkeys/{id}/delete: asks for a recent sign-in first when needed."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        passkey_id = parse_id(raw_id)
        if not await self.confirm_recent("Removing a passkey", cancel="/account"):
            return
        try:
            await passkeys.delete_passkey(self.ctx, self.user, self.session, passkey_id, ip=self.ip)
        except DomainError as exc:
            self.refused(raw_id, exc)
            return
        self.redirect("/account?done=passkey-removed")


routes = [
    (r"/account/passkeys/([0-9]+)/rename", PasskeyRenamePage),
    (r"/account/passkeys/([0-9]+)/delete", PasskeyDeletePage),
]
