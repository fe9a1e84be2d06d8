"""Signing in and out: credentials under the abuse limits, sessions, password changes.

Each function validates, applies the abuse limits, talks to the stores and writes the audit
trail; handlers only translate HTTP to calls and results to responses. Failures are
domain errors (plp/errors.py), which plp/handlers/base.py maps to the statuses and codes
of SPEC §6. Creating accounts and the admin's changes to them are in plp/auth/accounts.py.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING

from ..errors import AccountDisabled, InvalidCredentials, InvalidInput, NotFound, RateLimited
from ..sessions.base import END_LOGOUT, END_PASSWORD, END_REVOKED, METHOD_PASSWORD, Session
from ..storage.base import StorageError, StorageUnavailable, User
from . import accounts
from .accounts import USERNAME_RE, normalize_username
from .passwords import password_problem

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

# Usernames in throttle keys are bounded so hostile input cannot grow memory per attempt.
THROTTLE_NAME_MAX = 64
INVALID_CREDENTIALS = "Invalid username or password."


async def register_and_sign_in(
    ctx: Context,
    *,
    username: object,
    password: object,
    display_name: object,
    ip: str,
    user_agent: str,
    previous: Session | None,
) -> tuple[User, str]:
    """Self-registration: a student account and its first session (the token), or neither.

    The account row is written first (the session needs its id); if counting the
    registration or starting the session then fails (Redis or the disk down), the row is
    removed again, so a 503 never leaves an account the person cannot know they have.
    """
    user = await accounts.create_account(
        ctx,
        username=username,
        password=password,
        display_name=display_name,
        role="student",
        ip=ip,
        limited=True,
    )
    try:
        await ctx.throttle.registered(ip)
        token = await start_session(ctx, user, ip=ip, user_agent=user_agent, previous=previous)
    except Exception as exc:
        await accounts.undo_account(ctx, user, exc)
        raise
    await ctx.audit.record(
        "registered", user_id=user.id, username=user.username, ip=ip, role="student"
    )
    return user, token


async def authenticate(
    ctx: Context, *, username: object, password: object, ip: str, clear_backoff: bool = True
) -> User:
    """Check a username and password under the abuse limits; the user, or a domain error.

    Unknown usernames and wrong passwords give the same 401 after the same bcrypt work.
    A blocked account or address gets 429 without any password check, and that attempt
    does not extend the block. `clear_backoff=False` leaves the account's failure count as
    it is, for a sign-in that is complete only after a second factor (plp/auth/mfa.py).
    """
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput(
            "Username and password are required.",
            {
                k: "Must be a string."
                for k, v in (("username", username), ("password", password))
                if not isinstance(v, str)
            },
        )
    name = normalize_username(username)[:THROTTLE_NAME_MAX]
    wait, which = await ctx.throttle.login_wait(name, ip)
    if wait:
        await ctx.audit.record("login_throttled", username=name, ip=ip, limit=which)
        raise RateLimited("Too many failed sign-in attempts; wait a little and try again.", wait)
    found = await ctx.db.get_credentials(name) if USERNAME_RE.fullmatch(name) else None
    ok = await ctx.hasher.verify(password, found[1] if found else None)
    if not ok or found is None:
        await ctx.throttle.login_failed(name, ip)
        await ctx.audit.record(
            "login_failed",
            user_id=found[0].id if found else None,
            username=name,
            ip=ip,
            known=found is not None,
        )
        raise InvalidCredentials(INVALID_CREDENTIALS)
    user = found[0]
    if user.disabled:
        await ctx.audit.record("login_failed", user_id=user.id, username=name, ip=ip, disabled=True)
        raise AccountDisabled("This account has been disabled.")
    if clear_backoff:
        await ctx.throttle.login_succeeded(name)
    if ctx.hasher.needs_rehash(found[1]):
        await rehash_password(ctx, user, password, found[1])
    return user


async def rehash_password(ctx: Context, user: User, password: str, stored: str) -> None:
    """Store the password hashed at the current cost, unless its hash changed meanwhile.

    The compare keeps a password change that lands while this sign-in hashes from being
    undone. A failure is logged, not raised: the sign-in itself has succeeded.
    """
    fresh = await ctx.hasher.hash(password)
    try:
        current = await ctx.db.get_credentials(user.username)
        if current is None or current[1] != stored:
            return
        await ctx.db.set_password_hash(user.id, fresh)
    except (StorageError, StorageUnavailable) as exc:
        # The class name only: a driver's message could quote the statement's values.
        log.warning(
            "could not re-hash the password of user %s (%s)", user.id, exc.__class__.__name__
        )
        return
    log.info("re-hashed the password of user %s at cost %s", user.id, ctx.hasher.rounds)


async def start_session(
    ctx: Context,
    user: User,
    *,
    ip: str,
    user_agent: str,
    previous: Session | None,
    method: str = METHOD_PASSWORD,
) -> str:
    """End the session the request carried (no fixation) and start a new one signed in by
    `method` (SPEC §14); the token."""
    if previous is not None:
        await ctx.store.end(previous.key, END_LOGOUT)
    token, _session = await ctx.store.create(user.id, ip=ip, user_agent=user_agent, method=method)
    return token


async def logout(ctx: Context, user: User, session: Session, *, ip: str) -> None:
    """End this session."""
    await ctx.store.end(session.key, END_LOGOUT)
    await ctx.audit.record("logout", user_id=user.id, username=user.username, ip=ip)


async def logout_all(ctx: Context, user: User, *, ip: str) -> int:
    """End every session of the user, this one included."""
    count = await ctx.store.end_all_for_user(user.id, END_LOGOUT)
    await ctx.audit.record(
        "logout_all", user_id=user.id, username=user.username, ip=ip, sessions=count
    )
    return count


async def refuse_while_blocked(
    ctx: Context,
    user: User,
    *,
    ip: str,
    during: str | None = None,
    message: str = "Too many wrong passwords; wait a little and try again.",
) -> None:
    """429 (RateLimited) while the account or the address is blocked (SPEC §9), audited
    `login_throttled`; every check of a signed-in user's own secret (password change, reauth,
    second factors) starts here, so none of them can be used to guess at bcrypt speed."""
    wait, which = await ctx.throttle.login_wait(user.username, ip)
    if wait:
        detail = {"limit": which} if during is None else {"limit": which, "during": during}
        await ctx.audit.record(
            "login_throttled", user_id=user.id, username=user.username, ip=ip, **detail
        )
        raise RateLimited(message, wait)


async def change_password(
    ctx: Context,
    user: User,
    session: Session,
    *,
    current: object,
    new: object,
    ip: str,
    user_agent: str,
) -> str:
    """Check the current password, set the new one, end every session; the new token.

    Wrong current passwords count as failed logins, so a stolen session cannot be used
    to guess the password at bcrypt speed.
    """
    if not isinstance(current, str):
        raise InvalidInput(
            "Current password is required.", {"currentPassword": "This field is required."}
        )
    problem = password_problem(new, user.username)
    if problem:
        raise InvalidInput(problem, {"newPassword": problem})
    await refuse_while_blocked(ctx, user, ip=ip, during="password_change")
    found = await ctx.db.get_credentials(user.username)
    if found is None or not await ctx.hasher.verify(current, found[1]):
        await ctx.throttle.login_failed(user.username, ip)
        await ctx.audit.record(
            "login_failed", user_id=user.id, username=user.username, ip=ip, during="password_change"
        )
        raise InvalidInput(
            "The current password is not correct.",
            {"currentPassword": "The current password is not correct."},
        )
    await ctx.throttle.login_succeeded(user.username)
    # The cut-off ends this user's sessions in every process, memory stores included.
    await ctx.db.set_password_and_cut_sessions(
        user.id,
        await ctx.hasher.hash(new),  # type: ignore[arg-type]
        datetime.datetime.fromtimestamp(ctx.clock(), datetime.UTC),
    )
    await ctx.store.end_all_for_user(user.id, END_PASSWORD)
    # The new session has just proved the password: it keeps the old one's sign-in method.
    token, _ = await ctx.store.create(user.id, ip=ip, user_agent=user_agent, method=session.method)
    await ctx.audit.record("password_changed", user_id=user.id, username=user.username, ip=ip)
    return token


async def revoke_session(ctx: Context, user: User, handle: str, *, ip: str) -> None:
    """End one of the user's own sessions by handle; 404 for anyone else's or unknown."""
    if not await ctx.store.end_by_handle(user.id, handle, END_REVOKED):
        raise NotFound("No such session.")
    await ctx.audit.record(
        "session_revoked", user_id=user.id, username=user.username, ip=ip, by="self"
    )
