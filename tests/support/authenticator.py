"""A software WebAuthn authenticator for tests: EC P-256 keys, attestation "none".

It builds what a browser and authenticator send, byte for byte: clientDataJSON,
authenticatorData (rpIdHash, flags, sign count, attested credential data with a COSE key)
and, for sign-in, an ECDSA signature over authenticatorData || SHA-256(clientDataJSON); the
result is in the JSON form of `PublicKeyCredential.toJSON()`. Keyword arguments let a test
break one thing at a time (origin, RP ID, UV flag, counter, user handle).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40
AAGUID = b"\x00" * 16


def b64url(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn's JSON forms use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    """One resident credential the authenticator holds."""

    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    @property
    def id_text(self) -> str:
        return b64url(self.id)


def cose_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public key as a COSE EC2 key (ES256)."""
    numbers = key.public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y})


def client_data(kind: str, challenge: str, origin: str) -> bytes:
    return json.dumps(
        {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    ).encode()


def auth_data(rp_id: str, flags: int, count: int, attested: bytes = b"") -> bytes:
    return (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags])
        + struct.pack(">I", count)
        + attested
    )


class SoftAuthenticator:
    """A platform authenticator with resident keys and user verification, for one origin."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.credentials: dict[bytes, Credential] = {}

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        uv: bool = True,
        challenge: str | None = None,
        reuse: Credential | None = None,
    ) -> tuple[dict[str, Any], Credential]:
        """Answer creation options: the credential JSON, and the new resident credential
        (`reuse`: present an existing credential's id and key again, as a cloned key would)."""
        rp = rp_id or options["rp"]["id"]
        cred = Credential(
            id=reuse.id if reuse else os.urandom(32),
            key=reuse.key if reuse else ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp,
            user_handle=unb64url(options["user"]["id"]),
        )
        self.credentials[cred.id] = cred
        attested = AAGUID + struct.pack(">H", len(cred.id)) + cred.id + cose_key(cred.key)
        data = auth_data(rp, UP | (UV if uv else 0) | AT, 0, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": data})
        cdj = client_data(
            "webauthn.create", challenge or options["challenge"], origin or self.origin
        )
        return {
            "id": cred.id_text,
            "rawId": cred.id_text,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(cdj),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }, cred

    def get(
        self,
        options: dict[str, Any],
        cred: Credential,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        uv: bool = True,
        count: int | None = None,
        user_handle: bytes | None = None,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """An assertion by `cred` for request options (its counter goes up by one)."""
        if count is None:
            cred.sign_count += 1
            count = cred.sign_count
        data = auth_data(rp_id or options.get("rpId") or cred.rp_id, UP | (UV if uv else 0), count)
        cdj = client_data("webauthn.get", challenge or options["challenge"], origin or self.origin)
        signature = cred.key.sign(data + hashlib.sha256(cdj).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": cred.id_text,
            "rawId": cred.id_text,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(cdj),
                "authenticatorData": b64url(data),
                "signature": b64url(signature),
                "userHandle": b64url(user_handle if user_handle is not None else cred.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
