"""`plp create-user --reset --username U`: a new password from the command line (SPEC §13).

It works whether or not a server runs. The password and the user's `sessions_from` cut-off
are written in one transaction; every server reading that user then refuses the older
sessions (plp/auth/cutoff.py), whichever session backend it uses. With `session-backend
redis` the sessions are also ended in Redis at once, whose end notices close their chat
sockets in every process, and the account's sign-in back-off there is cleared.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import logging
import sys
import time
from collections.abc import Callable

from .auth.accounts import normalize_username
from .auth.passwords import hash_password, password_problem
from .config import ConfigError, Settings
from .sessions.base import END_PASSWORD, SessionStoreUnavailable
from .storage import open_database
from .storage.base import User

log = logging.getLogger(__name__)

EXIT_NO_USER = 1


def reset_password_command(
    settings: Settings, args: argparse.Namespace, read_password: Callable[[], str]
) -> int:
    """Set a user's password and end their sessions; 1 if there is no such user."""
    if args.role is not None:
        raise ConfigError("--role cannot be used with --reset (the role stays as it is)")
    if args.display_name is not None:
        raise ConfigError("--display-name cannot be used with --reset")
    if not args.username:
        raise ConfigError("create-user --reset needs --username")
    name = normalize_username(args.username)
    password = read_password()
    problem = password_problem(password, name)
    if problem:
        raise ConfigError(f"password: {problem}")
    return asyncio.run(_reset(settings, name, hash_password(password, settings.bcrypt_rounds)))


async def _reset(settings: Settings, name: str, secret: str) -> int:
    db = open_database(settings.db_url)
    try:
        await db.migrate()
        found = await db.get_credentials(name)
        if found is None:
            print(f"plp: error: there is no user {name!r}", file=sys.stderr)
            return EXIT_NO_USER
        user = found[0]
        moment = _dt.datetime.fromtimestamp(time.time(), _dt.UTC)
        await db.set_password_and_cut_sessions(user.id, secret, moment)
        ended = await _end_shared_sessions(settings, user)
        await db.add_audit(
            "password_reset",
            user_id=user.id,
            username=user.username,
            ip=None,
            detail={"by": "create-user", "sessions": ended},
        )
    finally:
        await db.close()
    print(f"new password set for {user.username!r} (id {user.id}); their sessions are ended")
    return 0


async def _end_shared_sessions(settings: Settings, user: User) -> int | None:
    """End the user's sessions in Redis and clear their back-off; None with memory sessions
    (the server's memory is out of reach: it honours the cut-off instead)."""
    if settings.session_backend != "redis":
        return None
    from .redis.sessions import RedisSessionStore
    from .redis.throttle import RedisThrottle

    store = RedisSessionStore(
        settings.redis_url,
        idle_timeout=settings.session_idle_timeout,
        max_age=settings.session_max_age,
        per_user=settings.sessions_per_user,
    )
    throttle = RedisThrottle(
        settings.redis_url,
        account_limit=settings.login_failures_per_account,
        address_limit=settings.login_failures_per_address,
        registration_limit=settings.registrations_per_address,
    )
    try:
        ended = await store.end_all_for_user(user.id, END_PASSWORD)
        await throttle.login_succeeded(user.username)
    except SessionStoreUnavailable as exc:
        # The cut-off is written: each server still refuses the old sessions by itself.
        print(
            f"plp: warning: could not reach Redis ({exc}); servers end the sessions by the "
            "cut-off instead",
            file=sys.stderr,
        )
        return None
    finally:
        await store.close()
        await throttle.close()
    return ended
