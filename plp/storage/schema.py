"""The schema, written once: one script per schema version, rendered for each dialect.

A script names its dialect-dependent types as `$placeholders` (`string.Template`), filled from
the dialect's `types`:

- `$id_pk`: an auto-numbered primary key (SQLite `INTEGER PRIMARY KEY AUTOINCREMENT`, which
  never reuses an id; PostgreSQL an identity column);
- `$bigint`: epoch milliseconds and references to ids (SQLite's INTEGER is 64-bit already);
- `$bool` and `$false`: a flag and its default (SQLite has no boolean type).

Both dialects thus store the same columns, constraints and indexes, so a row reads back as
the same record (see rows.py). A script must stay as it was once released: databases made
by it exist. A change is a new script at the end and `SCHEMA_VERSION` (base.py) raised.
How the version is kept and how a script is applied is the dialect's (sqlite.py,
postgres.py). Constraint names matter: the SQL layer maps a unique violation to a domain
error by the constraint (see `UNIQUE_KEYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template

SCRIPTS: tuple[str, ...] = (
    # 1: accounts, channels, messages, the audit log.
    """
    CREATE TABLE users (
        id            $id_pk,
        username      TEXT NOT NULL UNIQUE,
        display_name  TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('student', 'teacher', 'admin')),
        password_hash TEXT NOT NULL,
        disabled      $bool NOT NULL DEFAULT $false,
        created_at    $bigint NOT NULL
    );
    CREATE TABLE channels (
        id          $id_pk,
        name        TEXT NOT NULL,
        name_key    TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        kind        TEXT NOT NULL CHECK (kind IN ('discussion', 'announcement')),
        created_by  $bigint REFERENCES users(id),
        created_at  $bigint NOT NULL
    );
    CREATE TABLE messages (
        id         $id_pk,
        channel_id $bigint NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        author_id  $bigint NOT NULL REFERENCES users(id),
        text       TEXT NOT NULL,
        created_at $bigint NOT NULL
    );
    CREATE INDEX messages_by_channel ON messages (channel_id, id);
    CREATE TABLE audit (
        id       $id_pk,
        at       $bigint NOT NULL,
        event    TEXT NOT NULL,
        user_id  $bigint,
        username TEXT,
        ip       TEXT,
        detail   TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 2: refused requests coalesce into one counted row per tally key (SPEC §9), and the
    # retention pruner deletes by time.
    """
    ALTER TABLE audit ADD COLUMN tally_key TEXT;
    ALTER TABLE audit ADD COLUMN tally_count $bigint;
    CREATE UNIQUE INDEX audit_by_tally_key ON audit (tally_key);
    CREATE INDEX audit_by_at ON audit (at);
    """,
    # 3: passkeys (SPEC §14): public key material per credential, and one random WebAuthn
    # user handle per user (never the username).
    """
    CREATE TABLE passkey_handles (
        user_id $bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        handle  TEXT NOT NULL,
        CONSTRAINT passkey_handles_handle_key UNIQUE (handle)
    );
    CREATE TABLE passkeys (
        id            $id_pk,
        user_id       $bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        credential_id TEXT NOT NULL,
        public_key    TEXT NOT NULL,
        sign_count    $bigint NOT NULL DEFAULT 0,
        transports    TEXT NOT NULL DEFAULT '',
        name          TEXT NOT NULL,
        created_at    $bigint NOT NULL,
        last_used_at  $bigint,
        CONSTRAINT passkeys_credential_id_key UNIQUE (credential_id)
    );
    CREATE INDEX passkeys_by_user ON passkeys (user_id, id);
    """,
)

# The unique columns an insert can collide on, as "table.column", and the domain error each
# one means (raised by sql.py).
USERNAME_KEY = "users.username"
CHANNEL_NAME_KEY = "channels.name_key"
PASSKEY_CREDENTIAL_KEY = "passkeys.credential_id"
UNIQUE_KEYS = (USERNAME_KEY, CHANNEL_NAME_KEY, PASSKEY_CREDENTIAL_KEY)


def render(types: Mapping[str, str]) -> dict[int, str]:
    """The scripts for one dialect, by the schema version each one reaches."""
    return {
        version: Template(script).substitute(types)
        for version, script in enumerate(SCRIPTS, start=1)
    }
