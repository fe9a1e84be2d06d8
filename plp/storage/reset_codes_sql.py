"""Reset codes and the session cut-off in SQL, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as _dt

from .base import NotFound
from .reset_codes import ResetCode, ResetCodeStore
from .rows import from_ms, to_ms
from .statements import SQLParts, reads, writes

# Highest-wins, so a late writer cannot move a user's cut-off back. Both databases have
# CASE; SQLite's max() and PostgreSQL's GREATEST() differ, CASE does not.
_LATER = "CASE WHEN sessions_from < ? THEN ? ELSE sessions_from END"


class ResetCodeSQL(SQLParts, ResetCodeStore):
    """`ResetCodeStore` on the SQL layer."""

    @writes
    async def put_reset_code(
        self, user_id: int, code_hash: str, expires_at: _dt.datetime, issued_by: int | None
    ) -> None:
        now = to_ms(_dt.datetime.now(_dt.UTC))
        try:
            # One statement: a second issuer racing this one leaves exactly one code.
            await self._sql.execute(
                "INSERT INTO reset_codes (user_id, code_hash, expires_at, tries, issued_by, "
                "issued_at) VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "code_hash = excluded.code_hash, expires_at = excluded.expires_at, tries = 0, "
                "issued_by = excluded.issued_by, issued_at = excluded.issued_at",
                (user_id, code_hash, to_ms(expires_at), issued_by, now),
            )
        except Exception as exc:
            if self._missing_reference(exc):
                raise NotFound(user_id) from None
            raise

    @reads
    async def get_reset_code(self, user_id: int) -> ResetCode | None:
        row = await self._sql.fetchone(
            "SELECT user_id, code_hash, expires_at, tries, issued_by, issued_at "
            "FROM reset_codes WHERE user_id = ?",
            (user_id,),
        )
        if row is None:
            return None
        return ResetCode(row[0], row[1], from_ms(row[2]), row[3], row[4], from_ms(row[5]))

    @writes
    async def miss_reset_code(self, user_id: int, code_hash: str, max_tries: int) -> int:
        async with self._transaction() as sql:
            changed = await sql.execute(
                "UPDATE reset_codes SET tries = tries + 1 WHERE user_id = ? AND code_hash = ?",
                (user_id, code_hash),
            )
            if not changed:
                return 0
            row = await sql.fetchone("SELECT tries FROM reset_codes WHERE user_id = ?", (user_id,))
            tries = int(row[0]) if row else 0
            if tries >= max_tries:
                await sql.execute("DELETE FROM reset_codes WHERE user_id = ?", (user_id,))
        return tries

    @writes
    async def use_reset_code(
        self,
        user_id: int,
        code_hash: str,
        *,
        now: _dt.datetime,
        max_tries: int,
        password_hash: str,
    ) -> bool:
        moment = to_ms(now)
        async with self._transaction() as sql:
            # The conditional DELETE is the claim: of two requests racing with one code,
            # only one sees a row count of 1 (PostgreSQL locks the row; SQLite the file).
            used = await sql.execute(
                "DELETE FROM reset_codes WHERE user_id = ? AND code_hash = ? "
                "AND expires_at > ? AND tries < ?",
                (user_id, code_hash, moment, max_tries),
            )
            if used != 1:
                return False
            await sql.execute(
                f"UPDATE users SET password_hash = ?, sessions_from = {_LATER} WHERE id = ?",
                (password_hash, moment, moment, user_id),
            )
        return True

    @writes
    async def cut_sessions(self, user_id: int, moment: _dt.datetime) -> None:
        ms = to_ms(moment)
        await self._sql.execute(
            f"UPDATE users SET sessions_from = {_LATER} WHERE id = ?", (ms, ms, user_id)
        )

    @writes
    async def set_password_and_cut_sessions(
        self, user_id: int, password_hash: str, moment: _dt.datetime
    ) -> None:
        ms = to_ms(moment)
        changed = await self._sql.execute(
            f"UPDATE users SET password_hash = ?, sessions_from = {_LATER} WHERE id = ?",
            (password_hash, ms, ms, user_id),
        )
        if changed == 0:
            raise NotFound(user_id)

    @reads
    async def sessions_cut_since(self, since: float) -> list[tuple[int, float]]:
        rows = await self._sql.fetchall(
            "SELECT id, sessions_from FROM users WHERE sessions_from > ? ORDER BY id",
            (int(since * 1000),),
        )
        return [(int(r[0]), r[1] / 1000) for r in rows]

    @reads
    async def latest_sessions_cut(self) -> float:
        row = await self._sql.fetchone("SELECT max(sessions_from) FROM users")
        return (row[0] or 0) / 1000 if row else 0.0
