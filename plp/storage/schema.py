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
    # 3: reset codes (SPEC §13), at most one live code per user, stored as a hash; and the
    # time before which a user's sessions are over, which a password reset from the command
    # line writes so that a running server ends those sessions too.
    """
    CREATE TABLE reset_codes (
        user_id    $bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        code_hash  TEXT NOT NULL,
        expires_at $bigint NOT NULL,
        tries      $bigint NOT NULL DEFAULT 0,
        issued_by  $bigint REFERENCES users(id) ON DELETE SET NULL,
        issued_at  $bigint NOT NULL
    );
    ALTER TABLE users ADD COLUMN sessions_from $bigint NOT NULL DEFAULT 0;
    CREATE INDEX users_by_sessions_from ON users (sessions_from);
    """,
    # 4: classes (SPEC §12). A class channel keeps the global `channels.name_key` unique
    # column (SQLite cannot drop it without rebuilding the table) with a scoped key,
    # "<class id>/<name>"; school-wide channels keep the plain lower-cased name, which is what
    # every existing row holds, so existing channels become school-wide unchanged. Join codes
    # are stored upper-cased, so a lookup by code is one indexed query.
    """
    CREATE TABLE classes (
        id          $id_pk,
        name        TEXT NOT NULL,
        name_key    TEXT NOT NULL UNIQUE,
        join_code   TEXT UNIQUE,
        created_by  $bigint REFERENCES users(id),
        created_at  $bigint NOT NULL
    );
    CREATE TABLE class_members (
        class_id   $bigint NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
        user_id    $bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        class_role TEXT NOT NULL CHECK (class_role IN ('teacher', 'student')),
        joined_at  $bigint NOT NULL,
        PRIMARY KEY (class_id, user_id)
    );
    CREATE INDEX class_members_by_user ON class_members (user_id, class_id);
    ALTER TABLE channels ADD COLUMN class_id $bigint REFERENCES classes(id) ON DELETE CASCADE;
    CREATE INDEX channels_by_class ON channels (class_id);
    """,
    # 5: authenticator apps (SPEC §14): one sealed TOTP secret per user, pending until a code
    # confirms it, the last time step accepted (a code is never taken twice), and the
    # recovery codes as SHA-256 hashes, one row each so a use is one DELETE.
    """
    CREATE TABLE totp (
        user_id    $bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        secret     TEXT NOT NULL,
        active     $bool NOT NULL DEFAULT $false,
        last_step  $bigint,
        created_at $bigint NOT NULL
    );
    CREATE TABLE recovery_codes (
        user_id   $bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        PRIMARY KEY (user_id, code_hash)
    );
    """,
    # 6: passkeys (SPEC §14): public key material per credential, and one random WebAuthn
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
CLASS_NAME_KEY = "classes.name_key"
JOIN_CODE_KEY = "classes.join_code"
PASSKEY_CREDENTIAL_KEY = "passkeys.credential_id"
UNIQUE_KEYS = (
    USERNAME_KEY,
    CHANNEL_NAME_KEY,
    CLASS_NAME_KEY,
    JOIN_CODE_KEY,
    PASSKEY_CREDENTIAL_KEY,
)


def render(types: Mapping[str, str]) -> dict[int, str]:
    """The scripts for one dialect, by the schema version each one reaches."""
    return {
        version: Template(script).substitute(types)
        for version, script in enumerate(SCRIPTS, start=1)
    }
