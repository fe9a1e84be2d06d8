"""Command line: `plp [serve]`, `plp create-user`, `plp check`, each with its own `--help`.

One argparse parser with a sub-command each; with none, plp serves (`plp --port 9000`). Every
setting is a flag of every command. Flags keep their raw text: `config.from_env` checks
them together with the PLP_ variables. A mistake is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import (
    OPTIONS,
    SECRET_VARIABLES,
    ConfigError,
    Settings,
    describe,
    ensure_secret,
    from_env,
    password_from_env,
)
from .storage.base import CannotOpen, DatabaseCorrupted, StorageUnavailable

EXIT_USAGE = 2
ROLES = ("student", "teacher", "admin")
USAGE = """%(prog)s [serve] [--setting value ...]
       %(prog)s create-user --username U --role student|teacher|admin [--display-name N]
       %(prog)s create-user --reset --username U
       %(prog)s check [--setting value ...]"""
SETTINGS_TITLE = "settings (each is a --flag or its PLP_ environment variable; a flag wins)"
SECRETS_HELP = "secrets come from the environment only: " + ", ".join(SECRET_VARIABLES)
PASSWORD_HELP = "The password comes from PLP_PASSWORD, or is asked twice on the terminal."

# argparse's wording -> plp's: one line that names the flag or value (SPEC §1).
_REWORDED = (
    (r"argument (?P<flag>\S+): expected one argument", "{flag} needs a value"),
    (
        r"argument (?P<flag>\S+): ignored explicit argument .*",
        "{flag} is a switch and takes no value",
    ),
    (
        r"argument command: invalid choice: (?P<value>.+?) \(choose from (?P<allowed>.*)\)",
        "unknown command {value} (expected {allowed})",
    ),
    (
        r"argument (?P<flag>\S+): invalid choice: (?P<value>.+?) \(choose from (?P<allowed>.*)\)",
        "invalid value {value} for {flag}: must be one of {allowed}",
    ),
    (r"the following arguments are required: (?P<flags>.*)", "{command} needs {flags}"),
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes raise ConfigError instead of printing usage and exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--port` must never quietly stand for a longer option.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise argparse's complaint, reworded as plp's one line."""
        for pattern, wording in _REWORDED:
            match = re.fullmatch(pattern, message)
            if match:
                parts = {k: v.replace("'", "") for k, v in match.groupdict().items()}
                parts["value"] = match.groupdict().get("value", "")  # keeps its quotes
                message = wording.format(command=self.prog.split()[-1], **parts)
                break
        raise ConfigError(" ".join(message.split()))


class _RefuseSecret(argparse.Action):
    """A secret given as a flag: refused without echoing it (it would sit in `ps` and history)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> NoReturn:
        raise ConfigError(
            f"{option} is not accepted: secrets come from the environment "
            f"({self.dest.upper()}), never from the command line"
        )


def add_settings(parser: argparse.ArgumentParser) -> None:
    """Every setting as a `--flag` keeping its raw text; secret flags are refused."""
    group = parser.add_argument_group(SETTINGS_TITLE)
    for name, (_parse, switch, _text) in OPTIONS.items():
        metavar, text = describe(name)
        kind: dict[str, Any] = {"action": "store_true"} if switch else {"metavar": metavar}
        # dest is the option name; SUPPRESS: only flags given appear, so a variable can apply.
        group.add_argument(
            f"--{name}", dest=name, default=argparse.SUPPRESS, help=text.replace("%", "%%"), **kind
        )
    for variable in SECRET_VARIABLES:
        parser.add_argument(
            "--" + variable.lower().replace("_", "-"),
            nargs="?",
            action=_RefuseSecret,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


def settings_parser(**kwargs: Any) -> Parser:
    """A parser holding only the settings."""
    parser = Parser(add_help=False, **kwargs)
    add_settings(parser)
    return parser


def refuse_extra(extra: Sequence[str]) -> None:
    """ConfigError naming the first argument no parser took (an unknown option, a stray word)."""
    if not extra:
        return
    arg = extra[0]
    if arg.startswith("--") and arg != "--":
        # Only the name: the value of a mistyped secret flag must not be echoed.
        raise ConfigError(f"unknown option {arg.partition('=')[0]}")
    raise ConfigError(f"unexpected argument {arg!r}")


def options_from(namespace: argparse.Namespace) -> dict[str, str | bool]:
    """The settings given as flags, by option name (what `config.from_env` takes)."""
    return {name: value for name, value in vars(namespace).items() if name in OPTIONS}


def parse_options(argv: Sequence[str]) -> dict[str, str | bool]:
    """Read `--name value`, `--name=value` and switches; raise ConfigError on anything else."""
    namespace, extra = settings_parser(prog="plp").parse_known_args(list(argv))
    refuse_extra(extra)
    return options_from(namespace)


def options_help() -> str:
    """The settings part of `--help`: each flag with its default and its PLP_ variable."""
    return settings_parser(prog="plp", usage=argparse.SUPPRESS, epilog=SECRETS_HELP).format_help()


def build_parser() -> Parser:
    """`plp` and its commands; each command's `--help` shows its own options and the settings."""
    parser = Parser(
        prog="plp",
        usage=USAGE,
        description="The plp server. With no command, plp serves.",
        epilog=f"{SECRETS_HELP}\n`plp COMMAND --help` shows one command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"plp {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", prog="plp")
    serve = commands.add_parser(
        "serve",
        usage="%(prog)s [--setting value ...]",
        help="run the server (the default)",
        description="Run the server until SIGTERM or SIGINT.",
        epilog=SECRETS_HELP,
    )
    create = commands.add_parser(
        "create-user",
        usage="%(prog)s --username U --role student|teacher|admin [--display-name N]\n"
        "       %(prog)s --reset --username U",
        help="create an account, or set a new password (with or without a running server)",
        description="Create an account in the database, or with --reset set a new password for "
        "an existing one and end its sessions. " + PASSWORD_HELP,
        epilog=SECRETS_HELP,
    )
    account = create.add_argument_group("account")
    # Not `required`: which are needed depends on --reset (checked in create_user_command).
    account.add_argument("--username", metavar="U", help="the sign-in name")
    account.add_argument(
        "--role", choices=ROLES, metavar="|".join(ROLES), help="the account's role"
    )
    account.add_argument(
        "--reset",
        action="store_true",
        help="set a new password for an existing user and end their sessions (no --role)",
    )
    account.add_argument("--display-name", metavar="N", help="the shown name [the username]")
    check = commands.add_parser(
        "check",
        usage="%(prog)s [--setting value ...]",
        help="audit the settings for risks (exit 1 on an error in production)",
        description="Print each risky setting: an ERROR in production, else a WARNING.",
        epilog=SECRETS_HELP,
    )
    # Settings last, so --help shows the command's own options first. On `plp` itself they are
    # for --help only: arguments that start with a flag go to serve (see _with_command).
    for each in (parser, serve, create, check):
        add_settings(each)
    return parser


def _with_command(args: list[str]) -> list[str]:
    """`plp --port 9000` is `plp serve --port 9000`: serve is the default command."""
    if args and (not args[0].startswith("-") or args[0] in ("-h", "--help", "--version")):
        return args
    return ["serve", *args]


def _fail(message: str) -> int:
    print(f"plp: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `plp`, `python -m plp` and `python run.py`."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            namespace, extra = build_parser().parse_known_args(_with_command(args))
        except SystemExit as done:  # --help or --version has printed its answer
            return int(done.code or 0)
        refuse_extra(extra)
        settings = from_env(options_from(namespace))
        return COMMANDS[namespace.command](settings, namespace)
    except ConfigError as exc:
        return _fail(str(exc))
    except (DatabaseCorrupted, StorageUnavailable) as exc:
        return _fail(str(exc))  # the message already says what to do
    except CannotOpen as exc:
        return _fail(f"{exc} (check --db / PLP_DB and --data-dir / PLP_DATA_DIR)")


def serve_command(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the server (the secret is made or checked first: production refuses a weak one)."""
    from .server import run_server

    return run_server(ensure_secret(settings))


def check_command(settings: Settings, _args: argparse.Namespace) -> int:
    """Audit the settings (SPEC §10)."""
    from .checks import run_checks

    return run_checks(settings)


def _read_password() -> str:
    given = password_from_env()
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise ConfigError("no password: set PLP_PASSWORD or run on a terminal")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        raise ConfigError("the two passwords do not match")
    return first


def create_user_command(settings: Settings, args: argparse.Namespace) -> int:
    """Create a user directly in the database (works with or without a running server)."""
    # Like the server: a database file created here must not be readable by others.
    os.umask(0o077)
    if args.reset:
        from .reset_cli import reset_password_command

        return reset_password_command(settings, args, _read_password)
    missing = [
        flag for flag, value in (("--username", args.username), ("--role", args.role)) if not value
    ]
    if missing:
        raise ConfigError("create-user needs " + ", ".join(missing))
    role: str = args.role
    from .auth.accounts import validate_new_account
    from .auth.passwords import hash_password
    from .errors import InvalidInput
    from .storage import open_database
    from .storage.base import UsernameTaken

    password = _read_password()
    try:
        name, secret, shown = validate_new_account(args.username, password, args.display_name)
    except InvalidInput as exc:
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


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": serve_command,
    "create-user": create_user_command,
    "check": check_command,
}
