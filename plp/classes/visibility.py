"""Who sees which channel and class (SPEC §12): the one rule every entry point asks.

School-wide channels (`class_id` None) are everyone's; a class's channels are its members'
and admins'. Anything a user may not see is answered exactly like an id that does not exist
(`NotFound`), so ids of other classes' channels cannot be probed. Every answer reads the
database, so a join or a removal by any process counts at once.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import NotFound
from ..storage.base import Channel, User
from ..storage.store import Store

TEACHING_ROLES = ("teacher", "admin")


class HasStore(Protocol):
    """What the rule needs of a Context: its database."""

    @property
    def db(self) -> Store: ...


def is_class_teacher(user: User, class_role: str | None) -> bool:
    """A class teacher whose account may still teach: a teacher demoted to student by an
    admin keeps the membership but loses the class teacher's powers."""
    return class_role == "teacher" and user.role in TEACHING_ROLES


async def visible_channel(ctx: HasStore, user: User, channel_id: int) -> Channel:
    """The channel if `user` may see it; NotFound for an unknown or invisible id alike."""
    channel = await ctx.db.get_channel(channel_id)
    if channel is None:
        raise NotFound("No such channel.")
    if channel.class_id is None or user.role == "admin":
        return channel
    if await ctx.db.class_role(channel.class_id, user.id) is None:
        raise NotFound("No such channel.")
    return channel


async def sees_channel(ctx: HasStore, user: User, channel_id: int) -> bool:
    """Whether the channel exists and `user` may see it."""
    try:
        await visible_channel(ctx, user, channel_id)
    except NotFound:
        return False
    return True


async def still_member(ctx: HasStore, user: User, class_id: int | None) -> bool:
    """Whether `user` still sees a channel of class `class_id` (None: school-wide)."""
    if class_id is None or user.role == "admin":
        return True
    return await ctx.db.class_role(class_id, user.id) is not None


async def visible_channels(ctx: HasStore, user: User) -> list[Channel]:
    """Every channel `user` may see, by id: all for admins."""
    if user.role == "admin":
        return await ctx.db.list_channels()
    return await ctx.db.channels_for(user.id)
