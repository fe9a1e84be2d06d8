"""How failures become HTTP answers: `ApiError`, and the one table from domain errors.

Handlers raise `ApiError` (an HTTPError with a code, a message and per-field problems) for
answers of their own. Services raise domain errors (plp/errors.py) and the storage and
session layers raise theirs; `ERRORS` gives each its status and code, and the handler base
(plp/handlers/base.py, `_handle_request_exception`) answers with `http_error(exc)`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from tornado.web import HTTPError

from ..errors import (
    AccountDisabled,
    Conflict,
    Forbidden,
    InvalidCode,
    InvalidCredentials,
    InvalidInput,
    MfaEnrollmentRequired,
    NotFound,
    RateLimited,
    ReauthRequired,
    SignInExpired,
)
from ..sessions.base import SessionStoreUnavailable
from ..storage import base as storage

# A shared backend being down is an outage, not a bug: a clear 503 the client may retry.
RETRY_BACKEND = 5  # seconds, for Retry-After
DATABASE_DOWN = "The database is unavailable; try again shortly."
SESSIONS_DOWN = "Sessions are unavailable; try again shortly."
UNSTORABLE = "The request contains characters that cannot be stored."


class ApiError(HTTPError):
    """An HTTP answer with a code, a human message and per-field problems.

    Written as JSON by ApiHandler and as a page otherwise; handlers raise it directly, and
    domain errors become one through `ERRORS`.
    """

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


class Answer(NamedTuple):
    """How an error is answered; `message` None means the error's own message."""

    status: int
    code: str
    message: str | None = None
    retry_after: int | None = None


# The one table from domain and backend errors to HTTP (SPEC §6), looked up along the MRO.
# A storage or session error's own message names its cause for the log, not for the client.
ERRORS: dict[type[Exception], Answer] = {
    InvalidInput: Answer(400, "bad_request"),
    InvalidCredentials: Answer(401, "invalid_credentials"),
    ReauthRequired: Answer(401, "reauth_required"),
    InvalidCode: Answer(400, "invalid_code"),
    SignInExpired: Answer(401, "not_authenticated"),
    MfaEnrollmentRequired: Answer(403, "mfa_enrollment_required"),
    AccountDisabled: Answer(403, "account_disabled"),
    Forbidden: Answer(403, "forbidden"),
    NotFound: Answer(404, "not_found"),
    Conflict: Answer(409, "conflict"),
    RateLimited: Answer(429, "rate_limited"),
    storage.UnstorableValue: Answer(400, "bad_request", UNSTORABLE),
    storage.NotFound: Answer(404, "not_found", "No such record."),
    storage.UsernameTaken: Answer(409, "conflict", "That username is taken."),
    storage.ChannelNameTaken: Answer(409, "conflict", "A channel with that name exists."),
    storage.StorageUnavailable: Answer(503, "unavailable", DATABASE_DOWN, RETRY_BACKEND),
    SessionStoreUnavailable: Answer(503, "unavailable", SESSIONS_DOWN, RETRY_BACKEND),
}


def answer_for(exc: BaseException) -> Answer | None:
    """The table's row for an error (or its nearest base class), or None if not mapped."""
    for cls in type(exc).__mro__:
        answer = ERRORS.get(cls)
        if answer is not None:
            return answer
    return None


def http_error(exc: BaseException) -> ApiError:
    """The ApiError answering a domain or backend error per `ERRORS` (which must map it)."""
    answer = answer_for(exc)
    assert answer is not None, f"{type(exc).__name__} is not in ERRORS"
    message = answer.message or getattr(exc, "message", "") or str(exc)
    retry_after = answer.retry_after
    if isinstance(exc, RateLimited):
        retry_after = max(1, math.ceil(exc.retry_after))
    return ApiError(
        answer.status,
        answer.code,
        message,
        fields=getattr(exc, "fields", None),
        headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
    )


# The code of a plain HTTPError (one raised without a code, e.g. by Tornado) by status.
ERROR_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}
