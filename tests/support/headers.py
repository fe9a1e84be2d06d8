"""Checks of the security headers every response carries (SPEC §10)."""

from __future__ import annotations

from typing import Any

ALLOWED = "https://app.example.org"  # the CORS origin tests allow; no other may be echoed


def csp_directives(response: Any) -> dict[str, list[str]]:
    """The Content-Security-Policy as {directive: [values]}."""
    policy = response.headers["Content-Security-Policy"]
    out = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_security_headers(response: Any, where: str = "") -> None:
    """The default headers of a development, plain-HTTP response (`where` labels failures)."""
    h = response.headers
    label = where or response.effective_url
    csp = csp_directives(response)
    assert csp["default-src"] == ["'self'"], label
    assert csp["frame-ancestors"] == ["'none'"], label
    assert csp["object-src"] == ["'none'"], label
    assert csp["base-uri"] == ["'self'"], label
    assert csp["form-action"] == ["'self'"], label
    scripts = csp.get("script-src", csp["default-src"])
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, label
    assert h["X-Content-Type-Options"] == "nosniff", label
    assert h["X-Frame-Options"] == "DENY", label
    assert h["Referrer-Policy"] == "strict-origin-when-cross-origin", label
    assert h["Cross-Origin-Opener-Policy"] == "same-origin", label
    permissions = h["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()"):
        assert feature in permissions, label
    assert "Server" not in h, (label, h.get("Server"))
    assert "Strict-Transport-Security" not in h, label  # development, plain HTTP
    assert h.get("Access-Control-Allow-Origin") in (None, ALLOWED), label
