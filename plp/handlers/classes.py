"""The classes API (SPEC §12): /api/classes, one class, its join code and its members.

Each method parses the request and calls one function of plp/classes/; a class the caller
may not see answers 404 like an unknown id (the service raises NotFound for both).
"""

from __future__ import annotations

import logging

from ..auth.decorators import authenticated, require_role
from ..classes import members, service
from .api import parse_id
from .base import ApiHandler

log = logging.getLogger(__name__)


class ClassesHandler(ApiHandler):
    """GET /api/classes (the user's; admins: all); POST /api/classes {name} (teacher, admin)."""

    @authenticated
    async def get(self) -> None:
        views = await service.list_classes(self.ctx, self.user)
        self.write_json({"classes": [view.to_json() for view in views]})

    @require_role("teacher", "admin")
    async def post(self) -> None:
        data = self.get_json_body()
        view = await service.create_class(self.ctx, self.user, data.get("name"), ip=self.ip)
        self.write_json({"class": view.to_json()}, status=201)


class JoinHandler(ApiHandler):
    """POST /api/classes/join {code}: join as a class student."""

    @authenticated
    async def post(self) -> None:
        data = self.get_json_body()
        view = await service.join_by_code(self.ctx, self.user, data.get("code"), ip=self.ip)
        self.write_json({"class": view.to_json()})


class ClassHandler(ApiHandler):
    """GET, PATCH {name}, DELETE /api/classes/{id}."""

    @authenticated
    async def get(self, raw_id: str) -> None:
        view = await service.view_class(self.ctx, self.user, parse_id(raw_id))
        self.write_json({"class": view.to_json()})

    @authenticated
    async def patch(self, raw_id: str) -> None:
        class_id = parse_id(raw_id)
        data = self.get_json_body()
        view = await service.rename_class(
            self.ctx, self.user, class_id, data.get("name"), ip=self.ip
        )
        self.write_json({"class": view.to_json()})

    @authenticated
    async def delete(self, raw_id: str) -> None:
        await service.delete_class(self.ctx, self.user, parse_id(raw_id), ip=self.ip)
        self.set_status(204)
        self.finish()


class CodeHandler(ApiHandler):
    """POST /api/classes/{id}/code (a new code); DELETE (joining by code closed)."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        code = await service.reset_code(self.ctx, self.user, parse_id(raw_id))
        self.write_json({"joinCode": code})

    @authenticated
    async def delete(self, raw_id: str) -> None:
        await service.close_code(self.ctx, self.user, parse_id(raw_id))
        self.set_status(204)
        self.finish()


class MembersHandler(ApiHandler):
    """GET /api/classes/{id}/members; POST {username, classRole?}."""

    @authenticated
    async def get(self, raw_id: str) -> None:
        found = await members.list_members(self.ctx, self.user, parse_id(raw_id))
        self.write_json({"members": [member.to_json() for member in found]})

    @authenticated
    async def post(self, raw_id: str) -> None:
        class_id = parse_id(raw_id)
        data = self.get_json_body()
        member = await members.add_member(
            self.ctx,
            self.user,
            class_id,
            data.get("username"),
            data.get("classRole"),
            ip=self.ip,
        )
        self.write_json({"member": member.to_json()}, status=201)


class MemberHandler(ApiHandler):
    """DELETE /api/classes/{id}/members/{userId}: a class teacher, an admin, or oneself."""

    @authenticated
    async def delete(self, raw_id: str, raw_user: str) -> None:
        class_id = parse_id(raw_id)
        member_id = parse_id(raw_user)
        await members.remove_member(self.ctx, self.user, class_id, member_id, ip=self.ip)
        self.set_status(204)
        self.finish()


routes = [
    (r"/api/classes", ClassesHandler),
    (r"/api/classes/join", JoinHandler),
    (r"/api/classes/([^/]+)", ClassHandler),
    (r"/api/classes/([^/]+)/code", CodeHandler),
    (r"/api/classes/([^/]+)/members", MembersHandler),
    (r"/api/classes/([^/]+)/members/([^/]+)", MemberHandler),
]
