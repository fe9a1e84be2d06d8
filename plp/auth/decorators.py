"""`authenticated` and `require_role`: guards for handler methods, API- and page-aware.

Not signed in: the handler's `refuse_anonymous` answers (every ApiHandler: 401
`not_authenticated`; pages: a redirect to `/login?next=<path>` for GET, 401 otherwise).
Wrong role: 403 `forbidden` (JSON for the API, a page otherwise). The role is read from the
user record loaded for this request, so an admin's change applies at once.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..handlers.base import BaseHandler
from ..handlers.errors import ApiError

F = TypeVar("F", bound=Callable[..., Awaitable[Any] | Any])


def authenticated(method: F) -> F:
    """Only signed-in users reach the method."""

    @functools.wraps(method)
    async def wrapper(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
        if self.current_user is None:
            self.refuse_anonymous()
            return None
        result = method(self, *args, **kwargs)
        if result is not None and hasattr(result, "__await__"):
            result = await result
        return result

    return wrapper  # type: ignore[return-value]


def has_role(user: Any, roles: tuple[str, ...]) -> bool:
    """The one predicate behind require_role."""
    return user is not None and not user.disabled and user.role in roles


def require_role(*roles: str) -> Callable[[F], F]:
    """Only signed-in users with one of `roles` reach the method."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        async def wrapper(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
            if self.current_user is None:
                self.refuse_anonymous()
                return None
            if not has_role(self.current_user, roles):
                raise ApiError(403, "forbidden", "Your account may not do this.")
            result = method(self, *args, **kwargs)
            if result is not None and hasattr(result, "__await__"):
                result = await result
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
