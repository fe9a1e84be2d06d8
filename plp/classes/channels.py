"""A class's channels as its teachers manage them on /classes: create and delete (SPEC §12).

The same rule as the channel API (plp/handlers/channels.py): a class's channels are made and
deleted by its class teachers and admins; a class the caller cannot see is NotFound, and so
is a channel of another class named under this one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import Conflict, NotFound
from ..storage.base import Channel, ChannelNameTaken, User
from ..storage.base import NotFound as NoRecord
from .service import managed_class

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)


async def class_channels(ctx: Context, class_id: int) -> list[Channel]:
    """The class's channels, by name."""
    channels = [c for c in await ctx.db.list_channels() if c.class_id == class_id]
    return sorted(channels, key=lambda c: c.name)


async def create_class_channel(
    ctx: Context, user: User, class_id: int, name: str, description: str, kind: str
) -> Channel:
    """A new channel of the class (name, description and kind already checked)."""
    await managed_class(ctx, user, class_id)
    try:
        channel = await ctx.db.create_channel(name, description, kind, user.id, class_id)
    except NoRecord:
        raise NotFound("No such class.") from None
    except ChannelNameTaken:
        problem = "This class has a channel with that name."
        raise Conflict(problem, {"name": problem}) from None
    log.info("channel %d of class %d created by user %d", channel.id, class_id, user.id)
    return channel


async def delete_class_channel(ctx: Context, user: User, class_id: int, channel_id: int) -> str:
    """Delete a channel of the class and tell its sockets; the name it had."""
    await managed_class(ctx, user, class_id)
    channel = await ctx.db.get_channel(channel_id)
    if channel is None or channel.class_id != class_id:
        raise NotFound("No such channel.")
    await remove_channel(ctx, user, channel)
    return channel.name


async def remove_channel(ctx: Context, user: User, channel: Channel) -> None:
    """Delete a channel whose deletion `user` may make, and tell its sockets everywhere
    (`channel_deleted`, then `channel_removed`); the API and the class pages both end here."""
    if await ctx.db.delete_channel(channel.id):
        ctx.hub.channel_deleted(channel.id)
        log.info("channel %d deleted by user %d", channel.id, user.id)
