"""The pages' inline "Confirm it is you" (SPEC §14): a sensitive form action asks for the
password again (and the authenticator code, when the app is on), then carries on."""

from __future__ import annotations

from ..auth import mfa, recent, totp
from ..errors import DomainError
from .base import BaseHandler
from .errors import http_error


def _form(handler: BaseHandler, name: str) -> str:
    return handler.get_body_argument(name, "", strip=False)


async def confirm_recent(handler: BaseHandler, why: str, *, cancel: str) -> bool:
    """True when the sign-in is recent, or the form carries the password again (plus the
    code when needed) and they are right: the action then carries on.

    Otherwise this answers with the "Confirm it is you" page, which posts the same form
    fields back to the same action with the password added, and returns False. A wrong
    password or code shows that page again at 400 (429 when throttled), never ending the
    session.
    """
    ctx, user = handler.ctx, handler.user
    if recent.is_recent(ctx, handler.session):
        return True
    password = _form(handler, "reauth_password")
    needs_code = await totp.is_active(ctx, user.id)
    fields: dict[str, str] = {}
    error = None
    if password:
        try:
            await mfa.reauth(
                ctx,
                user,
                handler.session,
                password=password,
                code=_form(handler, "reauth_code") if needs_code else None,
                ip=handler.ip,
            )
            return True
        except DomainError as exc:
            answer = http_error(exc)
            handler.set_status(answer.status_code)
            for name, value in answer.headers.items():
                handler.set_header(name, value)
            error, got = answer.message, answer.fields or {}
            if "code" in got:
                fields = {"reauth_code": got["code"]}
            else:
                fields = {"reauth_password": got.get("password", answer.message)}
    replay = [
        (name, _form(handler, name))
        for name in handler.request.body_arguments
        if name not in ("_xsrf", "reauth_password", "reauth_code")
    ]
    handler.render_page(
        "reauth.html",
        why=why,
        action=handler.request.uri,
        replay=replay,
        cancel=cancel,
        needs_code=needs_code,
        error=error,
        fields=fields,
    )
    return False
