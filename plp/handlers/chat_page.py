"""GET /chat: the chat page, its channel list grouped by class (SPEC §7, §12).

The page lists only the channels the user may see: each class's under a heading with the
class's name, then the school-wide ones. It tells static/chat/main.js who the user is and
which classes they teach, so "delete" is offered on the messages they may delete (the rule is
plp/chat/moderation.py's, and the server checks it again on every deletion).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

from ..auth.decorators import authenticated
from ..classes import service
from ..classes.visibility import is_class_teacher, visible_channels
from ..storage.base import Channel, User
from .pages import PageHandler

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

SCHOOL_WIDE = "School-wide"


class ChannelGroup(NamedTuple):
    """One heading of the channel list: a class (`class_id`) or the school-wide channels."""

    title: str
    class_id: int | None
    channels: list[Channel]


async def channel_groups(ctx: Context, user: User) -> tuple[list[ChannelGroup], list[int]]:
    """(the user's channels grouped by class, by class name, then school-wide; the ids of the
    classes the user teaches). A class with no channel has no heading."""
    views = await service.list_classes(ctx, user)
    channels = await visible_channels(ctx, user)
    groups = []
    for view in views:
        own = [c for c in channels if c.class_id == view.record.id]
        if own:
            groups.append(ChannelGroup(view.record.name, view.record.id, own))
    school = [c for c in channels if c.class_id is None]
    if school:
        groups.append(ChannelGroup(SCHOOL_WIDE, None, school))
    teaches = [view.record.id for view in views if is_class_teacher(user, view.my_role)]
    return groups, teaches


class ChatPage(PageHandler):
    """GET /chat: the chat page; static/chat/main.js does the rest over /ws/chat."""

    @authenticated
    async def get(self) -> None:
        groups, teaches = await channel_groups(self.ctx, self.user)
        self.render_page(
            "chat.html",
            groups=groups,
            teaches=" ".join(str(class_id) for class_id in teaches),
            school_wide=SCHOOL_WIDE,
        )


routes = [(r"/chat", ChatPage)]
