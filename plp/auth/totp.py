"""Authenticator-app codes (TOTP, RFC 6238, SPEC §14): enrolment, codes, recovery codes.

- The secret is 160 random bits (base32, the RFC's HMAC-SHA1 key size), sealed at rest under
  a key derived from SESSION_SECRET (plp/auth/secretbox.py), shown to its user only while
  enrolling (as text and as a QR code drawn here with `segno`, no outside service).
- A code is accepted for the current 30-second step or one step either side (clock drift),
  and only for a step later than the last one accepted: the step is taken by one
  compare-and-set in the database, so the same code cannot sign in twice, even on two
  processes at once.
- Ten recovery codes of 16 characters from the join-code alphabet (about 78 bits each, from
  `secrets`) are shown once at confirmation and stored as SHA-256 hashes. A slow password
  hash is not needed: it guards low-entropy secrets against guessing from a stolen hash,
  and 78 random bits cannot be guessed; a plain hash keeps the check cheap and exact.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any

import pyotp

from ..errors import Conflict, InvalidCode, InvalidInput, NotFound
from ..sessions.base import Session
from ..storage.base import User
from . import recent
from .secretbox import SecretBox, Unsealable

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

ISSUER = "PersonalLearningPro"
SECRET_LENGTH = 32  # base32 characters: 160 bits
RECOVERY_COUNT = 10
RECOVERY_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
RECOVERY_LENGTH = 16
CODE_MAX = 64  # longer input is no code and is not looked at
WRONG_CODE = "That code is not right (or was already used)."


@functools.lru_cache(maxsize=4)
def _box(current: str, previous: tuple[str, ...]) -> SecretBox:
    return SecretBox(current, previous, purpose="totp secret")


def box(ctx: Context) -> SecretBox:
    """The sealing box for TOTP secrets, keyed by the current and previous session secrets."""
    return _box(ctx.settings.session_secret, ctx.settings.session_secret_previous)


def _owner(user_id: int) -> str:
    return f"totp:{user_id}"


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline SVG QR code, dark on white in either theme."""
    import segno  # only enrolment draws a code; kept out of the memory every process starts in

    svg = segno.make(uri, error="m").svg_inline(
        scale=4, dark="#000", light="#fff", title="QR code for your authenticator app"
    )
    return svg.replace("<svg ", '<svg role="img" ', 1)


async def start_enrolment(ctx: Context, user: User) -> dict[str, str]:
    """A new pending secret (replacing a pending one): `{secret, otpauthUri, qrSvg}`.

    Conflict (409) when an authenticator is already active: it must be turned off first,
    which needs a recent sign-in, so a stolen session cannot swap in its own.
    """
    secret = pyotp.random_base32(SECRET_LENGTH)
    sealed = box(ctx).seal(secret, owner=_owner(user.id))
    if not await ctx.db.start_totp(user.id, sealed):
        raise Conflict("An authenticator app is already on; turn it off first.")
    return enrolment(secret, user.username)


def enrolment(secret: str, username: str) -> dict[str, str]:
    """What the user's app needs: the secret as text, the otpauth URI and its QR code."""
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)
    return {"secret": secret, "otpauthUri": uri, "qrSvg": qr_svg(uri)}


def code_text(value: object, name: str) -> str:
    """A typed code as text without spaces or hyphens; InvalidInput when it is not a string."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("Enter the code.", {name: "Enter the code."})
    if len(value) > CODE_MAX:
        raise InvalidInput("That is not a code.", {name: "That is not a code."})
    return "".join(value.split()).replace("-", "").upper()


def _matching_step(secret: str, code: str, now: float) -> int | None:
    """The step within ±1 of now whose code is `code`, or None; every candidate compared in
    constant time so the answer's timing says nothing of near misses."""
    totp = pyotp.TOTP(secret)
    current = int(now // totp.interval)
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and found is None:
            found = step
    return found


async def _secret(ctx: Context, user_id: int, sealed: str) -> str | None:
    """The secret in clear, re-sealed under the current key when an older one opened it."""
    sealer = box(ctx)
    try:
        secret = sealer.open(sealed, owner=_owner(user_id))
    except Unsealable:
        log.warning("the TOTP secret of user %s no longer opens (secret rotated out?)", user_id)
        return None
    if sealer.needs_reseal(sealed):
        await ctx.db.reseal_totp(user_id, sealed, sealer.seal(secret, owner=_owner(user_id)))
    return secret


async def confirm_enrolment(ctx: Context, user: User, code: object, *, ip: str) -> list[str]:
    """Activate the pending secret with one valid code; the ten recovery codes, shown once."""
    text = code_text(code, "code")
    record = await ctx.db.get_totp(user.id)
    if record is None or record.active:
        raise Conflict("There is no authenticator app being set up; start again.")
    secret = await _secret(ctx, user.id, record.sealed_secret)
    step = _matching_step(secret, text, ctx.clock()) if secret else None
    if step is None:
        raise InvalidCode(WRONG_CODE, {"code": WRONG_CODE})
    codes = [new_recovery_code() for _ in range(RECOVERY_COUNT)]
    if not await ctx.db.activate_totp(user.id, step, [recovery_hash(c) for c in codes]):
        raise Conflict("There is no authenticator app being set up; start again.")
    await ctx.audit.record("totp_enabled", user_id=user.id, username=user.username, ip=ip)
    return codes


async def disable(ctx: Context, user: User, session: Session | None, *, ip: str) -> None:
    """Turn the authenticator off (pending or active); needs a recent sign-in."""
    recent.ensure_recent(ctx, session)
    if not await ctx.db.delete_totp(user.id):
        raise NotFound("No authenticator app is on.")
    await ctx.audit.record("totp_disabled", user_id=user.id, username=user.username, ip=ip)


async def is_active(ctx: Context, user_id: int) -> bool:
    """Whether the user has a confirmed authenticator app."""
    record = await ctx.db.get_totp(user_id)
    return record is not None and record.active


async def check_code(ctx: Context, user: User, code: str) -> bool:
    """Whether `code` (from code_text) is right for now and its step not yet used; a right
    code takes its step, so it never works again."""
    record = await ctx.db.get_totp(user.id)
    if record is None or not record.active:
        return False
    secret = await _secret(ctx, user.id, record.sealed_secret)
    step = _matching_step(secret, code, ctx.clock()) if secret else None
    return step is not None and await ctx.db.use_totp_step(user.id, step)


def new_recovery_code() -> str:
    """A fresh recovery code, grouped XXXX-XXXX-XXXX-XXXX for reading."""
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, RECOVERY_LENGTH, 4))


def recovery_hash(code: str) -> str:
    """SHA-256 of a recovery code as typed any way (case, spaces and hyphens ignored)."""
    return hashlib.sha256(code_text(code, "recoveryCode").encode()).hexdigest()


async def use_recovery_code(ctx: Context, user: User, code: str) -> bool:
    """Whether `code` is one of the user's unused recovery codes; it is used up if so."""
    if not await is_active(ctx, user.id):
        return False
    return await ctx.db.use_recovery_code(user.id, recovery_hash(code))


async def status(ctx: Context, user_id: int) -> dict[str, Any]:
    """What /account shows: `state` "off" | "pending" | "on", the recovery codes left, and
    while pending `enrol` (secret, URI, QR code) so a reload shows the same QR code."""
    record = await ctx.db.get_totp(user_id)
    if record is None:
        return {"state": "off", "recovery_left": 0, "enrol": None}
    if not record.active:
        user = await ctx.db.get_user(user_id)
        secret = await _secret(ctx, user_id, record.sealed_secret)
        enrol = enrolment(secret, user.username) if secret and user else None
        return {"state": "pending", "recovery_left": 0, "enrol": enrol}
    left = await ctx.db.count_recovery_codes(user_id)
    return {"state": "on", "recovery_left": left, "enrol": None}
