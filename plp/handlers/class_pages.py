"""The /classes pages (SPEC §12): a student joins with a code, sees and leaves their classes;
a class teacher (or an admin) creates classes and manages each one on /classes/{id}: its join
code, name, roster and channels.

Every form posts, then redirects to the page it came from (post/redirect/get) with a notice
naming what was done, carried in a short-lived signed cookie so nobody can put words on the
page with a crafted link. A refused form is shown again with the error at its field. Who may
do what is plp/classes/'s rule: a class the user cannot see is the 404 page, a member who may
not manage it the 403 page, exactly as the API answers.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..auth import reset
from ..auth.decorators import authenticated, require_role
from ..classes import channels as class_channels
from ..classes import members, service
from ..errors import DomainError, InvalidInput, NotFound, RateLimited
from ..storage.base import CHANNEL_KINDS
from ..storage.classes import CLASS_ROLES
from .api import parse_id
from .channels import ChannelsHandler
from .errors import ApiError, http_error
from .pages import PageHandler

log = logging.getLogger(__name__)

NOTICE_COOKIE = "plp_notice"
WRONG_CODE = "No class has this code. Check it with your teacher; letters and digits only."


def wait_words(seconds: float) -> str:
    """`Retry-After` seconds as a person reads them: "about 3 minutes"."""
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} seconds"
    return f"about {math.ceil(seconds / 60)} minutes"


class ClassPage(PageHandler):
    """Shared by the /classes handlers: notices, and the two pages shown again with errors."""

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(class_roles=CLASS_ROLES, channel_kinds=CHANNEL_KINDS)
        return namespace

    def done(self, notice: str, path: str) -> None:
        """Redirect to `path`, which then says `notice` once."""
        self.set_signed_cookie(
            NOTICE_COOKIE,
            notice,
            expires_days=None,
            path="/classes",
            httponly=True,
            samesite="Lax",
            secure=self.ctx.settings.production,
        )
        self.redirect(path)

    def take_notice(self) -> str:
        """The notice of the action that led here, shown once ('' when none)."""
        raw = self.get_signed_cookie(NOTICE_COOKIE, max_age_days=1 / 24)
        if self.get_cookie(NOTICE_COOKIE) is not None:
            self.clear_cookie(NOTICE_COOKIE, path="/classes")
        return raw.decode("utf-8", "replace") if raw else ""

    def refusal(self, exc: DomainError, form: str, at: str) -> tuple[str, dict[str, str]]:
        """(message, fields) for a refused form; sets the status (and Retry-After).

        Field names get the form's prefix (`member-username`), as several forms share a
        page; a refusal naming no field is shown at `at`.
        """
        error = http_error(exc)
        self.set_status(error.status_code)
        for name, value in error.headers.items():
            self.set_header(name, value)
        fields = {f"{form}-{name}": text for name, text in (error.fields or {}).items()}
        return error.message, fields or {f"{form}-{at}": error.message}

    async def show_list(
        self, *, error: str | None = None, fields: dict[str, str] | None = None, **values: str
    ) -> None:
        """/classes: the user's classes (admins: all), joining and creating."""
        views = await service.list_classes(self.ctx, self.user)
        self.render_page(
            "classes.html",
            views=views,
            notice="" if error else self.take_notice(),
            error=error,
            fields=fields or {},
            values=values,
        )

    async def show_class(
        self,
        class_id: int,
        *,
        error: str | None = None,
        fields: dict[str, str] | None = None,
        **values: str,
    ) -> None:
        """/classes/{id}: one class as the user sees it (404 for a class they cannot see)."""
        view = await service.view_class(self.ctx, self.user, class_id)
        roster = await members.list_members(self.ctx, self.user, class_id)
        channels = await class_channels.class_channels(self.ctx, class_id)
        self.render_page(
            "class.html",
            view=view,
            school_class=view.record,
            roster=roster,
            channels=channels,
            notice="" if error else self.take_notice(),
            error=error,
            fields=fields or {},
            values=values,
        )


class ClassesPage(ClassPage):
    """GET /classes; POST /classes: a teacher or an admin creates a class."""

    @authenticated
    async def get(self) -> None:
        await self.show_list()

    @require_role("teacher", "admin")
    async def post(self) -> None:
        name = self.form("name")
        try:
            view = await service.create_class(self.ctx, self.user, name, ip=self.ip)
        except DomainError as exc:
            message, fields = self.refusal(exc, "create", "name")
            await self.show_list(error=message, fields=fields, create_name=name)
            return
        self.done(
            f"Class {view.record.name} created. Its join code is below.",
            f"/classes/{view.record.id}",
        )


class JoinPage(ClassPage):
    """POST /classes/join: join a class with its code (wrong codes are limited per user)."""

    @authenticated
    async def post(self) -> None:
        typed = self.form("code")
        try:
            if not typed.strip():
                # Not a guess: an empty form does not count toward the wrong-code limit.
                raise InvalidInput("Type the join code.", {"code": "Type the join code."})
            view = await service.join_by_code(self.ctx, self.user, typed, ip=self.ip)
        except (InvalidInput, NotFound, RateLimited) as exc:
            message, fields = self.refusal(exc, "join", "code")
            if isinstance(exc, NotFound):
                fields = {"join-code": WRONG_CODE}
            elif isinstance(exc, RateLimited):
                wait = wait_words(exc.retry_after)
                fields = {"join-code": f"Too many wrong codes. Try again in {wait}."}
            await self.show_list(error=message, fields=fields, join_code=typed)
            return
        self.done(f"You are in class {view.record.name}.", "/classes")


class ClassDetailPage(ClassPage):
    """GET /classes/{id}: one class (members and admins)."""

    @authenticated
    async def get(self, raw_id: str) -> None:
        await self.show_class(parse_id(raw_id))


class RenamePage(ClassPage):
    """POST /classes/{id}/rename {name}."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        class_id, name = parse_id(raw_id), self.form("name")
        await service.managed_class(self.ctx, self.user, class_id)
        try:
            view = await service.rename_class(self.ctx, self.user, class_id, name, ip=self.ip)
        except DomainError as exc:
            message, fields = self.refusal(exc, "rename", "name")
            await self.show_class(class_id, error=message, fields=fields, rename_name=name)
            return
        self.done(f"The class is now called {view.record.name}.", f"/classes/{class_id}")


class CodePage(ClassPage):
    """POST /classes/{id}/code {action: new | close}: a new join code, or joining closed."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        class_id, action = parse_id(raw_id), self.form("action")
        if action == "new":
            await service.reset_code(self.ctx, self.user, class_id)
            notice = "A new join code is shown below. The old code no longer works."
        elif action == "close":
            await service.close_code(self.ctx, self.user, class_id)
            notice = "Joining by code is closed. Make a new code to open it again."
        else:
            raise ApiError(400, "bad_request", "Unknown join code action.")
        self.done(notice, f"/classes/{class_id}")


class MembersPage(ClassPage):
    """POST /classes/{id}/members {username, classRole}: add (or re-role) a member."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        class_id = parse_id(raw_id)
        username, role = self.form("username"), self.form("classRole") or None
        view = await service.managed_class(self.ctx, self.user, class_id)
        try:
            member = await members.add_member(
                self.ctx, self.user, class_id, username, role, ip=self.ip
            )
        except (InvalidInput, NotFound) as exc:
            message, fields = self.refusal(exc, "member", "username")
            if isinstance(exc, NotFound):
                fields = {"member-username": "No account has this username."}
            await self.show_class(class_id, error=message, fields=fields, member_username=username)
            return
        self.done(
            f"{member.user.username} is a class {member.class_role} of {view.record.name}.",
            f"/classes/{class_id}",
        )


class MemberRemovePage(ClassPage):
    """POST /classes/{id}/members/{userId}/remove: a class teacher or an admin removes one."""

    @authenticated
    async def post(self, raw_id: str, raw_user: str) -> None:
        class_id, member_id = parse_id(raw_id), parse_id(raw_user)
        view = await service.managed_class(self.ctx, self.user, class_id)
        member = await self.ctx.db.get_user(member_id)
        await members.remove_member(self.ctx, self.user, class_id, member_id, ip=self.ip)
        name = member.username if member else "The member"
        # A teacher who removed themself cannot see the class any more (an admin still can).
        gone = member_id == self.user.id and self.user.role != "admin"
        path = "/classes" if gone else f"/classes/{class_id}"
        self.done(f"{name} is no longer in {view.record.name}.", path)


class MemberResetCodePage(ClassPage):
    """POST /classes/{id}/members/{userId}/reset-code: "Make reset code" on the roster (SPEC
    §13), for a class student; asks for a recent sign-in inline, then shows the code once.

    Answered with a page, not a redirect, so the code never travels in a URL or a cookie.
    """

    @authenticated
    async def post(self, raw_id: str, raw_user: str) -> None:
        class_id, member_id = parse_id(raw_id), parse_id(raw_user)
        await service.managed_class(self.ctx, self.user, class_id)
        if await self.ctx.db.class_role(class_id, member_id) != "student":
            raise NotFound("No such student in this class.")
        back = f"/classes/{class_id}"
        if not await self.confirm_recent("Making a reset code", cancel=back):
            return
        code, expires = await reset.issue_code(
            self.ctx, self.user, member_id, ip=self.ip, session=self.session
        )
        target = await self.ctx.db.get_user(member_id)
        self.render_page(
            "reset_code.html",
            target=target,
            code=code,
            expires=expires,
            back=back,
            back_label="Back to the class",
        )


class LeavePage(ClassPage):
    """GET /classes/{id}/leave asks first; POST leaves the class."""

    @authenticated
    async def get(self, raw_id: str) -> None:
        view = await service.view_class(self.ctx, self.user, parse_id(raw_id))
        self.render_page("class_confirm.html", action="leave", school_class=view.record)

    @authenticated
    async def post(self, raw_id: str) -> None:
        class_id = parse_id(raw_id)
        view = await service.view_class(self.ctx, self.user, class_id)
        await members.remove_member(self.ctx, self.user, class_id, self.user.id, ip=self.ip)
        self.done(f"You left {view.record.name}.", "/classes")


class DeletePage(ClassPage):
    """GET /classes/{id}/delete asks first; POST deletes the class, its channels and messages."""

    @authenticated
    async def get(self, raw_id: str) -> None:
        class_id = parse_id(raw_id)
        view = await service.managed_class(self.ctx, self.user, class_id)
        channels = await class_channels.class_channels(self.ctx, class_id)
        self.render_page(
            "class_confirm.html", action="delete", school_class=view.record, channels=channels
        )

    @authenticated
    async def post(self, raw_id: str) -> None:
        class_id = parse_id(raw_id)
        view = await service.managed_class(self.ctx, self.user, class_id)
        await service.delete_class(self.ctx, self.user, class_id, ip=self.ip)
        self.done(f"Class {view.record.name} is deleted, with its channels.", "/classes")


class ChannelCreatePage(ClassPage):
    """POST /classes/{id}/channels {name, description, kind}: a new channel of the class."""

    @authenticated
    async def post(self, raw_id: str) -> None:
        class_id = parse_id(raw_id)
        typed = {k: self.form(k) for k in ("name", "description", "kind")}
        await service.managed_class(self.ctx, self.user, class_id)
        try:
            name, description, kind = channel_fields(typed)
            channel = await class_channels.create_class_channel(
                self.ctx, self.user, class_id, name, description, kind
            )
        except DomainError as exc:
            message, fields = self.refusal(exc, "channel", "name")
            values = {f"channel_{k}": v for k, v in typed.items()}
            await self.show_class(class_id, error=message, fields=fields, **values)
            return
        self.done(f"Channel #{channel.name} created.", f"/classes/{class_id}")


def channel_fields(typed: dict[str, str]) -> tuple[str, str, str]:
    """(name, description, kind) by the channel API's rules; InvalidInput naming each field."""
    try:
        # A form without a kind (an old page, a script) means the default, as in the API.
        return ChannelsHandler.validate({**typed, "kind": typed.get("kind") or None})
    except ApiError as exc:
        raise InvalidInput(exc.message, exc.fields) from None


class ChannelDeletePage(ClassPage):
    """POST /classes/{id}/channels/{channelId}/delete."""

    @authenticated
    async def post(self, raw_id: str, raw_channel: str) -> None:
        class_id, channel_id = parse_id(raw_id), parse_id(raw_channel)
        name = await class_channels.delete_class_channel(self.ctx, self.user, class_id, channel_id)
        self.done(f"Channel #{name} is deleted, with its messages.", f"/classes/{class_id}")


routes = [
    (r"/classes", ClassesPage),
    (r"/classes/join", JoinPage),
    (r"/classes/([^/]+)", ClassDetailPage),
    (r"/classes/([^/]+)/rename", RenamePage),
    (r"/classes/([^/]+)/code", CodePage),
    (r"/classes/([^/]+)/members", MembersPage),
    (r"/classes/([^/]+)/members/([^/]+)/remove", MemberRemovePage),
    (r"/classes/([^/]+)/members/([^/]+)/reset-code", MemberResetCodePage),
    (r"/classes/([^/]+)/leave", LeavePage),
    (r"/classes/([^/]+)/delete", DeletePage),
    (r"/classes/([^/]+)/channels", ChannelCreatePage),
    (r"/classes/([^/]+)/channels/([^/]+)/delete", ChannelDeletePage),
]
