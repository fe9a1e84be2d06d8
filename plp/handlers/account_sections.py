"""What the /account page shows beyond the user record: the passkeys section.

A mixin for every handler that renders account.html (the page itself and its forms, which
re-render it with their errors), so the template always has its lists; loaded in `prepare`
because templates cannot await.
"""

from __future__ import annotations

from typing import Any

from ..storage.passkeys import Passkey
from .base import BaseHandler


class AccountSections(BaseHandler):
    """Loads the signed-in user's passkeys for account.html."""

    account_passkeys: list[Passkey]

    async def prepare(self) -> None:
        await super().prepare()
        self.account_passkeys = []
        if self.user is not None:
            self.account_passkeys = await self.ctx.db.list_passkeys(self.user.id)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(passkeys=getattr(self, "account_passkeys", []))
        return namespace
