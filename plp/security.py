"""Security policy in one place: default headers, allowed origins, client address, safe `next`,
TLS context.

`write_security_headers` is the only code that writes the SPEC §10 headers: every handler
base, the static files and the metrics listener call it.
"""

from __future__ import annotations

import re
import ssl
from urllib.parse import quote, urlsplit

from tornado.httputil import HTTPHeaders, HTTPServerRequest

from .config import ConfigError, Settings

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

DEFAULT_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000; includeSubDomains"
DEFAULT_NEXT = "/dashboard"


def request_scheme(request: HTTPServerRequest, settings: Settings) -> str:
    """The scheme the client used: the proxy's X-Forwarded-Proto only with trust-proxy."""
    if settings.trust_proxy:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if forwarded in ("http", "https"):
            return forwarded
    return "https" if settings.tls else "http"


def write_security_headers(
    headers: HTTPHeaders,
    request: HTTPServerRequest | None = None,
    settings: Settings | None = None,
) -> None:
    """Put the SPEC §10 headers into a response's headers and drop `Server`.

    HSTS is added in production when the client came over HTTPS, which only the request and
    the settings can tell; without them (the loopback metrics listener) it is left out.
    """
    # Constants already valid as header values: straight into the header map, skipping
    # set_header's per-value check (this runs for every response).
    headers.update(DEFAULT_HEADERS)
    headers.pop("Server", None)
    if (
        request is not None
        and settings is not None
        and settings.production
        and request_scheme(request, settings) == "https"
    ):
        headers["Strict-Transport-Security"] = HSTS


def client_ip(request: HTTPServerRequest, settings: Settings) -> str:
    """The client address: the peer, or the proxy's X-Forwarded-For/X-Real-IP with trust-proxy.

    Without trust-proxy these headers are ignored, since anyone can send them. With it, the
    last X-Forwarded-For entry is used: the one our own proxy appended.
    """
    peer = request.remote_ip or ""
    if settings.trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            last = forwarded.split(",")[-1].strip()
            if last:
                return last[:64]
        real = request.headers.get("X-Real-IP", "").strip()
        if real:
            return real[:64]
    return peer


def own_origin(request: HTTPServerRequest, settings: Settings) -> str:
    """This server's origin as the client sees it (scheme and Host)."""
    return f"{request_scheme(request, settings)}://{request.host}".lower()


def origin_allowed(origin: str, request: HTTPServerRequest, settings: Settings) -> bool:
    """Same origin, or exactly one of `cors-origins`."""
    origin = origin.strip().lower()
    return origin == own_origin(request, settings) or origin in settings.cors_origins


_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")
_URL_SAFE = "/?#&=%:@!$'()*+,;~"


def safe_next(target: str | None) -> str:
    """`target` if it is a same-site relative path, else /dashboard (no open redirects)."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return DEFAULT_NEXT
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    if any(ch in target for ch in "\\\r\n\t\x00") or _SCHEME_RE.match(target):
        return DEFAULT_NEXT
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    # Location must be ASCII without controls: percent-encode the rest (existing %XX escapes
    # and URL punctuation stay as they are), so `/é` is not sent as mojibake and DEL is no 500.
    return quote(target, safe=_URL_SAFE)


def _readable(path: str, setting: str) -> None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(f"cannot read {setting} {path}: {exc.strerror or exc}") from None


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for tls-cert/tls-key, TLS 1.2 or newer; ConfigError (one line) if unusable."""
    if not settings.tls:
        return None
    _readable(settings.tls_cert, "--tls-cert")
    _readable(settings.tls_key, "--tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or exc.__class__.__name__
        raise ConfigError(
            f"--tls-cert {settings.tls_cert} and --tls-key {settings.tls_key} are not a valid "
            f"PEM certificate chain and matching private key ({reason})"
        ) from None
    return context
