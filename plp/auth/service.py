"""Account operations shared by the JSON API and the form pages.

Each function validates, applies the abuse limits, talks to the stores and writes the audit
trail; handlers only translate HTTP to calls and results to responses. Failures are
`ApiError`s carrying the status and code of SPEC §6.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING

from ..errors import ApiError, bad_request
from ..sessions.base import (
    END_DISABLED,
    END_LOGOUT,
    END_PASSWORD,
    END_REVOKED,
    Session,
)
from ..storage.base import (
    ROLES,
    NotFound,
    StorageError,
    StorageUnavailable,
    User,
    UsernameTaken,
)
from .passwords import password_problem

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[a-z0-9_.\-]{3,32}$")
DISPLAY_NAME_MAX = 64
# Usernames in throttle keys are bounded so hostile input cannot grow memory per attempt.
THROTTLE_NAME_MAX = 64
INVALID_CREDENTIALS = "Invalid username or password."

log = logging.getLogger(__name__)


def normalize_username(raw: str) -> str:
    """Lower-cased username without surrounding spaces (validity is checked separately).

    Sign-in forgives the space a phone keyboard adds after a word; registration still
    refuses it (`username_problem`), so the stored name is exactly what was accepted.
    """
    return raw.strip().lower()


def username_problem(username: object) -> str | None:
    """Why a username is refused, or None."""
    if not isinstance(username, str):
        return "Username must be a string."
    if not USERNAME_RE.fullmatch(username.lower()):  # match() with `$` allows a final "\n"
        return "Username must be 3-32 characters: letters, digits, '_', '.' or '-'."
    return None


def clean_display_name(raw: object, username: str) -> str:
    """The display name to store: as typed, or the username when absent or blank."""
    if raw is None:
        return username
    if not isinstance(raw, str):
        raise bad_request("Display name must be a string.", {"displayName": "Must be a string."})
    if not raw.strip():
        return username
    if len(raw) > DISPLAY_NAME_MAX:
        raise bad_request(
            "Display name is too long.",
            {"displayName": f"At most {DISPLAY_NAME_MAX} characters."},
        )
    if not raw.isprintable():
        raise bad_request(
            "Display name contains characters that cannot be shown.",
            {"displayName": "Only printable characters are allowed."},
        )
    return raw


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}


def validate_new_account(
    username: object, password: object, display_name: object
) -> tuple[str, str, str]:
    """(username, password, display name) for a new account, or a 400 listing each problem."""
    problems: dict[str, str] = {}
    name_problem = username_problem(username)
    if name_problem:
        problems["username"] = name_problem
    name = normalize_username(username) if isinstance(username, str) else ""
    pw_problem = password_problem(password, name)
    if pw_problem:
        problems["password"] = pw_problem
    if problems:
        raise bad_request("Please correct the highlighted fields.", problems)
    return name, password, clean_display_name(display_name, name)  # type: ignore[return-value]


async def register(
    ctx: Context,
    *,
    username: object,
    password: object,
    display_name: object,
    role: str = "student",
    ip: str,
    actor: User | None = None,
) -> User:
    """Create an account. Self-registration (no actor) is limited per address."""
    user = await _create_account(
        ctx,
        username=username,
        password=password,
        display_name=display_name,
        role=role,
        ip=ip,
        limited=actor is None,
    )
    if actor is None:
        await ctx.throttle.registered(ip)
    detail = {"role": role} if actor is None else {"role": role, "by": actor.username}
    await ctx.audit.record("registered", user_id=user.id, username=user.username, ip=ip, **detail)
    return user


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
    user = await _create_account(
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
        await _undo_account(ctx, user, exc)
        raise
    await ctx.audit.record(
        "registered", user_id=user.id, username=user.username, ip=ip, role="student"
    )
    return user, token


async def _create_account(
    ctx: Context,
    *,
    username: object,
    password: object,
    display_name: object,
    role: str,
    ip: str,
    limited: bool,
) -> User:
    """Validate, apply the per-address limit (when `limited`), hash and insert the user."""
    name, secret, shown = validate_new_account(username, password, display_name)
    if role not in ROLES:
        raise bad_request("Unknown role.", {"role": "Must be student, teacher or admin."})
    if limited:
        wait = await ctx.throttle.registration_wait(ip)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                "Too many registrations from your network; try again later.",
                headers=_retry_after(wait),
            )
    hashed = await ctx.hasher.hash(secret)
    try:
        return await ctx.db.create_user(name, shown, role, hashed)
    except UsernameTaken:
        raise ApiError(
            409,
            "conflict",
            "That username is taken.",
            fields={"username": "That username is taken."},
        ) from None


async def _undo_account(ctx: Context, user: User, cause: BaseException) -> None:
    """Remove an account whose registration failed after its row was written; never raises."""
    try:
        await ctx.db.delete_user(user.id)
    except StorageUnavailable as exc:
        log.error(
            "registration of %r failed (%s) and its account %d could not be removed: %s",
            user.username,
            cause,
            user.id,
            exc,
        )
        return
    log.warning("registration of %r failed (%s); its account was removed", user.username, cause)


async def authenticate(ctx: Context, *, username: object, password: object, ip: str) -> User:
    """Check a username and password under the abuse limits; the user, or an ApiError.

    Unknown usernames and wrong passwords give the same 401 after the same bcrypt work.
    A blocked account or address gets 429 without any password check, and that attempt
    does not extend the block.
    """
    if not isinstance(username, str) or not isinstance(password, str):
        raise bad_request(
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
        raise ApiError(
            429,
            "rate_limited",
            "Too many failed sign-in attempts; wait a little and try again.",
            headers=_retry_after(wait),
        )
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
        raise ApiError(401, "invalid_credentials", INVALID_CREDENTIALS)
    user = found[0]
    if user.disabled:
        await ctx.audit.record("login_failed", user_id=user.id, username=name, ip=ip, disabled=True)
        raise ApiError(403, "account_disabled", "This account has been disabled.")
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
    ctx: Context, user: User, *, ip: str, user_agent: str, previous: Session | None
) -> str:
    """End the session the request carried (no fixation) and start a new one; the token."""
    if previous is not None:
        await ctx.store.end(previous.key, END_LOGOUT)
    token, _session = await ctx.store.create(user.id, ip=ip, user_agent=user_agent)
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
        raise bad_request(
            "Current password is required.", {"currentPassword": "This field is required."}
        )
    problem = password_problem(new, user.username)
    if problem:
        raise bad_request(problem, {"newPassword": problem})
    wait, which = await ctx.throttle.login_wait(user.username, ip)
    if wait:
        await ctx.audit.record(
            "login_throttled",
            user_id=user.id,
            username=user.username,
            ip=ip,
            limit=which,
            during="password_change",
        )
        raise ApiError(
            429,
            "rate_limited",
            "Too many wrong passwords; wait a little and try again.",
            headers=_retry_after(wait),
        )
    found = await ctx.db.get_credentials(user.username)
    if found is None or not await ctx.hasher.verify(current, found[1]):
        await ctx.throttle.login_failed(user.username, ip)
        await ctx.audit.record(
            "login_failed", user_id=user.id, username=user.username, ip=ip, during="password_change"
        )
        raise bad_request(
            "The current password is not correct.",
            {"currentPassword": "The current password is not correct."},
        )
    await ctx.throttle.login_succeeded(user.username)
    await ctx.db.set_password_hash(user.id, await ctx.hasher.hash(new))  # type: ignore[arg-type]
    await ctx.store.end_all_for_user(user.id, END_PASSWORD)
    token, _ = await ctx.store.create(user.id, ip=ip, user_agent=user_agent)
    await ctx.audit.record("password_changed", user_id=user.id, username=user.username, ip=ip)
    return token


async def revoke_session(ctx: Context, user: User, handle: str, *, ip: str) -> None:
    """End one of the user's own sessions by handle; 404 for anyone else's or unknown."""
    if not await ctx.store.end_by_handle(user.id, handle, END_REVOKED):
        raise ApiError(404, "not_found", "No such session.")
    await ctx.audit.record(
        "session_revoked", user_id=user.id, username=user.username, ip=ip, by="self"
    )


async def admin_update_user(
    ctx: Context, admin: User, user_id: int, *, role: object, disabled: object, ip: str
) -> User:
    """Change a user's role and/or disabled state; disabling ends every session at once."""
    if role is None and disabled is None:
        raise bad_request("Give role and/or disabled.", {"role": "Give role or disabled."})
    if role is not None and (not isinstance(role, str) or role not in ROLES):
        raise bad_request("Unknown role.", {"role": "Must be student, teacher or admin."})
    if disabled is not None and not isinstance(disabled, bool):
        raise bad_request("disabled must be true or false.", {"disabled": "Must be true or false."})
    target = await ctx.db.get_user(user_id)
    if target is None:
        raise ApiError(404, "not_found", "No such user.")
    if target.id == admin.id and (disabled is True or (role is not None and role != "admin")):
        raise ApiError(
            409, "conflict", "You cannot disable or demote your own account; ask another admin."
        )
    try:
        updated = await ctx.db.update_user(
            user_id,
            role=role if role != target.role else None,  # type: ignore[arg-type]
            disabled=disabled if disabled != target.disabled else None,  # type: ignore[arg-type]
        )
    except NotFound:
        raise ApiError(404, "not_found", "No such user.") from None
    if updated.role != target.role:
        await ctx.audit.record(
            "role_changed",
            user_id=updated.id,
            username=updated.username,
            ip=ip,
            by=admin.username,
            old=target.role,
            new=updated.role,
        )
    if updated.disabled and not target.disabled:
        count = await ctx.store.end_all_for_user(updated.id, END_DISABLED)
        await ctx.audit.record(
            "user_disabled",
            user_id=updated.id,
            username=updated.username,
            ip=ip,
            by=admin.username,
            sessions=count,
        )
    elif target.disabled and not updated.disabled:
        await ctx.audit.record(
            "user_enabled", user_id=updated.id, username=updated.username, ip=ip, by=admin.username
        )
    return updated


async def admin_revoke_sessions(ctx: Context, admin: User, user_id: int, *, ip: str) -> int:
    """End every session of a user."""
    target = await ctx.db.get_user(user_id)
    if target is None:
        raise ApiError(404, "not_found", "No such user.")
    count = await ctx.store.end_all_for_user(target.id, END_REVOKED)
    await ctx.audit.record(
        "session_revoked",
        user_id=target.id,
        username=target.username,
        ip=ip,
        by=admin.username,
        sessions=count,
    )
    return count
