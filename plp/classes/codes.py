"""Join codes: 8 characters from an alphabet without look-alikes, made with `secrets`.

Typed codes are compared case-insensitively, and spaces and hyphens a person adds while
copying one from a board ("ABCD-EFGH") are ignored.
"""

from __future__ import annotations

import secrets

ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
CODE_LENGTH = 8
# A typed code longer than this is not a code at all; it is refused before any lookup.
TYPED_MAX = 64
_IGNORED = str.maketrans("", "", " \t-")


def new_join_code() -> str:
    """A fresh random join code (about 39 bits)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(typed: str) -> str | None:
    """The code as stored (upper-cased, without spaces and hyphens), or None when it cannot
    be one (wrong length or characters)."""
    code = typed.translate(_IGNORED).upper()
    if len(code) != CODE_LENGTH or any(char not in ALPHABET for char in code):
        return None
    return code
