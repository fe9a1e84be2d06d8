"""Command line: `plp [serve]`, `plp create-user`, `plp check`; exit 2 on bad input."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

from .config import ConfigError, Settings, ensure_secret, from_env, options_help, parse_options
from .storage.base import CannotOpen, DatabaseCorrupted, StorageUnavailable

USAGE = """usage: plp [serve] [--setting value ...]
       plp create-user --username U --role student|teacher|admin [--display-name N]
       plp check [--setting value ...]

The password for create-user comes from PLP_PASSWORD, or is asked twice on the terminal.
"""

EXIT_USAGE = 2


def _fail(message: str) -> int:
    print(f"plp: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _split_command(argv: list[str]) -> tuple[str, list[str]]:
    if argv and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    return "serve", argv


def _take(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """Remove `--name value` / `--name=value` from args (subcommand-only options)."""
    rest: list[str] = []
    value: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == f"--{name}":
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError(f"--{name} needs a value")
            value = args[i + 1]
            i += 2
            continue
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def load_settings(args: Sequence[str]) -> Settings:
    """Settings from flags and environment (no secret handling)."""
    return from_env(parse_options(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `plp`, `python -m plp` and `python run.py`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(USAGE + "\n" + options_help())
        return 0
    command, rest = _split_command(args)
    try:
        if command == "serve":
            settings = ensure_secret(load_settings(rest))
            from .server import run_server

            return run_server(settings)
        if command == "create-user":
            return create_user_command(rest)
        if command == "check":
            from .checks import run_checks

            return run_checks(load_settings(rest))
    except ConfigError as exc:
        return _fail(str(exc))
    except (DatabaseCorrupted, StorageUnavailable) as exc:
        return _fail(str(exc))  # the message already says what to do
    except CannotOpen as exc:
        return _fail(f"{exc} (check --db / PLP_DB and --data-dir / PLP_DATA_DIR)")
    return _fail(f"unknown command {command!r} (expected serve, create-user or check)")


def _read_password() -> str:
    from_env = os.environ.get("PLP_PASSWORD")
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise ConfigError("no password: set PLP_PASSWORD or run on a terminal")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        raise ConfigError("the two passwords do not match")
    return first


def create_user_command(args: list[str]) -> int:
    """Create a user directly in the database (works with or without a running server)."""
    # Like the server: a database file created here must not be readable by others.
    os.umask(0o077)
    username, args = _take(args, "username")
    role, args = _take(args, "role")
    display_name, args = _take(args, "display-name")
    if not username:
        raise ConfigError("create-user needs --username")
    if role not in ("student", "teacher", "admin"):
        raise ConfigError("create-user needs --role student, teacher or admin")
    settings = load_settings(args)
    from .auth.passwords import hash_password
    from .auth.service import validate_new_account
    from .errors import ApiError
    from .storage import open_database
    from .storage.base import UsernameTaken

    password = _read_password()
    try:
        name, secret, shown = validate_new_account(username, password, display_name)
    except ApiError as exc:
        problems = "; ".join(f"{k}: {v}" for k, v in (exc.fields or {}).items())
        raise ConfigError(problems or exc.message) from None

    async def create() -> int:
        db = open_database(settings.db_url)
        try:
            await db.migrate()
            user = await db.create_user(
                name, shown, role, hash_password(secret, settings.bcrypt_rounds)
            )
            await db.add_audit(
                "registered",
                user_id=user.id,
                username=user.username,
                ip=None,
                detail={"role": role, "by": "create-user"},
            )
        except UsernameTaken:
            raise ConfigError(f"username {name!r} is taken") from None
        finally:
            await db.close()
        print(f"created {role} {user.username!r} (id {user.id})")
        return 0

    return asyncio.run(create())
