"""Passkeys a signed-in user manages (SPEC §14): registration options, adding, listing,
renaming and removing. Signing in and reauth with a passkey are in passkey_login.py.

Registration asks for a discoverable credential (so the passkey can later sign in without a
username) with user verification required and attestation "none"; the user handle is a
random per-user id, never the username. The challenge is bound to the session: a new
options request replaces the previous one, and the answer must come back on that session.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from webauthn import generate_registration_options, verify_registration_response
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..errors import Conflict, InvalidInput, NotFound
from ..sessions.base import Session
from ..storage.base import User
from ..storage.passkeys import Passkey, PasskeyTaken
from . import recent, totp
from .webauthn_rp import (
    CHALLENGE_TTL,
    CREDENTIAL_ERRORS,
    KIND_REGISTER,
    RP_NAME,
    TIMEOUT_MS,
    RelyingParty,
    challenge_bytes,
    challenge_text,
    options_json,
    require_credential,
    take_ceremony,
    transports_of,
)

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

DEFAULT_NAME = "Passkey"
NAME_MAX = 64
HANDLE_BYTES = 32
LAST_FACTOR = (
    "This is your last passkey and your role must keep a second factor: add another passkey "
    "or an authenticator app first."
)


def clean_name(raw: object, *, required: bool) -> str:
    """A passkey name: 1–64 printable characters, trimmed; absent means "Passkey" when
    not required."""
    if raw is None or (isinstance(raw, str) and not raw.strip() and not required):
        if required:
            raise InvalidInput("A name is required.", {"name": "This field is required."})
        return DEFAULT_NAME
    if not isinstance(raw, str):
        raise InvalidInput("The name must be a string.", {"name": "Must be a string."})
    name = raw.strip()
    if not name:
        raise InvalidInput("A name is required.", {"name": "Enter a name."})
    # Measured before trimming too, so what a client may send is exactly 1-64 characters.
    if len(raw) > NAME_MAX:
        problem = f"At most {NAME_MAX} characters."
        raise InvalidInput(f"The name is too long: {problem.lower()}", {"name": problem})
    if not name.isprintable():
        problem = "Only printable characters."
        raise InvalidInput("The name has characters that cannot be shown.", {"name": problem})
    return name


async def user_handle(ctx: Context, user: User) -> str:
    """The user's WebAuthn user handle (base64url), made once at random."""
    return await ctx.db.passkey_handle(
        user.id, bytes_to_base64url(secrets.token_bytes(HANDLE_BYTES))
    )


async def registration_options(
    ctx: Context, rp: RelyingParty, user: User, session: Session
) -> dict[str, Any]:
    """Creation options for a new passkey; the challenge is kept for this session."""
    handle = await user_handle(ctx, user)
    existing = await ctx.db.list_passkeys(user.id)
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=RP_NAME,
        user_name=user.username,
        user_id=base64url_to_bytes(handle),
        user_display_name=user.display_name,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(p) for p in existing],
    )
    state = {"challenge": challenge_text(options.challenge), "user": user.id}
    await ctx.pending.put(KIND_REGISTER, session.handle, state, CHALLENGE_TTL)
    return options_json(options)


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in passkey.transports if _is_transport(t)]
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id), transports=transports or None
    )


def _is_transport(name: str) -> bool:
    return name in AuthenticatorTransport._value2member_map_


async def add_passkey(
    ctx: Context,
    rp: RelyingParty,
    user: User,
    session: Session,
    *,
    credential: object,
    name: object,
    ip: str,
) -> Passkey:
    """Verify the browser's answer to this session's creation options and store the passkey.

    The input is checked before the challenge is taken, so a typo in the name does not
    spend it; any refusal after that does (start again with new options).
    """
    passkey_name = clean_name(name, required=False)
    data = require_credential(credential)
    state = await take_ceremony(ctx, KIND_REGISTER, session.handle)
    if state.get("user") != user.id:
        raise InvalidInput("This passkey request was made for another account; start again.")
    try:
        verified = verify_registration_response(
            credential=data,
            expected_challenge=challenge_bytes(state),
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except CREDENTIAL_ERRORS as exc:
        log.info("passkey registration refused for user %s (%s)", user.id, type(exc).__name__)
        raise InvalidInput(
            "The passkey could not be added: the browser's answer was not valid for this site.",
            {"credential": "Not a valid passkey for this site."},
        ) from None
    try:
        passkey = await ctx.db.add_passkey(
            user.id,
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            transports=transports_of(data),
            name=passkey_name,
        )
    except PasskeyTaken:
        raise Conflict("This passkey is already registered.") from None
    await ctx.audit.record(
        "passkey_added", user_id=user.id, username=user.username, ip=ip, passkey=passkey.id
    )
    return passkey


async def list_passkeys(ctx: Context, user: User) -> list[Passkey]:
    """The user's passkeys, oldest first."""
    return await ctx.db.list_passkeys(user.id)


async def rename_passkey(ctx: Context, user: User, passkey_id: int, name: object) -> Passkey:
    """Give one of the user's passkeys a new name; NotFound for anyone else's."""
    clean = clean_name(name, required=True)
    passkey = await ctx.db.rename_passkey(user.id, passkey_id, clean)
    if passkey is None:
        raise NotFound("No such passkey.")
    return passkey


async def _keeps_a_second_factor(ctx: Context, user: User) -> bool:
    """Whether the user may lose one passkey: their role needs no second factor
    (`require-mfa`), or another passkey (or TOTP) stays."""
    if user.role not in ctx.settings.require_mfa:
        return True
    return await ctx.db.count_passkeys(user.id) > 1 or await totp.is_active(ctx, user.id)


async def delete_passkey(
    ctx: Context, user: User, session: Session, passkey_id: int, *, ip: str
) -> None:
    """Remove one of the user's passkeys: recent sign-in, and never the last second factor
    of a `require-mfa` role. NotFound for anyone else's."""
    passkey = await ctx.db.get_passkey(user.id, passkey_id)
    if passkey is None:
        raise NotFound("No such passkey.")
    recent.ensure_recent(ctx, session)
    if not await _keeps_a_second_factor(ctx, user):
        raise Conflict(LAST_FACTOR)
    if not await ctx.db.delete_passkey(user.id, passkey_id):
        raise NotFound("No such passkey.")
    await ctx.audit.record(
        "passkey_removed", user_id=user.id, username=user.username, ip=ip, passkey=passkey_id
    )
