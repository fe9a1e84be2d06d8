"""The SQL part for passkeys (`PasskeyStore`), for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import utcnow
from .passkeys import Passkey, PasskeyStore, PasskeyTaken
from .rows import from_ms, to_ms
from .schema import PASSKEY_CREDENTIAL_KEY
from .statements import SQLParts, reads, writes

PASSKEY_COLS = (
    "id, user_id, credential_id, public_key, sign_count, transports, name, created_at, last_used_at"
)


def passkey_from_row(row: Sequence[Any]) -> Passkey:
    """A Passkey from a row in PASSKEY_COLS order (transports are stored comma-joined)."""
    return Passkey(
        id=row[0],
        user_id=row[1],
        credential_id=row[2],
        public_key=row[3],
        sign_count=row[4],
        transports=tuple(t for t in row[5].split(",") if t),
        name=row[6],
        created_at=from_ms(row[7]),
        last_used_at=from_ms(row[8]) if row[8] is not None else None,
    )


class PasskeySQL(SQLParts, PasskeyStore):
    """Passkeys and user handles in the `passkeys` and `passkey_handles` tables."""

    @writes
    async def passkey_handle(self, user_id: int, candidate: str) -> str:
        async with self._transaction() as sql:
            await sql.execute(
                "INSERT INTO passkey_handles (user_id, handle) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO NOTHING",
                (user_id, candidate),
            )
            row = await sql.fetchone(
                "SELECT handle FROM passkey_handles WHERE user_id = ?", (user_id,)
            )
        return row[0]

    @writes
    async def add_passkey(
        self,
        user_id: int,
        *,
        credential_id: str,
        public_key: str,
        sign_count: int,
        transports: tuple[str, ...],
        name: str,
    ) -> Passkey:
        created = utcnow()
        try:
            passkey_id = await self._sql.insert(
                "INSERT INTO passkeys (user_id, credential_id, public_key, sign_count, "
                "transports, name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    credential_id,
                    public_key,
                    sign_count,
                    ",".join(transports),
                    name,
                    to_ms(created),
                ),
            )
        except Exception as exc:
            if self._unique_key(exc) == PASSKEY_CREDENTIAL_KEY:
                raise PasskeyTaken(credential_id) from None
            raise
        return Passkey(
            passkey_id, user_id, credential_id, public_key, sign_count, transports, name,
            from_ms(to_ms(created)), None,
        )  # fmt: skip

    @reads
    async def list_passkeys(self, user_id: int) -> list[Passkey]:
        rows = await self._sql.fetchall(
            f"SELECT {PASSKEY_COLS} FROM passkeys WHERE user_id = ? ORDER BY id", (user_id,)
        )
        return [passkey_from_row(r) for r in rows]

    @reads
    async def get_passkey(self, user_id: int, passkey_id: int) -> Passkey | None:
        row = await self._sql.fetchone(
            f"SELECT {PASSKEY_COLS} FROM passkeys WHERE id = ? AND user_id = ?",
            (passkey_id, user_id),
        )
        return passkey_from_row(row) if row else None

    @reads
    async def find_passkey(self, credential_id: str) -> tuple[Passkey, str] | None:
        row = await self._sql.fetchone(
            f"SELECT {PASSKEY_COLS}, (SELECT handle FROM passkey_handles h "
            "WHERE h.user_id = passkeys.user_id) FROM passkeys WHERE credential_id = ?",
            (credential_id,),
        )
        return (passkey_from_row(row), row[9] or "") if row else None

    @writes
    async def rename_passkey(self, user_id: int, passkey_id: int, name: str) -> Passkey | None:
        async with self._transaction() as sql:
            await sql.execute(
                "UPDATE passkeys SET name = ? WHERE id = ? AND user_id = ?",
                (name, passkey_id, user_id),
            )
            row = await sql.fetchone(
                f"SELECT {PASSKEY_COLS} FROM passkeys WHERE id = ? AND user_id = ?",
                (passkey_id, user_id),
            )
        return passkey_from_row(row) if row else None

    @writes
    async def delete_passkey(self, user_id: int, passkey_id: int) -> bool:
        changed = await self._sql.execute(
            "DELETE FROM passkeys WHERE id = ? AND user_id = ?", (passkey_id, user_id)
        )
        return changed > 0

    @reads
    async def count_passkeys(self, user_id: int) -> int:
        row = await self._sql.fetchone(
            "SELECT COUNT(*) FROM passkeys WHERE user_id = ?", (user_id,)
        )
        return int(row[0]) if row else 0

    @writes
    async def record_passkey_use(self, passkey_id: int, old_count: int, new_count: int) -> bool:
        changed = await self._sql.execute(
            "UPDATE passkeys SET sign_count = ?, last_used_at = ? WHERE id = ? AND sign_count = ?",
            (new_count, to_ms(utcnow()), passkey_id, old_count),
        )
        return changed > 0
