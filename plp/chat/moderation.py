"""Deleting chat messages: who may, the deletion itself, its fan-out and its audit row.

`may_delete_message` is the one rule; the handler (plp/handlers/channels.py) and any page
that offers a "delete" button ask it (`may_delete` looks the class role up). A channel the
user may not see is `NotFound`, like an unknown one (plp/classes/visibility.py).

An unknown message, or one that is not in the channel the path names, is `NotFound`, like an
unknown channel: the answer must not say which ids exist elsewhere.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..classes.visibility import is_class_teacher, visible_channel
from ..errors import Forbidden, NotFound
from ..storage.base import Channel, Message, User

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)


def may_delete_message(
    user: User, message: Message, channel: Channel, class_role: str | None = None
) -> bool:
    """Whether `user` may delete `message` of `channel`: its author, an admin, or a class
    teacher of the channel's class (`class_role`: the user's role in that class)."""
    if user.id == message.author_id or user.role == "admin":
        return True
    return channel.class_id is not None and is_class_teacher(user, class_role)


async def may_delete(ctx: Context, user: User, message: Message, channel: Channel) -> bool:
    """`may_delete_message`, looking the user's class role up when it matters."""
    role = None
    if channel.class_id is not None and user.id != message.author_id:
        role = await ctx.db.class_role(channel.class_id, user.id)
    return may_delete_message(user, message, channel, role)


async def delete_message(
    ctx: Context, user: User, channel_id: int, message_id: int, *, ip: str | None
) -> Message:
    """Delete a message, tell the channel's sockets everywhere, audit a moderator's removal.

    NotFound: no such (or no visible) channel, no such message, or the message is in
    another channel.
    Forbidden: the user may not delete it. Returns the deleted message.
    """
    channel = await visible_channel(ctx, user, channel_id)
    message = await ctx.db.get_message(message_id)
    if message is None or message.channel_id != channel.id:
        raise NotFound("No such message.")
    if not await may_delete(ctx, user, message, channel):
        raise Forbidden("Only its author or a moderator may delete this message.")
    if not await ctx.db.delete_message(message.id):
        # Someone else deleted it a moment ago; they have told the sockets already.
        raise NotFound("No such message.")
    ctx.hub.message_deleted(channel.id, message.id)
    if user.id != message.author_id:
        await ctx.audit.record(
            "message_removed",
            user_id=message.author_id,
            username=message.author_username,
            ip=ip,
            by=user.id,
            byUsername=user.username,
            channel=channel.id,
            message=message.id,
        )
    log.info("message %d of channel %d deleted by user %d", message.id, channel.id, user.id)
    return message
