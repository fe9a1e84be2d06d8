"""Sealing secrets the server must read back (TOTP secrets) with keys derived from
SESSION_SECRET, so a copy of the database alone (a backup, a leaked dump) does not hold them.

A key per secret is derived with HKDF-SHA256 from each of SESSION_SECRET and the
SESSION_SECRET_PREVIOUS entries; a sealed value is `v1.<key id>.<base64 nonce+ciphertext>`
under AES-256-GCM, bound to its purpose and owner (the associated data), so a sealed value
copied to another user's row does not open. Opening tries the key it names first, then every
other; a value sealed under an older key opens while that key is still listed and is then
re-sealed under the current one by its caller (`needs_reseal`), so rotation works as for
cookies. A value whose key is gone no longer opens: that user's authenticator then fails
and they sign in with a recovery code (stored hashed, not sealed) and enrol again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os

log = logging.getLogger(__name__)

VERSION = "v1"
NONCE_BYTES = 12


class Unsealable(Exception):
    """No listed key opens this sealed value (its key was rotated out, or it was altered)."""


# cryptography (about 7 MiB) is imported by the first box made, not at start: only TOTP
# enrolment and TOTP sign-in seal or open anything.


def _derive(secret: str, purpose: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode("utf-8")
    )


def _key_id(key: bytes) -> str:
    # Names the key without revealing it: 8 hex digits of a hash of the derived key.
    return hashlib.sha256(key).hexdigest()[:8]


class SecretBox:
    """AES-GCM sealing under keys derived from the current and previous session secrets."""

    def __init__(self, current: str, previous: tuple[str, ...] = (), *, purpose: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        label = ("plp " + purpose).encode()
        keys = [_derive(secret, label) for secret in (current, *previous) if secret]
        self._keys = [(_key_id(key), AESGCM(key)) for key in keys]

    def seal(self, plain: str, *, owner: str) -> str:
        """`plain` sealed under the current key, bound to `owner`."""
        key_id, aead = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, plain.encode("utf-8"), owner.encode("utf-8"))
        return f"{VERSION}.{key_id}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, owner: str) -> str:
        """The plain text of a sealed value; Unsealable when no listed key opens it."""
        try:
            version, key_id, data = sealed.split(".", 2)
            raw = base64.urlsafe_b64decode(data)
        except ValueError:
            raise Unsealable("malformed sealed value") from None
        if version != VERSION or len(raw) <= NONCE_BYTES:
            raise Unsealable("unknown sealed value format")
        from cryptography.exceptions import InvalidTag

        # The named key first; the others too, in case two secrets share an id prefix.
        for _id, aead in sorted(self._keys, key=lambda k: k[0] != key_id):
            try:
                plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], owner.encode("utf-8"))
            except InvalidTag:
                continue
            return plain.decode("utf-8")
        raise Unsealable("no listed key opens this value")

    def needs_reseal(self, sealed: str) -> bool:
        """Whether a value that opened was sealed under an older key."""
        return sealed.split(".", 2)[1:2] != [self._keys[0][0]]
