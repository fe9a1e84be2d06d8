"""The channel API: /api/channels (list, create), /api/channels/{id} (delete), history and
message deletion."""

from __future__ import annotations

import logging
import re
from typing import Any

from ..auth.decorators import authenticated, require_role
from ..chat import moderation
from ..chat.connection import ID_MAX
from ..classes import channels as class_channels
from ..classes import service as classes
from ..classes import visibility
from ..storage.base import CHANNEL_KINDS, ChannelNameTaken, NotFound
from .api import field, parse_id
from .base import ApiHandler
from .errors import ApiError

log = logging.getLogger(__name__)

# Channel names: lower-cased, 1-64 of a-z 0-9 _ -, starting with a letter or digit.
CHANNEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DESCRIPTION_MAX = 256
HISTORY_DEFAULT = 50
HISTORY_MAX = 100


def _query_int(handler: ApiHandler, name: str, low: int, high: int) -> int | None:
    """An optional integer query argument within [low, high]; 400 naming it otherwise."""
    raw = handler.get_query_argument(name, None)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        problem = f"Must be a whole number from {low} to {high}."
        raise ApiError(400, "bad_request", f"Query {name}: {problem}", fields={name: problem})
    return int(raw)


class ChannelsHandler(ApiHandler):
    """GET /api/channels (the visible ones); POST /api/channels {..., classId?}: school-wide
    (admins) or a class's (its teachers, admins)."""

    @authenticated
    async def get(self) -> None:
        channels = await visibility.visible_channels(self.ctx, self.user)
        self.write_json({"channels": [c.to_json() for c in channels]})

    @require_role("teacher", "admin")
    async def post(self) -> None:
        data = self.get_json_body()
        name, description, kind = self.validate(data)
        class_id = field(data, "classId", int, required=False)
        await self.check_scope(class_id)
        try:
            channel = await self.ctx.db.create_channel(
                name, description, kind, self.user.id, class_id
            )
        except NotFound:
            raise ApiError(404, "not_found", "No such class.") from None
        except ChannelNameTaken:
            raise ApiError(
                409, "conflict", "A channel with that name exists.", fields={"name": "Taken."}
            ) from None
        log.info("channel %s (%d) created by user %d", channel.name, channel.id, self.user.id)
        self.write_json({"channel": channel.to_json()}, status=201)

    async def check_scope(self, class_id: int | None) -> None:
        """School-wide channels are made by admins; a class's by its teachers or an admin
        (a class the user cannot see: 404, as for an unknown id)."""
        user = self.user
        if class_id is None:
            if user.role != "admin":
                raise ApiError(403, "forbidden", "Only admins create school-wide channels.")
            return
        if not 0 < class_id <= ID_MAX:
            raise ApiError(404, "not_found", "No such class.")
        await classes.managed_class(self.ctx, user, class_id)

    @staticmethod
    def validate(data: dict[str, Any]) -> tuple[str, str, str]:
        """(name, description, kind) from a create body, or a 400 naming every bad field."""
        problems: dict[str, str] = {}
        name = data.get("name")
        if not isinstance(name, str):
            problems["name"] = "This field is required and must be a string."
        else:
            name = name.strip().lower()
            if not CHANNEL_NAME_RE.fullmatch(name):
                problems["name"] = (
                    "1-64 characters: a-z, 0-9, '_' and '-', starting with a letter or digit."
                )
        description = data.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            problems["description"] = "Must be a string."
        else:
            description = description.strip()
            if len(description) > DESCRIPTION_MAX or not description.isprintable():
                problems["description"] = (
                    f"At most {DESCRIPTION_MAX} printable characters on one line."
                )
        kind = data.get("kind", "discussion")
        if kind is None:
            kind = "discussion"
        if kind not in CHANNEL_KINDS:
            problems["kind"] = "Must be 'discussion' or 'announcement'."
        if problems:
            raise ApiError(400, "bad_request", "Some fields are not valid.", fields=problems)
        return name, description, kind


class ChannelHandler(ApiHandler):
    """DELETE /api/channels/{id}: an admin; a class channel's class teacher; the teacher who
    created a school-wide one (before classes, teachers could)."""

    @require_role("teacher", "admin")
    async def delete(self, raw_id: str) -> None:
        # The role check comes first: a student gets the same 403 for any id (SPEC §12).
        channel = await visibility.visible_channel(self.ctx, self.user, parse_id(raw_id))
        user = self.user
        if channel.class_id is None:
            allowed = user.role == "admin" or channel.created_by == user.id
        else:
            role = await self.ctx.db.class_role(channel.class_id, user.id)
            allowed = user.role == "admin" or visibility.is_class_teacher(user, role)
        if not allowed:
            raise ApiError(
                403, "forbidden", "Only an admin or a teacher of its class may delete this channel."
            )
        await class_channels.remove_channel(self.ctx, user, channel)
        self.set_status(204)
        self.finish()


class MessagesHandler(ApiHandler):
    """GET /api/channels/{id}/messages?before=&limit=: history, oldest first."""

    @authenticated
    async def get(self, raw_id: str) -> None:
        channel_id = parse_id(raw_id)
        before = _query_int(self, "before", 1, ID_MAX)
        limit = _query_int(self, "limit", 1, HISTORY_MAX) or HISTORY_DEFAULT
        await visibility.visible_channel(self.ctx, self.user, channel_id)
        messages = await self.ctx.db.list_messages(channel_id, before=before, limit=limit)
        self.write_json({"messages": [m.to_json() for m in messages]})


class MessageHandler(ApiHandler):
    """DELETE /api/channels/{id}/messages/{messageId}: the author or a moderator (SPEC §6)."""

    @authenticated
    async def delete(self, raw_channel: str, raw_message: str) -> None:
        channel_id = parse_id(raw_channel)
        message_id = parse_id(raw_message)
        await moderation.delete_message(self.ctx, self.user, channel_id, message_id, ip=self.ip)
        self.set_status(204)
        self.finish()


routes = [
    (r"/api/channels", ChannelsHandler),
    (r"/api/channels/([^/]+)", ChannelHandler),
    (r"/api/channels/([^/]+)/messages", MessagesHandler),
    (r"/api/channels/([^/]+)/messages/([^/]+)", MessageHandler),
]
