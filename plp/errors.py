"""Domain errors: what a service refuses and why, in words a person can read.

The services (plp/auth/) raise these and know nothing of HTTP; plp/handlers/base.py maps each
class to a status and an error code in one table (`ERRORS`), and the command line prints the
message and fields of an `InvalidInput`. Errors of the storage and session layers live in
their own modules (`UsernameTaken`, `StorageUnavailable`, ...) and are in the same table.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal with a human message and, for input, the problem with each field."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidInput(DomainError):
    """The values given are refused; `fields` names each bad one."""


class InvalidCredentials(DomainError):
    """The username and password do not match an account (the same for an unknown name)."""


class AccountDisabled(DomainError):
    """The credentials are right, but an admin has disabled the account."""


class NotFound(DomainError):
    """The record the request names does not exist (or is not the caller's to see)."""


class Forbidden(DomainError):
    """The caller is signed in but may not do this to this record."""


class Conflict(DomainError):
    """The change clashes with what is stored (a taken name, an admin demoting themself)."""


class RateLimited(DomainError):
    """Over an abuse limit; `retry_after` is how many seconds until a retry may succeed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReauthRequired(DomainError):
    """A sensitive action needs a sign-in within `reauth-window` (SPEC §14); 401."""


class InvalidCode(InvalidInput):
    """A one-time code that does not open this account; 400 `invalid_code`. For reset codes
    (SPEC §13) an unknown user and a wrong, expired, used or voided code all look the same;
    for authenticator and recovery codes (§14) `fields` names the field."""


class SignInExpired(DomainError):
    """A half-done sign-in (SPEC §14, `plp_mfa`) that is missing, expired, used or ended by
    too many wrong codes: the password must be given again; 401."""


class MfaEnrollmentRequired(DomainError):
    """The user's role is in `require-mfa` and they have no second factor yet; 403."""
