"""JSON endpoints for reset codes (SPEC §13): issuing one, and setting a password with one."""

from __future__ import annotations

from ..auth import reset
from ..auth.decorators import authenticated
from .api import parse_id
from .base import ApiHandler


class ResetCodeHandler(ApiHandler):
    """POST /api/users/{id}/reset-code: a new one-time code for a user the caller manages."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        code, expires = await reset.issue_code(
            self.ctx, self.user, parse_id(raw_id), ip=self.ip, session=self.session
        )
        self.write_json({"code": code, "expiresAt": expires}, status=201)


class ResetHandler(ApiHandler):
    """POST /api/auth/reset: a new password with a reset code; signs the caller in."""

    async def post(self) -> None:
        data = self.get_json_body()
        user, token = await reset.reset_password(
            self.ctx,
            username=data.get("username"),
            code=data.get("code"),
            new_password=data.get("newPassword"),
            ip=self.ip,
            user_agent=self.user_agent,
            previous=self.session,
        )
        self.set_session_cookie(token)
        self.write_json({"user": user.to_json()})


routes = [
    (r"/api/users/([^/]+)/reset-code", ResetCodeHandler),
    (r"/api/auth/reset", ResetHandler),
]
