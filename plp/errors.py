"""`ApiError`: an HTTP error with a code, a human message and per-field problems."""

from __future__ import annotations

from tornado.web import HTTPError


class ApiError(HTTPError):
    """Raised by services and handlers; written as JSON for the API and as a page otherwise."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.code}: {self.message}"


def bad_request(message: str, fields: dict[str, str] | None = None) -> ApiError:
    """A 400 `bad_request`."""
    return ApiError(400, "bad_request", message, fields=fields)
