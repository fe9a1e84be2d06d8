"""The `plp_mfa` cookie (SPEC §14): the id of a half-done sign-in, Tornado-signed, 5 minutes.

It carries only the random id of the pending entry (plp/auth/mfa.py), never the user, the
password or any code; the entry itself is single use, so a copied or replayed cookie finds
nothing once the sign-in is finished, ended or expired.
"""

from __future__ import annotations

from tornado.web import RequestHandler

from ..auth import mfa

COOKIE = "plp_mfa"


def _production(handler: RequestHandler) -> bool:
    return bool(handler.application.ctx.settings.production)  # type: ignore[attr-defined]


def set_mfa_cookie(handler: RequestHandler, pending: str) -> None:
    """Hand the browser the half-done sign-in's id."""
    handler.set_signed_cookie(
        COOKIE,
        pending,
        expires_days=None,
        max_age=int(mfa.TTL),
        path="/",
        httponly=True,
        secure=_production(handler),
        samesite="Lax",
    )


def read_mfa_cookie(handler: RequestHandler) -> str | None:
    """The pending id from a cookie signed by us within the last 5 minutes, else None."""
    raw = handler.get_signed_cookie(COOKIE, max_age_days=mfa.TTL / 86400, min_version=2)
    return raw.decode() if raw else None


def clear_mfa_cookie(handler: RequestHandler) -> None:
    """Drop the cookie (the sign-in is finished or over)."""
    handler.clear_cookie(
        COOKIE, path="/", httponly=True, secure=_production(handler), samesite="Lax"
    )
