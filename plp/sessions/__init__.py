"""Session stores behind the `SessionStore` interface (plp/context.py picks one from Settings)."""

from __future__ import annotations

from .base import Session, SessionStore, SessionStoreUnavailable, hash_token

__all__ = ["Session", "SessionStore", "SessionStoreUnavailable", "hash_token"]
