"""Class members: list, add by username, remove (or leave) (SPEC §12).

Removal applies at once: every socket of the removed user joined to one of the class's
channels hears `channel_removed` and leaves it, in every process (`ChatHub.revoke`). An admin
sees every channel anyway, so an admin's removal changes no socket.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..auth.accounts import normalize_username
from ..errors import Forbidden, InvalidInput, NotFound
from ..storage.base import User
from ..storage.classes import CLASS_ROLES, ClassMember
from .service import managed_class, view_class
from .visibility import TEACHING_ROLES

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

USERNAME_TYPED_MAX = 64


async def list_members(ctx: Context, user: User, class_id: int) -> list[ClassMember]:
    """The class's members (members and admins only)."""
    await view_class(ctx, user, class_id)
    return await ctx.db.list_members(class_id)


def _class_role(value: object) -> str:
    if value is None:
        return "student"
    if value not in CLASS_ROLES:
        problem = "Must be 'student' or 'teacher'."
        raise InvalidInput(f"Field classRole: {problem}", {"classRole": problem})
    return str(value)


async def add_member(
    ctx: Context,
    user: User,
    class_id: int,
    username: object,
    class_role: object,
    *,
    ip: str | None,
) -> ClassMember:
    """Add (or re-role) a member by username; a class teacher or an admin.

    A class teacher must have a teacher or admin account (else InvalidInput); an unknown
    username is NotFound.
    """
    await managed_class(ctx, user, class_id)
    if not isinstance(username, str) or len(username) > USERNAME_TYPED_MAX:
        problem = "Must be a username."
        raise InvalidInput(f"Field username: {problem}", {"username": problem})
    role = _class_role(class_role)
    found = await ctx.db.get_credentials(normalize_username(username))
    if found is None:
        raise NotFound("No user has that username.")
    member = found[0]
    if role == "teacher" and member.role not in TEACHING_ROLES:
        problem = "Only teacher and admin accounts can be class teachers."
        raise InvalidInput(f"Field classRole: {problem}", {"classRole": problem})
    before = await ctx.db.add_member(class_id, member.id, role)
    if before != role:
        await ctx.audit.record(
            "class_member_added",
            user_id=member.id,
            username=member.username,
            ip=ip,
            by=user.id,
            classRole=role,
            **{"class": class_id},
        )
    return ClassMember(member, role)


async def remove_member(
    ctx: Context, user: User, class_id: int, member_id: int, *, ip: str | None
) -> None:
    """Remove a member: a class teacher or an admin, or the member themself (leaving).

    NotFound when the user is not a member (or the class is not visible to the caller).
    """
    view = await view_class(ctx, user, class_id)
    if member_id != user.id and not view.show_code:
        raise Forbidden("Only the class's teachers or an admin may remove members.")
    member = await ctx.db.get_user(member_id)
    if member is None or not await ctx.db.remove_member(class_id, member_id):
        raise NotFound("No such member.")
    if member.role != "admin":
        for channel_id in await ctx.db.class_channel_ids(class_id):
            ctx.hub.revoke(channel_id, member_id)
    await ctx.audit.record(
        "class_member_removed",
        user_id=member.id,
        username=member.username,
        ip=ip,
        by=user.id,
        **{"class": class_id},
    )
    log.info("user %d left class %d (by user %d)", member_id, class_id, user.id)
