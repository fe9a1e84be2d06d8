"""The admin console: /admin (users with search and paging, the audit log with a filter and
paging), the confirmation before disabling, and the role, disable/enable and revoke actions."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from ..auth import accounts
from ..auth.decorators import require_role
from ..errors import Conflict, NotFound
from ..storage.base import ROLES
from .api import parse_id
from .errors import ApiError
from .pages import PageHandler

USERS_PER_PAGE = 25
AUDIT_PER_PAGE = 50
# The audit filter looks through this many newest rows; older ones are in the database only.
AUDIT_WINDOW = 2000
# What "Done" says after each admin action, naming the user.
DONE = {
    "role": "Role of {username} changed to {role}.",
    "disable": "{username} is disabled and signed out everywhere.",
    "enable": "{username} can sign in again.",
    "revoke": "{username} is signed out everywhere.",
}


def page_number(raw: str) -> int:
    """A 1-based page number from the query; anything else is page 1."""
    return int(raw) if raw.isdigit() and 0 < len(raw) < 7 and int(raw) > 0 else 1


class AdminView(PageHandler):
    """The /admin page, shown by GET /admin and again by a refused admin action."""

    async def show(self, *, error: str | None) -> None:
        q = self.get_argument("q", "").strip()[:64]
        event = self.get_argument("event", "").strip()[:64]
        who = self.get_argument("who", "").strip().lower()[:64]
        users = [u for u in await self.ctx.db.list_users() if matches(u, q)]
        users_page, users_pages, shown_users = paged(
            users, self.get_argument("upage", ""), USERS_PER_PAGE
        )
        window = await self.ctx.db.list_audit(AUDIT_WINDOW)
        event_names = sorted({e.event for e in window})
        events = [
            e
            for e in window
            if (not event or e.event == event) and (not who or (e.username or "").lower() == who)
        ]
        audit_page, audit_pages, shown_events = paged(
            events, self.get_argument("apage", ""), AUDIT_PER_PAGE
        )
        query = {"q": q, "event": event, "who": who, "upage": users_page, "apage": audit_page}

        def link(**changes: Any) -> str:
            values = {k: v for k, v in {**query, **changes}.items() if v not in ("", 1)}
            return "/admin" + ("?" + urlencode(values) if values else "")

        self.render_page(
            "admin.html",
            users=shown_users,
            users_total=len(users),
            users_page=users_page,
            users_pages=users_pages,
            events=shown_events,
            event_names=event_names,
            audit_page=audit_page,
            audit_pages=audit_pages,
            q=q,
            event=event,
            who=who,
            link=link,
            roles=ROLES,
            notice=await self.notice(),
            error=error,
        )

    async def notice(self) -> str:
        """What the last action did, naming the user (`?done=role&user=3`)."""
        action, raw_id = self.get_argument("done", ""), self.get_argument("user", "")
        if action == "self":
            return ""
        if action not in DONE or not raw_id.isdigit() or len(raw_id) > 18:
            return ""
        target = await self.ctx.db.get_user(int(raw_id))
        return DONE[action].format(username=target.username, role=target.role) if target else ""


class AdminPage(AdminView):
    """GET /admin: users (search, paging) and the audit log (filter by event and user, paging)."""

    @require_role("admin")
    async def get(self) -> None:
        error = SELF_DISABLE if self.get_argument("done", "") == "self" else None
        await self.show(error=error)


def matches(user: Any, q: str) -> bool:
    """True when the search text is in the username or display name (any case)."""
    q = q.lower()
    return not q or q in user.username.lower() or q in user.display_name.lower()


def paged(items: list, raw_page: str, per_page: int) -> tuple[int, int, list]:
    """(page, page count, the items on it); a page past the end shows the last one."""
    pages = max(1, math.ceil(len(items) / per_page))
    page = min(page_number(raw_page), pages)
    return page, pages, items[(page - 1) * per_page : page * per_page]


class AdminDisableConfirmPage(PageHandler):
    """GET /admin/users/{id}/disable: "Disable kid1?" with the user named, before the POST."""

    @require_role("admin")
    async def get(self, raw_id: str) -> None:
        target = await self.ctx.db.get_user(parse_id(raw_id))
        if target is None:
            raise ApiError(404, "not_found", "There is no such user.")
        if target.id == self.user.id:
            self.redirect("/admin?done=self")
            return
        self.render_page("admin_disable.html", target=target)


# The admin actions that need a recent sign-in (SPEC §14), and how the ask names them.
SENSITIVE = {
    "role": "Changing a role",
    "disable": "Disabling an account",
    "revoke": "Signing someone out everywhere",
}
SELF_DISABLE = "You cannot disable your own account; ask another admin."


class AdminUserPage(AdminView):
    """POST /admin/users/{id}: the admin console's role, disable/enable and revoke buttons."""

    @require_role("admin")
    async def post(self, raw_id: str) -> None:
        user_id = parse_id(raw_id)
        action = self.form("action")
        if action not in DONE:
            raise ApiError(400, "bad_request", "Unknown admin action.")
        if action in SENSITIVE and not await self.confirm_recent(
            SENSITIVE[action], cancel="/admin"
        ):
            return
        try:
            target = await self.act(user_id, action)
        except Conflict as exc:
            # Disabling or demoting oneself: said on /admin, not as a 409 page.
            self.set_status(409)
            await self.show(error=exc.message)
            return
        self.redirect("/admin?" + urlencode({"done": action, "user": target.id}))

    async def act(self, user_id: int, action: str) -> Any:
        """Do the action; the user as it is afterwards."""
        if action == "revoke":
            await accounts.admin_revoke_sessions(self.ctx, self.user, user_id, ip=self.ip)
            target = await self.ctx.db.get_user(user_id)
            if target is None:
                raise NotFound("No such user.")
            return target
        return await accounts.admin_update_user(
            self.ctx,
            self.user,
            user_id,
            role=self.form("role") if action == "role" else None,
            disabled={"disable": True, "enable": False}.get(action),
            ip=self.ip,
        )


routes = [
    (r"/admin", AdminPage),
    (r"/admin/users/([^/]+)/disable", AdminDisableConfirmPage),
    (r"/admin/users/([^/]+)", AdminUserPage),
]
