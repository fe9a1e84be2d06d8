"""`TotpSQL`: the authenticator-app records (plp/storage/totp.py) on SQLite and PostgreSQL."""

from __future__ import annotations

from .base import utcnow
from .rows import to_ms
from .statements import SQLParts, reads, writes
from .totp import TotpRecord, TotpStore

TOTP_COLS = "user_id, secret, active, last_step"


class TotpSQL(SQLParts, TotpStore):
    """TOTP secrets and recovery codes; every single-use rule is one conditional statement."""

    @reads
    async def get_totp(self, user_id: int) -> TotpRecord | None:
        row = await self._sql.fetchone(
            f"SELECT {TOTP_COLS} FROM totp WHERE user_id = ?", (user_id,)
        )
        if row is None:
            return None
        return TotpRecord(row[0], row[1], bool(row[2]), row[3])

    @writes
    async def start_totp(self, user_id: int, sealed_secret: str) -> bool:
        # The WHERE of the upsert keeps an active secret: the row is then left as it was.
        changed = await self._sql.execute(
            "INSERT INTO totp (user_id, secret, active, last_step, created_at) "
            "VALUES (?, ?, ?, NULL, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "secret = excluded.secret, last_step = NULL, created_at = excluded.created_at "
            "WHERE totp.active = ?",
            (user_id, sealed_secret, False, to_ms(utcnow()), False),
        )
        return changed > 0

    @writes
    async def activate_totp(self, user_id: int, step: int, recovery_hashes: list[str]) -> bool:
        async with self._transaction() as sql:
            changed = await sql.execute(
                "UPDATE totp SET active = ?, last_step = ? WHERE user_id = ? AND active = ?",
                (True, step, user_id, False),
            )
            if not changed:
                return False
            await sql.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
            for code_hash in recovery_hashes:
                await sql.execute(
                    "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                    (user_id, code_hash),
                )
        return True

    @writes
    async def use_totp_step(self, user_id: int, step: int) -> bool:
        # Compare-and-set in one statement: of two concurrent uses of a step (on one process
        # or several sharing PostgreSQL, whose UPDATE re-checks the WHERE after waiting for
        # the row lock) exactly one changes the row.
        changed = await self._sql.execute(
            "UPDATE totp SET last_step = ? WHERE user_id = ? AND active = ? "
            "AND (last_step IS NULL OR last_step < ?)",
            (step, user_id, True, step),
        )
        return changed > 0

    @writes
    async def reseal_totp(self, user_id: int, old: str, new: str) -> bool:
        changed = await self._sql.execute(
            "UPDATE totp SET secret = ? WHERE user_id = ? AND secret = ?", (new, user_id, old)
        )
        return changed > 0

    @writes
    async def use_recovery_code(self, user_id: int, code_hash: str) -> bool:
        changed = await self._sql.execute(
            "DELETE FROM recovery_codes WHERE user_id = ? AND code_hash = ?", (user_id, code_hash)
        )
        return changed > 0

    @reads
    async def count_recovery_codes(self, user_id: int) -> int:
        row = await self._sql.fetchone(
            "SELECT count(*) FROM recovery_codes WHERE user_id = ?", (user_id,)
        )
        return int(row[0]) if row else 0

    @writes
    async def delete_totp(self, user_id: int) -> bool:
        async with self._transaction() as sql:
            await sql.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
            changed = await sql.execute("DELETE FROM totp WHERE user_id = ?", (user_id,))
        return changed > 0
