"""What passkey registration and sign-in share: the relying party, challenges kept in
`ctx.pending`, and turning py_webauthn's many refusals into one domain error.

Challenges are random (py_webauthn makes 64 bytes with `secrets`), live `CHALLENGE_TTL`
seconds and are single use: `ctx.pending.take` reads and deletes them in one step, also
across processes with Redis. The browser never names a challenge: registration and reauth
find theirs by the session, a sign-in by the random id in its signed cookie.
"""

from __future__ import annotations

import binascii
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webauthn import options_to_json
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

CHALLENGE_TTL = 300.0  # seconds (SPEC §14: 5 minutes)
TIMEOUT_MS = 120_000  # the browser's own limit for the ceremony, a hint under the TTL
RP_NAME = "plp"

KIND_REGISTER = "passkey-register"
KIND_SIGN_IN = "passkey-sign-in"
KIND_REAUTH = "passkey-reauth"

# Everything py_webauthn (and cbor2, cryptography under it) raises for a malformed or
# forged credential: its own exceptions, and plain ones from decoding base64, CBOR and keys.
CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    WebAuthnException,
    ValueError,  # binascii.Error, cbor2's decode errors, UnicodeDecodeError, json errors
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    binascii.Error,
)

NO_CEREMONY = "This passkey request has expired or was already used; start again."


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who the credential must be for: the RP ID and the origin the browser is on."""

    rp_id: str
    origin: str


def options_json(options: Any) -> dict[str, Any]:
    """WebAuthn options in their JSON form (`publicKey` fields, binary as base64url)."""
    return json.loads(options_to_json(options))


def challenge_text(challenge: bytes) -> str:
    """A challenge as stored in the pending entry."""
    return bytes_to_base64url(challenge)


def challenge_bytes(state: dict[str, Any]) -> bytes:
    """The challenge bytes of a pending entry."""
    return base64url_to_bytes(state["challenge"])


def require_credential(credential: object) -> dict[str, Any]:
    """The `credential` field: an object as `PublicKeyCredential.toJSON()` makes it."""
    if credential is None:
        raise InvalidInput(
            "A passkey credential is required.", {"credential": "This field is required."}
        )
    if not isinstance(credential, dict):
        raise InvalidInput(
            "The credential must be an object, as PublicKeyCredential.toJSON() makes it.",
            {"credential": "Must be an object."},
        )
    return credential


async def take_ceremony(ctx: Context, kind: str, key: str | None) -> dict[str, Any]:
    """The pending challenge, removed; InvalidInput when missing, used or expired."""
    state = await ctx.pending.take(kind, key) if key else None
    if state is None:
        raise InvalidInput(NO_CEREMONY, {"credential": NO_CEREMONY})
    return state


def transports_of(credential: dict[str, Any]) -> tuple[str, ...]:
    """The transports a registration response lists, known names only (a hint for later)."""
    response = credential.get("response")
    raw = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(raw, list):
        return ()
    known = ("ble", "cable", "hybrid", "internal", "nfc", "smart-card", "usb")
    return tuple(t for t in dict.fromkeys(raw) if isinstance(t, str) and t in known)
