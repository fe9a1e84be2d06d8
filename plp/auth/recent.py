"""Recent sign-in ("sudo", SPEC §14): sensitive actions need a proof of identity within
`reauth-window`, and `reauth` renews it for the current session without a new token.

A stolen session cookie, or a laptop left signed in, then reads what its user may read but
cannot change roles, disable accounts, end other users' sessions, hand out reset codes or
remove a second factor without the password (or a passkey) again. The clock is the session
store's, the same one its expiry uses, so tests can move it.

Reauth with a password is checked like a login: the account back-off and the per-address
limit of SPEC §9 apply, and each wrong password counts towards them; it never ends the
session. Second factors (an authenticator code when TOTP is on, or a passkey assertion instead
of the password) are checked by their own modules, which call `renewed` once they succeed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import InvalidInput, ReauthRequired
from ..sessions.base import Session
from ..storage.base import User
from . import service

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

REAUTH_MESSAGE = "Confirm it is you: sign in again to do this."
WRONG_PASSWORD = "The password is not correct."


def is_recent(ctx: Context, session: Session | None) -> bool:
    """Whether the session proved its user within `reauth-window`."""
    if session is None:
        return False
    return ctx.store.clock() - session.auth_at < ctx.settings.reauth_window


def ensure_recent(ctx: Context, session: Session | None) -> None:
    """Raise ReauthRequired (401 `reauth_required`) unless the sign-in is recent."""
    if not is_recent(ctx, session):
        raise ReauthRequired(REAUTH_MESSAGE)


async def check_password(
    ctx: Context, user: User, password: object, *, ip: str, clear_backoff: bool = True
) -> None:
    """The user's password again, under the login limits; InvalidInput when wrong.

    Throttled like a login (429 while the account or address is blocked, without a check);
    a wrong password counts as a failed login and is audited `reauth_failed`. With
    `clear_backoff=False` a right one leaves the failure count for the second factor.
    """
    if not isinstance(password, str) or not password:
        raise InvalidInput("Your password is required.", {"password": "Enter your password."})
    await service.refuse_while_blocked(ctx, user, ip=ip, during="reauth")
    found = await ctx.db.get_credentials(user.username)
    if found is None or not await ctx.hasher.verify(password, found[1]):
        await ctx.throttle.login_failed(user.username, ip)
        await ctx.audit.record(
            "reauth_failed", user_id=user.id, username=user.username, ip=ip, method="password"
        )
        raise InvalidInput(WRONG_PASSWORD, {"password": WRONG_PASSWORD})
    if clear_backoff:
        await ctx.throttle.login_succeeded(user.username)


async def renewed(ctx: Context, user: User, session: Session, *, ip: str, method: str) -> None:
    """Mark the session's sign-in as recent and audit `reauth_succeeded`."""
    await ctx.store.renew_auth(session)
    await ctx.audit.record(
        "reauth_succeeded", user_id=user.id, username=user.username, ip=ip, method=method
    )


async def reauth_with_password(
    ctx: Context, user: User, session: Session, *, password: object, ip: str
) -> None:
    """`POST /api/auth/reauth {password}`: renew the session's sign-in time, same token."""
    await check_password(ctx, user, password, ip=ip)
    await renewed(ctx, user, session, ip=ip, method="password")
