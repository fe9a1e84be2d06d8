"""Signing in with a passkey, and renewing a recent sign-in with one (SPEC §14).

Sign-in uses discoverable credentials: the options name no credential, the authenticator
offers the user's passkeys for this RP ID, and the assertion names its credential and the
user handle. Both must match one stored passkey, and the signature, challenge, origin, RP ID,
user verification and sign count must check out. A passkey sign-in is complete in itself.

Every refusal after the shape check is one failed sign-in from the client's address, under
the key `~passkey <address>` of the login throttle (SPEC §9): so the per-address limit counts
it, and consecutive passkey failures from one address back off like an account. It never
counts against the passkey's owner, since anyone may hold a credential id. A reauth failure
counts against the signed-in account, like a wrong reauth password.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from webauthn import generate_authentication_options, verify_authentication_response
from webauthn.helpers import base64url_to_bytes, parse_authentication_credential_json
from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

from ..errors import AccountDisabled, InvalidCredentials, InvalidInput, RateLimited
from ..pending import new_id
from ..sessions.base import Session
from ..storage.base import User
from ..storage.passkeys import Passkey
from . import recent, service
from .webauthn_rp import (
    CHALLENGE_TTL,
    CREDENTIAL_ERRORS,
    KIND_REAUTH,
    KIND_SIGN_IN,
    TIMEOUT_MS,
    RelyingParty,
    challenge_bytes,
    challenge_text,
    options_json,
    require_credential,
    take_ceremony,
)

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

NOT_ACCEPTED = "That passkey could not sign you in."
NOT_CONFIRMED = "That passkey did not confirm it is you."
THROTTLED = "Too many failed sign-in attempts; wait a little and try again."
CHALLENGES_THROTTLED = "Too many passkey sign-ins from this address; wait a minute and try again."


def throttle_key(ip: str) -> str:
    """The login throttle's name for passkey sign-ins from an address (never a username:
    `~` is not allowed in one)."""
    return f"~passkey {ip}"


class Refused(Exception):
    """An assertion that does not check out; `reason` is for the audit trail only."""

    def __init__(self, reason: str, error: Exception, user: User | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.user = user


async def sign_in_options(ctx: Context, rp: RelyingParty, *, ip: str) -> tuple[str, dict[str, Any]]:
    """Request options with no `allowCredentials`; the attempt id for the browser's cookie.

    At most `challenge_limit` a minute per address (plp/throttle.py): 429 beyond.
    """
    wait = await ctx.throttle.challenge_wait(ip)
    if wait:
        await ctx.audit.record("login_throttled", ip=ip, limit="challenges", method="passkey")
        raise RateLimited(CHALLENGES_THROTTLED, wait)
    await ctx.throttle.challenge_made(ip)
    options = generate_authentication_options(
        rp_id=rp.rp_id, timeout=TIMEOUT_MS, user_verification=UserVerificationRequirement.REQUIRED
    )
    attempt = new_id()
    state = {"challenge": challenge_text(options.challenge)}
    await ctx.pending.put(KIND_SIGN_IN, attempt, state, CHALLENGE_TTL)
    return attempt, options_json(options)


async def sign_in(
    ctx: Context, rp: RelyingParty, *, attempt: str | None, credential: object, ip: str
) -> User:
    """The user a passkey assertion proves, or a domain error (400, 401, 403, 429).

    The caller starts the session (method `passkey`) and audits the success.
    """
    data = require_credential(credential)
    key = throttle_key(ip)
    wait, which = await ctx.throttle.login_wait(key, ip)
    if wait:
        await ctx.audit.record("login_throttled", ip=ip, limit=which, method="passkey")
        raise RateLimited(THROTTLED, wait)
    try:
        state = await _taken(ctx, KIND_SIGN_IN, attempt)
        passkey, user = await check_assertion(ctx, rp, data, challenge_bytes(state))
        if user.disabled:
            raise Refused("disabled", AccountDisabled("This account has been disabled."), user)
    except Refused as refused:
        await ctx.throttle.login_failed(key, ip)
        who = refused.user
        await ctx.audit.record(
            "login_failed",
            user_id=who.id if who else None,
            username=who.username if who else None,
            ip=ip,
            method="passkey",
            reason=refused.reason,
        )
        raise refused.error from None
    await ctx.throttle.login_succeeded(key)
    return user


async def _taken(ctx: Context, kind: str, key: str | None) -> dict[str, Any]:
    try:
        return await take_ceremony(ctx, kind, key)
    except InvalidInput as exc:
        raise Refused("no_challenge", exc) from None


def _parse(data: dict[str, Any]) -> Any:
    try:
        return parse_authentication_credential_json(data)
    except CREDENTIAL_ERRORS:
        problem = "Not a passkey assertion as PublicKeyCredential.toJSON() makes it."
        raise Refused("malformed", InvalidInput(problem, {"credential": problem})) from None


async def check_assertion(
    ctx: Context,
    rp: RelyingParty,
    data: dict[str, Any],
    challenge: bytes,
    *,
    owner: int | None = None,
) -> tuple[Passkey, User]:
    """The stored passkey and its user an assertion proves, its use recorded; or Refused.
    With `owner`, only that user's passkeys count (reauth)."""
    parsed = _parse(data)
    found = await ctx.db.find_passkey(data["rawId"])
    if found is None:
        raise Refused("unknown_credential", InvalidCredentials(NOT_ACCEPTED))
    passkey, handle = found
    if owner is not None and passkey.user_id != owner:
        raise Refused("other_user", InvalidCredentials(NOT_ACCEPTED))
    user = await ctx.db.get_user(passkey.user_id)
    if user is None:
        raise Refused("unknown_credential", InvalidCredentials(NOT_ACCEPTED))
    returned = parsed.response.user_handle
    # A discoverable credential must return its user handle, and it must be its owner's.
    if returned is None or returned != base64url_to_bytes(handle):
        raise Refused("user_handle_mismatch", InvalidCredentials(NOT_ACCEPTED), user)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            credential_public_key=base64url_to_bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except CREDENTIAL_ERRORS as exc:
        log.info("passkey assertion refused for user %s (%s)", user.id, type(exc).__name__)
        raise Refused("not_verified", InvalidCredentials(NOT_ACCEPTED), user) from None
    # Compare-and-set: of two uses racing with one counter value, only one is accepted.
    if not await ctx.db.record_passkey_use(passkey.id, passkey.sign_count, verified.new_sign_count):
        raise Refused("sign_count", InvalidCredentials(NOT_ACCEPTED), user)
    return passkey, user


async def reauth_options(
    ctx: Context, rp: RelyingParty, user: User, session: Session
) -> dict[str, Any]:
    """Request options for the signed-in user's own passkeys; kept for this session."""
    passkeys = await ctx.db.list_passkeys(user.id)
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        timeout=TIMEOUT_MS,
        user_verification=UserVerificationRequirement.REQUIRED,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id)) for p in passkeys
        ],
    )
    state = {"challenge": challenge_text(options.challenge), "user": user.id}
    await ctx.pending.put(KIND_REAUTH, session.handle, state, CHALLENGE_TTL)
    return options_json(options)


async def reauth_with_passkey(
    ctx: Context, rp: RelyingParty, user: User, session: Session, *, credential: object, ip: str
) -> None:
    """`POST /api/auth/reauth {credential}`: one of the user's own passkeys, for the
    challenge this session was given, renews the sign-in time (same token).

    Throttled like a reauth password: failures count against the account and address.
    """
    data = require_credential(credential)
    await service.refuse_while_blocked(
        ctx,
        user,
        ip=ip,
        during="reauth",
        message="Too many failed attempts; wait a little and try again.",
    )
    try:
        state = await _taken(ctx, KIND_REAUTH, session.handle)
        if state.get("user") != user.id:
            raise Refused("no_challenge", InvalidInput("Start the passkey check again."))
        await check_assertion(ctx, rp, data, challenge_bytes(state), owner=user.id)
    except Refused as refused:
        await ctx.throttle.login_failed(user.username, ip)
        error = refused.error
        if isinstance(error, InvalidCredentials):
            # Like a wrong reauth password: 400 at the field, the session stays signed in.
            error = InvalidInput(NOT_CONFIRMED, {"credential": NOT_CONFIRMED})
        await ctx.audit.record(
            "reauth_failed",
            user_id=user.id,
            username=user.username,
            ip=ip,
            method="passkey",
            reason=refused.reason,
        )
        raise error from None
    await ctx.throttle.login_succeeded(user.username)
    await recent.renewed(ctx, user, session, ip=ip, method="passkey")
