"""Second factors at sign-in (SPEC §14): the half-done sign-in, reauth with a code, and who
must enrol (`require-mfa`).

A right password for a user with an active authenticator app starts a half-done sign-in
instead of a session: an entry in the pending store (memory, or Redis so the code may land on
another process) under a random id that only the browser's signed `plp_mfa` cookie carries,
alive 5 minutes. The code (or a recovery code) finishes it once: the entry is taken in one
step, so a replayed cookie finds nothing. Five wrong codes end it.

Back-off: the password step leaves the account's failure count as it is (it does not reset
it, as a finished sign-in does), and each wrong code counts as a failed login (SPEC §9). So
someone who knows the password cannot guess codes faster than the back-off allows, however
often they give the password again.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ..errors import AccountDisabled, InvalidCode, InvalidInput, SignInExpired

__all__ = ["SignInExpired"]  # re-exported: the handlers catch it by this module's name
from ..pending import new_id
from ..sessions.base import METHOD_TOTP, Session
from ..storage.base import User
from . import recent, service, totp

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

KIND = "mfa"
TTL = 300.0  # seconds a half-done sign-in lives (and its cookie)
MAX_WRONG = 5
METHODS = ["totp", "recovery"]
EXPIRED = "This sign-in has expired or is already finished; sign in again with your password."
TOO_MANY = "Too many wrong codes: sign in again with your password."

# While enrolment is required, these stay open: signing in and out, the XSRF token, reauth,
# the user's own record, and enrolling (TOTP here; passkeys by the other module's paths).
OPEN_API = re.compile(r"/api/(auth/.+|users/me|users/me/(totp|passkeys)(/.*)?|openapi\.json)")
OPEN_PAGES = re.compile(r"/(account(/.*)?|logout|login(/mfa)?)")


async def password_sign_in(
    ctx: Context, *, username: object, password: object, ip: str
) -> tuple[User, str | None]:
    """Check the password; (user, None) when that signs in, (user, pending id) when a second
    factor must follow. The caller starts the session, or sets `plp_mfa` to the id."""
    user = await service.authenticate(
        ctx, username=username, password=password, ip=ip, clear_backoff=False
    )
    if not await totp.is_active(ctx, user.id):
        await ctx.throttle.login_succeeded(user.username)
        return user, None
    pending = new_id()
    await ctx.pending.put(KIND, pending, {"user": user.id, "wrong": 0}, TTL)
    return user, pending


def _answer(code: object, recovery_code: object) -> tuple[str, str]:
    """("totp" | "recovery", the code as text) from the request; InvalidInput otherwise."""
    if (code is None) == (recovery_code is None):
        problem = "Give either the code from your app or a recovery code."
        raise InvalidInput(problem, {"code": problem})
    if code is not None:
        return "totp", totp.code_text(code, "code")
    return "recovery", totp.code_text(recovery_code, "recoveryCode")


async def finish_sign_in(
    ctx: Context,
    pending: str | None,
    *,
    code: object,
    recovery_code: object,
    ip: str,
    user_agent: str,
    previous: Session | None,
) -> tuple[User, str]:
    """Finish a half-done sign-in with a code or a recovery code; (user, session token).

    SignInExpired (401) when there is none (no cookie, expired, used, ended); InvalidCode
    (400 `invalid_code`) for a wrong code, counted by the back-off; RateLimited while the
    account or address is blocked, without looking at the code.
    """
    entry = await ctx.pending.get(KIND, pending) if pending else None
    if entry is None:
        raise SignInExpired(EXPIRED)
    method, text = _answer(code, recovery_code)
    user = await ctx.db.get_user(int(entry["user"]))
    if user is None or user.disabled:
        await ctx.pending.take(KIND, pending)  # type: ignore[arg-type]
        raise AccountDisabled("This account has been disabled.")
    await service.refuse_while_blocked(
        ctx, user, ip=ip, message="Too many failed sign-in attempts; wait a little and try again."
    )
    if method == "totp":
        ok = await totp.check_code(ctx, user, text)
    else:
        ok = await totp.use_recovery_code(ctx, user, text)
    if not ok:
        await _wrong(ctx, user, pending, entry, method, ip)  # type: ignore[arg-type]
    if await ctx.pending.take(KIND, pending) is None:  # type: ignore[arg-type]
        raise SignInExpired(EXPIRED)  # finished meanwhile by another request
    await ctx.throttle.login_succeeded(user.username)
    token = await service.start_session(
        ctx, user, ip=ip, user_agent=user_agent, previous=previous, method=METHOD_TOTP
    )
    if method == "recovery":
        left = await ctx.db.count_recovery_codes(user.id)
        await ctx.audit.record(
            "recovery_code_used", user_id=user.id, username=user.username, ip=ip, left=left
        )
    await ctx.audit.record(
        "login_succeeded", user_id=user.id, username=user.username, ip=ip, method=METHOD_TOTP
    )
    return user, token


async def _wrong(
    ctx: Context, user: User, pending: str, entry: dict[str, Any], method: str, ip: str
) -> None:
    """Count a wrong code (back-off, audit, the sign-in's own count) and raise InvalidCode."""
    await ctx.throttle.login_failed(user.username, ip)
    await ctx.audit.record(
        "mfa_failed", user_id=user.id, username=user.username, ip=ip, method=method
    )
    field = "code" if method == "totp" else "recoveryCode"
    wrong = int(entry.get("wrong", 0)) + 1
    if wrong >= MAX_WRONG:
        await ctx.pending.take(KIND, pending)
        raise InvalidCode(TOO_MANY, {field: TOO_MANY})
    await ctx.pending.update(KIND, pending, {**entry, "wrong": wrong})
    raise InvalidCode(totp.WRONG_CODE, {field: totp.WRONG_CODE})


async def reauth(
    ctx: Context, user: User, session: Session, *, password: object, code: object, ip: str
) -> None:
    """`POST /api/auth/reauth`: the password, plus a code when the authenticator app is on.

    A wrong code counts like a wrong password (back-off, `reauth_failed`); the password
    alone then leaves the failure count as it is, so codes cannot be guessed past it.
    """
    if not await totp.is_active(ctx, user.id):
        await recent.reauth_with_password(ctx, user, session, password=password, ip=ip)
        return
    text = totp.code_text(code, "code")
    await recent.check_password(ctx, user, password, ip=ip, clear_backoff=False)
    if not await totp.check_code(ctx, user, text):
        await ctx.throttle.login_failed(user.username, ip)
        await ctx.audit.record(
            "reauth_failed", user_id=user.id, username=user.username, ip=ip, method="totp"
        )
        raise InvalidCode(totp.WRONG_CODE, {"code": totp.WRONG_CODE})
    await ctx.throttle.login_succeeded(user.username)
    await recent.renewed(ctx, user, session, ip=ip, method=METHOD_TOTP)


def must_enrol(ctx: Context, user: User | None) -> bool:
    """Whether `require-mfa` names the user's role (no query: cheap for every request)."""
    required = ctx.settings.require_mfa
    return bool(required) and user is not None and user.role in required


async def has_second_factor(ctx: Context, user: User) -> bool:
    """Whether the user has a passkey or an active authenticator app."""
    return await ctx.db.count_passkeys(user.id) > 0 or await totp.is_active(ctx, user.id)
