"""Reset codes (SPEC §13): a trusted adult issues a one-time code, the pupil sets a new password.

A code is 12 characters from the join-code alphabet (30 symbols: about 58.9 bits from
`secrets`), shown once as `XXXX-XXXX-XXXX`. Only a keyed hash of it is stored. A fast keyed
hash (HMAC-SHA256 under the session secret) is right here where a password needs bcrypt:
the code is random, not chosen by a person, lives `reset-code-ttl` seconds, is used once and
dies after five wrong tries, so online guessing gets nowhere and a leaked table alone gives
nothing to guess offline without the secret. (Rotating the secret voids live codes: they are
short-lived, the adult issues another.) The user id is in the hashed text, so a code is
bound to its account.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING

from ..errors import AccountDisabled, Forbidden, InvalidCode, InvalidInput, NotFound, RateLimited
from ..sessions.base import END_PASSWORD, METHOD_RESET, Session
from ..storage.base import NotFound as RecordNotFound
from ..storage.base import User, iso
from . import recent
from .accounts import USERNAME_RE, normalize_username
from .passwords import password_problem
from .service import THROTTLE_NAME_MAX, start_session

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no look-alikes (SPEC §12's join codes)
CODE_LENGTH = 12
GROUP = 4
MAX_TRIES = 5
# What a person may type: the code with hyphens and spaces, with room for stray ones.
TYPED_MAX = 64
INVALID_CODE = "That reset code does not work for this username. Ask for a new code."
_IGNORED = str.maketrans("", "", "- \t")


def new_code() -> str:
    """A fresh code, ungrouped: CODE_LENGTH symbols of ALPHABET from `secrets`."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def grouped(code: str) -> str:
    """`ABCDEFGHJKMN` → `ABCD-EFGH-JKMN`, the way a code is shown."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def normalize_code(typed: str) -> str:
    """The code as typed, without hyphens and spaces, upper-cased."""
    return typed.translate(_IGNORED).upper()


def code_hash(secret: str, user_id: int, code: str) -> str:
    """The stored form of a (normalized) code for a user: HMAC-SHA256, hex."""
    message = f"plp-reset-code:{user_id}:{code}".encode("utf-8", "surrogatepass")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _moment(ctx: Context) -> _dt.datetime:
    # The context's clock, the one the session store stamps sessions with: the cut-off
    # written by a reset compares with those stamps.
    return _dt.datetime.fromtimestamp(ctx.clock(), _dt.UTC)


async def may_manage(ctx: Context, issuer: User, target_id: int) -> User:
    """The target if `issuer` may make it a code; 403 for themselves, else 404 for the rest.

    Admins manage everyone; teachers the students of classes they teach; nobody themselves.
    A user the issuer may not manage answers like one that does not exist.
    """
    if target_id == issuer.id:
        raise Forbidden("You cannot make a reset code for yourself; change your password instead.")
    if issuer.role == "teacher":
        allowed = await ctx.db.teaches_student(issuer.id, target_id)
    else:
        allowed = issuer.role == "admin"
    target = await ctx.db.get_user(target_id) if allowed else None
    if target is None:
        raise NotFound("No such user.")
    return target


async def issue_code(
    ctx: Context, issuer: User, target_id: int, *, ip: str, session: Session | None
) -> tuple[str, str]:
    """Make a user a new code, voiding any earlier one; (the grouped code, its expiry ISO).

    Needs a recent sign-in of the issuer's `session` (SPEC §14), asked only once the issuer
    may manage the user, so the answer for others' users stays the plain 404.
    """
    target = await may_manage(ctx, issuer, target_id)
    recent.ensure_recent(ctx, session)
    code = new_code()
    expires = _moment(ctx) + _dt.timedelta(seconds=ctx.settings.reset_code_ttl)
    try:
        await ctx.db.put_reset_code(
            target.id, code_hash(ctx.settings.session_secret, target.id, code), expires, issuer.id
        )
    except RecordNotFound:
        raise NotFound("No such user.") from None
    await ctx.audit.record(
        "reset_code_issued",
        user_id=target.id,
        username=target.username,
        ip=ip,
        by=issuer.username,
        expiresAt=iso(expires),
    )
    return grouped(code), iso(expires)


def _check_input(username: object, code: object, new_password: object) -> tuple[str, str, str]:
    """(username, typed code, new password) as strings, or a 400 naming each bad field."""
    problems: dict[str, str] = {}
    for name, value in (("username", username), ("code", code)):
        if value is None or value == "":
            problems[name] = "This field is required."
        elif not isinstance(value, str):
            problems[name] = "Must be a string."
        elif len(value) > TYPED_MAX:
            problems[name] = f"At most {TYPED_MAX} characters."
    if new_password is None:
        problems["newPassword"] = "This field is required."
    if problems:
        raise InvalidInput("Please correct the highlighted fields.", problems)
    return username, code, new_password  # type: ignore[return-value]


async def reset_password(
    ctx: Context,
    *,
    username: object,
    code: object,
    new_password: object,
    ip: str,
    user_agent: str,
    previous: Session | None,
) -> tuple[User, str]:
    """Set a new password with a reset code; (the user, the new session's token).

    Unknown user, wrong, expired, used or voided code: the same InvalidCode, counted against
    the address like a failed login. The account's own back-off does not stop a reset (a
    pupil locked out by wrong passwords is the case this is for); success clears it.
    """
    name, typed, password = _check_input(username, code, new_password)
    name = normalize_username(name)[:THROTTLE_NAME_MAX]
    wait = await ctx.throttle.address_wait(ip)
    if wait:
        await ctx.audit.record(
            "login_throttled", username=name, ip=ip, limit="address", during="reset"
        )
        raise RateLimited("Too many failed attempts from here; wait a little and try again.", wait)
    problem = password_problem(password, name)
    if problem:
        raise InvalidInput(problem, {"newPassword": problem})
    found = await ctx.db.get_credentials(name) if USERNAME_RE.fullmatch(name) else None
    user = found[0] if found else None
    # Unknown users take the same steps (a read and a hash) as known ones.
    stored = await ctx.db.get_reset_code(user.id if user else 0)
    given = code_hash(ctx.settings.session_secret, user.id if user else 0, normalize_code(typed))
    now = _moment(ctx)
    live = (
        stored is not None
        and stored.expires_at > now
        and stored.tries < MAX_TRIES
        and hmac.compare_digest(stored.code_hash, given)
    )
    if user is None or stored is None or not live:
        await _refuse(ctx, user, name, ip, stored.code_hash if stored else None, now)
    assert user is not None and stored is not None
    if user.disabled:
        raise AccountDisabled(
            "This account has been disabled; the code still works once an admin enables it."
        )
    secret = await ctx.hasher.hash(password)
    if not await ctx.db.use_reset_code(
        user.id, given, now=now, max_tries=MAX_TRIES, password_hash=secret
    ):
        raise InvalidCode(INVALID_CODE)  # another request used it a moment ago
    ended = await ctx.store.end_all_for_user(user.id, END_PASSWORD)
    await ctx.throttle.login_succeeded(user.username)
    token = await start_session(
        ctx, user, ip=ip, user_agent=user_agent, previous=previous, method=METHOD_RESET
    )
    await ctx.audit.record(
        "password_reset",
        user_id=user.id,
        username=user.username,
        ip=ip,
        by="code",
        issuedBy=stored.issued_by,
        sessions=ended,
    )
    return user, token


async def _refuse(
    ctx: Context, user: User | None, name: str, ip: str, stored: str | None, now: _dt.datetime
) -> None:
    """Count a failed reset (a wrong try on the user's code, a failure of the address) and
    raise the one InvalidCode answer."""
    # Always the same write, matching no row for an unknown user or one without a code, so
    # those answers are not the faster ones.
    tries = await ctx.db.miss_reset_code(user.id if user else 0, stored or "", MAX_TRIES)
    await ctx.throttle.address_failed(ip)
    await ctx.audit.record(
        "login_failed",
        user_id=user.id if user else None,
        username=name,
        ip=ip,
        during="reset",
        known=user is not None,
        voided=tries >= MAX_TRIES,
    )
    raise InvalidCode(INVALID_CODE)
