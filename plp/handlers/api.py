"""JSON endpoints for the signed-in user, their sessions, administration and health."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from ..auth import accounts, recent, service
from ..auth.decorators import authenticated, require_role
from ..sessions.base import Session
from ..storage.base import User, iso_from_epoch
from .base import ApiHandler, check_body_size
from .errors import ApiError

AUDIT_LIMIT_MAX = 500
# Generated from docs/openapi.yaml by scripts/openapi-json; package data, so the one-file
# binary carries it too.
OPENAPI_RESOURCE = "data/openapi.json"


def session_json(session: Session, current: Session | None, idle: float, max_age: float) -> dict:
    """A session as its owner sees it: a handle, never the token or its hash."""
    return {
        "id": session.handle,
        "createdAt": iso_from_epoch(session.created_at),
        "lastSeenAt": iso_from_epoch(session.last_seen),
        "expiresAt": iso_from_epoch(session.deadline(idle, max_age)),
        "ip": session.ip,
        "userAgent": session.user_agent,
        "method": session.method,
        "current": current is not None and session.key == current.key,
    }


def is_ascii_number(raw: str) -> bool:
    """Only 0-9: str.isdigit() also accepts '²' (int() then raises) and '١' (int() reads 1)."""
    return raw.isascii() and raw.isdigit()


def parse_id(raw: str) -> int:
    """A path id as int; 404 for anything that cannot name a record."""
    if not is_ascii_number(raw) or len(raw) > 18:
        raise ApiError(404, "not_found", "No such record.")
    return int(raw)


def _field_error(name: str, problem: str) -> ApiError:
    return ApiError(400, "bad_request", f"Field {name}: {problem}", fields={name: problem})


def field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    """data[name] checked for type; a missing or mistyped field is a 400 naming it."""
    if name not in data or data[name] is None:
        if required:
            raise _field_error(name, "This field is required.")
        return None
    value = data[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _field_error(name, "Must be an integer.")
    if kind is bool and not isinstance(value, bool):
        raise _field_error(name, "Must be true or false.")
    if kind is str and not isinstance(value, str):
        raise _field_error(name, "Must be a string.")
    return value


@lru_cache(maxsize=4096)
def me_body(user: User) -> str:
    """The body of GET /api/users/me for one version of a user record.

    Records are immutable and compare by value, so a changed name, role or state is another
    key: the ISO date and the JSON are made once per version, not on every request.
    """
    return json.dumps({"user": user.to_json()}, separators=(",", ":"))


class MeHandler(ApiHandler):
    """GET /api/users/me."""

    @authenticated
    def get(self) -> None:
        assert self.user is not None
        self.finish(me_body(self.user))


class PasswordHandler(ApiHandler):
    """POST /api/users/me/password: change password, end other sessions, new cookie."""

    @authenticated
    async def post(self) -> None:
        data = self.get_json_body()
        token = await service.change_password(
            self.ctx,
            self.user,
            self.session,
            current=data.get("currentPassword"),
            new=data.get("newPassword"),
            ip=self.ip,
            user_agent=self.user_agent,
        )
        self.set_session_cookie(token)
        self.write_json({"ok": True})


class SessionsHandler(ApiHandler):
    """GET /api/sessions: the user's own live sessions."""

    @authenticated
    async def get(self) -> None:
        store = self.ctx.store
        sessions = await store.list_for_user(self.user.id)
        self.write_json(
            {
                "sessions": [
                    session_json(s, self.session, store.idle_timeout, store.max_age)
                    for s in sessions
                ]
            }
        )


class SessionHandler(ApiHandler):
    """DELETE /api/sessions/{id}: end one of the user's own sessions."""

    @authenticated
    async def delete(self, handle: str) -> None:
        await service.revoke_session(self.ctx, self.user, handle, ip=self.ip)
        self.set_status(204)
        self.finish()


class AdminUsersHandler(ApiHandler):
    """GET /api/admin/users."""

    @require_role("admin")
    async def get(self) -> None:
        users = await self.ctx.db.list_users()
        self.write_json({"users": [u.to_json(admin=True) for u in users]})


class AdminUserHandler(ApiHandler):
    """PATCH /api/admin/users/{id} {role?, disabled?}."""

    @require_role("admin")
    async def patch(self, raw_id: str) -> None:
        data = self.get_json_body()
        user_id = parse_id(raw_id)
        role = field(data, "role", str, required=False)
        disabled = field(data, "disabled", bool, required=False)
        if role is not None or disabled:
            recent.ensure_recent(self.ctx, self.session)
        user = await accounts.admin_update_user(
            self.ctx, self.user, user_id, role=role, disabled=disabled, ip=self.ip
        )
        self.write_json({"user": user.to_json(admin=True)})


class AdminUserSessionsHandler(ApiHandler):
    """DELETE /api/admin/users/{id}/sessions."""

    @require_role("admin")
    async def delete(self, raw_id: str) -> None:
        user_id = parse_id(raw_id)
        recent.ensure_recent(self.ctx, self.session)
        await accounts.admin_revoke_sessions(self.ctx, self.user, user_id, ip=self.ip)
        self.set_status(204)
        self.finish()


class AdminAuditHandler(ApiHandler):
    """GET /api/admin/audit?limit=."""

    @require_role("admin")
    async def get(self) -> None:
        raw = self.get_query_argument("limit", "100")
        if not is_ascii_number(raw) or len(raw) > 6 or not 1 <= int(raw) <= AUDIT_LIMIT_MAX:
            raise ApiError(
                400,
                "bad_request",
                f"limit must be a whole number from 1 to {AUDIT_LIMIT_MAX}.",
                fields={"limit": f"From 1 to {AUDIT_LIMIT_MAX}."},
            )
        events = await self.ctx.db.list_audit(int(raw))
        self.write_json({"events": [e.to_json() for e in events]})


class HealthHandler(ApiHandler):
    """GET /healthz."""

    async def prepare(self) -> None:
        pass  # health checks carry no session and must not depend on the session store

    def get(self) -> None:
        self.write_json({"status": "ok"})


@cache
def openapi_document() -> bytes:
    """The OpenAPI description of this API, read once per process."""
    return resources.files("plp").joinpath(OPENAPI_RESOURCE).read_bytes()


class OpenApiHandler(ApiHandler):
    """GET /api/openapi.json: the OpenAPI 3.1 description of the JSON API."""

    async def prepare(self) -> None:
        check_body_size(self)  # no session lookup: the document is public and the same for all

    def get(self) -> None:
        self.finish(openapi_document())


class NotFoundApiHandler(ApiHandler):
    """Any other /api/ path: JSON 404."""

    def prepare(self) -> None:  # type: ignore[override]
        raise ApiError(404, "not_found", "No such API endpoint.")

    def check_xsrf_cookie(self) -> None:
        # 404 whatever the method (SPEC §4, §6). This route matches only paths no real
        # route matched, so no real endpoint can be reached past the XSRF check through it.
        pass


routes = [
    (r"/api/users/me", MeHandler),
    (r"/api/users/me/password", PasswordHandler),
    (r"/api/sessions", SessionsHandler),
    (r"/api/sessions/([^/]+)", SessionHandler),
    (r"/api/admin/users", AdminUsersHandler),
    (r"/api/admin/users/([^/]+)", AdminUserHandler),
    (r"/api/admin/users/([^/]+)/sessions", AdminUserSessionsHandler),
    (r"/api/admin/audit", AdminAuditHandler),
    (r"/api/openapi\.json", OpenApiHandler),
    (r"/healthz", HealthHandler),
]
fallback_routes = [(r"/api(?:/.*)?", NotFoundApiHandler)]
