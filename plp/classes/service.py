"""Classes: create, rename, delete, view; join codes (join, reset, close) (SPEC §12).

Each function checks who may act, talks to the database and the hub, writes the audit trail
and raises domain errors (plp/errors.py) the handlers map to HTTP. A class the caller may not
see is `NotFound`, exactly like an unknown id. Members are in members.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from ..storage.base import User
from ..storage.classes import ClassNameTaken, JoinCodeTaken, SchoolClass
from .codes import TYPED_MAX, new_join_code, normalize_code
from .visibility import is_class_teacher

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

NAME_MAX = 64
# A fresh random code meeting a taken one is rare (30**8 codes); a few draws settle it.
CODE_DRAWS = 5


class ClassView:
    """A class as one user sees it: the record and that user's class role."""

    __slots__ = ("record", "my_role", "show_code")

    def __init__(self, record: SchoolClass, my_role: str | None, show_code: bool) -> None:
        self.record = record
        self.my_role = my_role
        self.show_code = show_code

    def to_json(self) -> dict:
        return self.record.to_json(my_role=self.my_role, show_code=self.show_code)


def class_name(value: object) -> str:
    """A class name: 1-64 printable characters once trimmed; InvalidInput otherwise."""
    if not isinstance(value, str):
        raise InvalidInput("The name is required.", {"name": "Must be a string."})
    name = value.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        problem = f"1-{NAME_MAX} printable characters."
        raise InvalidInput(f"Field name: {problem}", {"name": problem})
    return name


def _view(user: User, record: SchoolClass, role: str | None) -> ClassView:
    return ClassView(record, role, user.role == "admin" or is_class_teacher(user, role))


async def view_class(ctx: Context, user: User, class_id: int) -> ClassView:
    """The class as `user` sees it; NotFound unless a member or an admin."""
    record = await ctx.db.get_class(class_id)
    if record is None:
        raise NotFound("No such class.")
    role = await ctx.db.class_role(class_id, user.id)
    if role is None and user.role != "admin":
        raise NotFound("No such class.")
    return _view(user, record, role)


async def managed_class(ctx: Context, user: User, class_id: int) -> ClassView:
    """The class if `user` may manage it (a class teacher or an admin).

    NotFound for a class they cannot see; Forbidden for a member who does not teach it.
    """
    view = await view_class(ctx, user, class_id)
    if not view.show_code:
        raise Forbidden("Only the class's teachers or an admin may do this.")
    return view


async def list_classes(ctx: Context, user: User) -> list[ClassView]:
    """The user's classes; every class for an admin."""
    mine = await ctx.db.classes_of(user.id)
    if user.role != "admin":
        return [_view(user, record, role) for record, role in mine]
    roles = {record.id: role for record, role in mine}
    return [_view(user, record, roles.get(record.id)) for record in await ctx.db.list_classes()]


async def create_class(ctx: Context, user: User, name: object, *, ip: str | None) -> ClassView:
    """A new class with a join code; its creator (a teacher or an admin) is its teacher."""
    if user.role not in ("teacher", "admin"):
        raise Forbidden("Only teachers and admins create classes.")
    clean = class_name(name)
    for _ in range(CODE_DRAWS):
        try:
            record = await ctx.db.create_class(clean, user.id, new_join_code())
            break
        except JoinCodeTaken:
            continue
        except ClassNameTaken:
            raise Conflict("A class with that name exists.", {"name": "Taken."}) from None
    else:
        raise Conflict("Could not draw a free join code; try again.")
    await ctx.audit.record(
        "class_created", user_id=user.id, username=user.username, ip=ip, **{"class": record.id}
    )
    log.info("class %d created by user %d", record.id, user.id)
    return _view(user, record, "teacher")


async def rename_class(
    ctx: Context, user: User, class_id: int, name: object, *, ip: str | None
) -> ClassView:
    """Rename a class (a class teacher or an admin)."""
    view = await managed_class(ctx, user, class_id)
    clean = class_name(name)
    try:
        record = await ctx.db.rename_class(class_id, clean)
    except ClassNameTaken:
        raise Conflict("A class with that name exists.", {"name": "Taken."}) from None
    return ClassView(record, view.my_role, view.show_code)


async def delete_class(ctx: Context, user: User, class_id: int, *, ip: str | None) -> None:
    """Delete a class with its channels and their messages; their sockets are told."""
    await managed_class(ctx, user, class_id)
    channels = await ctx.db.delete_class(class_id)
    if channels is None:
        return  # deleted a moment ago by someone else, who has told the sockets
    for channel_id in channels:
        ctx.hub.channel_deleted(channel_id)
    await ctx.audit.record(
        "class_deleted",
        user_id=user.id,
        username=user.username,
        ip=ip,
        channels=len(channels),
        **{"class": class_id},
    )
    log.info("class %d deleted by user %d", class_id, user.id)


async def reset_code(ctx: Context, user: User, class_id: int) -> str:
    """A new join code for the class; the old one stops working at once."""
    await managed_class(ctx, user, class_id)
    for _ in range(CODE_DRAWS):
        code = new_join_code()
        try:
            if not await ctx.db.set_join_code(class_id, code):
                raise NotFound("No such class.")
            return code
        except JoinCodeTaken:
            continue
    raise Conflict("Could not draw a free join code; try again.")


async def close_code(ctx: Context, user: User, class_id: int) -> None:
    """Close joining by code: the class has no code until a reset."""
    await managed_class(ctx, user, class_id)
    await ctx.db.set_join_code(class_id, None)


async def join_by_code(ctx: Context, user: User, typed: object, *, ip: str | None) -> ClassView:
    """Join a class as a class student with its code (a member already: unchanged).

    At most `class-join-failures` wrong codes per user an hour, then RateLimited; a wrong
    code is NotFound. The audit row of a failure never holds what was typed.
    """
    if not isinstance(typed, str) or len(typed) > TYPED_MAX:
        problem = "Must be the class's join code (a string)."
        raise InvalidInput(f"Field code: {problem}", {"code": problem})
    wait = await ctx.throttle.join_wait(user.id)
    if wait > 0:
        raise RateLimited("Too many wrong join codes; try again later.", wait)
    code = normalize_code(typed)
    record = await ctx.db.class_by_code(code) if code is not None else None
    if record is None:
        await ctx.throttle.join_failed(user.id)
        await ctx.audit.record("class_join_failed", user_id=user.id, username=user.username, ip=ip)
        raise NotFound("No class has that join code.")
    if await ctx.db.join_class(record.id, user.id):
        await ctx.audit.record(
            "class_joined", user_id=user.id, username=user.username, ip=ip, **{"class": record.id}
        )
        record = await ctx.db.get_class(record.id) or record
    return _view(user, record, await ctx.db.class_role(record.id, user.id))
