"""Accounts: username and display-name rules, creating accounts, and admin changes to them.

Each function validates, applies the abuse limits, talks to the stores and writes the audit
trail; handlers only translate HTTP to calls and results to responses. Failures are
domain errors (plp/errors.py), which plp/handlers/base.py maps to the statuses and codes
of SPEC §6. Signing in, sessions and passwords are in plp/auth/service.py.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from ..errors import Conflict, InvalidInput, NotFound, RateLimited
from ..sessions.base import END_DISABLED, END_REVOKED
from ..storage.base import ROLES, StorageUnavailable, User, UsernameTaken
from ..storage.base import NotFound as RecordNotFound
from .passwords import password_problem

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[a-z0-9_.\-]{3,32}$")
DISPLAY_NAME_MAX = 64


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
        raise InvalidInput("Display name must be a string.", {"displayName": "Must be a string."})
    # Length first: 100 spaces are too long, not "blank, so the username".
    if len(raw) > DISPLAY_NAME_MAX:
        raise InvalidInput(
            "Display name is too long.",
            {"displayName": f"At most {DISPLAY_NAME_MAX} characters."},
        )
    if not raw.strip():
        return username
    if not raw.isprintable():
        raise InvalidInput(
            "Display name contains characters that cannot be shown.",
            {"displayName": "Only printable characters are allowed."},
        )
    return raw


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
        raise InvalidInput("Please correct the highlighted fields.", problems)
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
    user = await create_account(
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


async def create_account(
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
        raise InvalidInput("Unknown role.", {"role": "Must be student, teacher or admin."})
    if limited:
        wait = await ctx.throttle.registration_wait(ip)
        if wait:
            raise RateLimited("Too many registrations from your network; try again later.", wait)
    hashed = await ctx.hasher.hash(secret)
    try:
        return await ctx.db.create_user(name, shown, role, hashed)
    except UsernameTaken:
        raise Conflict("That username is taken.", {"username": "That username is taken."}) from None


async def undo_account(ctx: Context, user: User, cause: BaseException) -> None:
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


async def admin_update_user(
    ctx: Context, admin: User, user_id: int, *, role: object, disabled: object, ip: str
) -> User:
    """Change a user's role and/or disabled state; disabling ends every session at once."""
    if role is None and disabled is None:
        raise InvalidInput("Give role and/or disabled.", {"role": "Give role or disabled."})
    if role is not None and (not isinstance(role, str) or role not in ROLES):
        raise InvalidInput("Unknown role.", {"role": "Must be student, teacher or admin."})
    if disabled is not None and not isinstance(disabled, bool):
        raise InvalidInput(
            "disabled must be true or false.", {"disabled": "Must be true or false."}
        )
    target = await ctx.db.get_user(user_id)
    if target is None:
        raise NotFound("No such user.")
    if target.id == admin.id and (disabled is True or (role is not None and role != "admin")):
        raise Conflict("You cannot disable or demote your own account; ask another admin.")
    try:
        updated = await ctx.db.update_user(
            user_id,
            role=role if role != target.role else None,  # type: ignore[arg-type]
            disabled=disabled if disabled != target.disabled else None,  # type: ignore[arg-type]
        )
    except RecordNotFound:
        raise NotFound("No such user.") from None
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


async def change_display_name(ctx: Context, user: User, raw: object) -> User:
    """A new display name by the registration rules (blank: the username); no audit row."""
    shown = clean_display_name(raw, user.username)
    try:
        return await ctx.db.update_user(user.id, display_name=shown)
    except RecordNotFound:
        raise NotFound("No such user.") from None


async def admin_revoke_sessions(ctx: Context, admin: User, user_id: int, *, ip: str) -> int:
    """End every session of a user."""
    target = await ctx.db.get_user(user_id)
    if target is None:
        raise NotFound("No such user.")
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
