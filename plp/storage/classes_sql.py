"""`ClassSQL`: the classes part of the SQL layer (plp/storage/classes.py), both dialects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Channel, NotFound, utcnow
from .classes import ClassMember, ClassNameTaken, ClassStore, JoinCodeTaken, SchoolClass
from .rows import CHANNEL_COLS, USER_COLS, channel_from_row, from_ms, to_ms, user_from_row
from .schema import CLASS_NAME_KEY, JOIN_CODE_KEY
from .statements import SQLParts, Statements, reads, writes

# A class with its member count, in the order `_class_from_row` reads.
CLASS_SELECT = (
    "SELECT c.id, c.name, c.join_code, c.created_by, c.created_at, "
    "(SELECT count(*) FROM class_members m WHERE m.class_id = c.id) FROM classes c"
)
MEMBER_COLS = ", ".join(f"u.{col}" for col in USER_COLS.split(", "))


def class_key(name: str) -> str:
    """The stored unique key of a class name: names differing only in case collide."""
    return name.casefold()


def _class_from_row(row: Sequence[Any]) -> SchoolClass:
    return SchoolClass(
        id=row[0],
        name=row[1],
        join_code=row[2],
        created_by=row[3],
        created_at=from_ms(row[4]),
        member_count=int(row[5]),
    )


class ClassSQL(SQLParts, ClassStore):
    """Classes and memberships in SQL; every method one statement or one transaction."""

    def _taken(self, exc: Exception, name: str) -> Exception | None:
        key = self._unique_key(exc)
        if key == CLASS_NAME_KEY:
            return ClassNameTaken(name)
        if key == JOIN_CODE_KEY:
            return JoinCodeTaken()
        return None

    @writes
    async def create_class(self, name: str, creator_id: int, join_code: str) -> SchoolClass:
        now = to_ms(utcnow())
        try:
            async with self._transaction() as sql:
                class_id = await sql.insert(
                    "INSERT INTO classes (name, name_key, join_code, created_by, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, class_key(name), join_code, creator_id, now),
                )
                await sql.execute(
                    "INSERT INTO class_members (class_id, user_id, class_role, joined_at) "
                    "VALUES (?, ?, 'teacher', ?)",
                    (class_id, creator_id, now),
                )
                row = await sql.fetchone(CLASS_SELECT + " WHERE c.id = ?", (class_id,))
        except Exception as exc:
            mapped = self._taken(exc, name)
            if mapped is not None:
                raise mapped from None
            if self._missing_reference(exc):
                raise NotFound(creator_id) from None
            raise
        assert row is not None
        return _class_from_row(row)

    @reads
    async def get_class(self, class_id: int) -> SchoolClass | None:
        row = await self._sql.fetchone(CLASS_SELECT + " WHERE c.id = ?", (class_id,))
        return _class_from_row(row) if row else None

    @reads
    async def list_classes(self) -> list[SchoolClass]:
        rows = await self._sql.fetchall(CLASS_SELECT + " ORDER BY c.name_key, c.id")
        return [_class_from_row(r) for r in rows]

    @reads
    async def classes_of(self, user_id: int) -> list[tuple[SchoolClass, str]]:
        rows = await self._sql.fetchall(
            CLASS_SELECT.replace(" FROM classes c", ", my.class_role FROM classes c")
            + " JOIN class_members my ON my.class_id = c.id AND my.user_id = ?"
            " ORDER BY c.name_key, c.id",
            (user_id,),
        )
        return [(_class_from_row(r), r[6]) for r in rows]

    @writes
    async def rename_class(self, class_id: int, name: str) -> SchoolClass:
        try:
            async with self._transaction() as sql:
                await sql.execute(
                    "UPDATE classes SET name = ?, name_key = ? WHERE id = ?",
                    (name, class_key(name), class_id),
                )
                row = await sql.fetchone(CLASS_SELECT + " WHERE c.id = ?", (class_id,))
        except Exception as exc:
            mapped = self._taken(exc, name)
            if mapped is not None:
                raise mapped from None
            raise
        if row is None:
            raise NotFound(class_id)
        return _class_from_row(row)

    @writes
    async def delete_class(self, class_id: int) -> list[int] | None:
        async with self._transaction() as sql:
            channels = await self._channel_ids(sql, class_id)
            # Channels (and by cascade their messages) and members go with the class.
            deleted = await sql.execute("DELETE FROM classes WHERE id = ?", (class_id,))
        return channels if deleted else None

    @writes
    async def set_join_code(self, class_id: int, code: str | None) -> bool:
        try:
            changed = await self._sql.execute(
                "UPDATE classes SET join_code = ? WHERE id = ?", (code, class_id)
            )
        except Exception as exc:
            if self._unique_key(exc) == JOIN_CODE_KEY:
                raise JoinCodeTaken() from None
            raise
        return changed > 0

    @reads
    async def class_by_code(self, code: str) -> SchoolClass | None:
        row = await self._sql.fetchone(CLASS_SELECT + " WHERE c.join_code = ?", (code,))
        return _class_from_row(row) if row else None

    @reads
    async def class_role(self, class_id: int, user_id: int) -> str | None:
        row = await self._sql.fetchone(
            "SELECT class_role FROM class_members WHERE class_id = ? AND user_id = ?",
            (class_id, user_id),
        )
        return row[0] if row else None

    @writes
    async def add_member(self, class_id: int, user_id: int, class_role: str) -> str | None:
        try:
            async with self._transaction() as sql:
                row = await sql.fetchone(
                    "SELECT class_role FROM class_members WHERE class_id = ? AND user_id = ?",
                    (class_id, user_id),
                )
                if row is None:
                    await sql.execute(
                        "INSERT INTO class_members (class_id, user_id, class_role, joined_at) "
                        "VALUES (?, ?, ?, ?)",
                        (class_id, user_id, class_role, to_ms(utcnow())),
                    )
                else:
                    await sql.execute(
                        "UPDATE class_members SET class_role = ? "
                        "WHERE class_id = ? AND user_id = ?",
                        (class_role, class_id, user_id),
                    )
        except Exception as exc:
            if self._missing_reference(exc):
                raise NotFound(class_id) from None
            raise
        return row[0] if row else None

    @writes
    async def join_class(self, class_id: int, user_id: int) -> bool:
        try:
            added = await self._sql.execute(
                "INSERT INTO class_members (class_id, user_id, class_role, joined_at) "
                "VALUES (?, ?, 'student', ?) ON CONFLICT (class_id, user_id) DO NOTHING",
                (class_id, user_id, to_ms(utcnow())),
            )
        except Exception as exc:
            if self._missing_reference(exc):
                raise NotFound(class_id) from None
            raise
        return added > 0

    @writes
    async def remove_member(self, class_id: int, user_id: int) -> bool:
        removed = await self._sql.execute(
            "DELETE FROM class_members WHERE class_id = ? AND user_id = ?", (class_id, user_id)
        )
        return removed > 0

    @reads
    async def list_members(self, class_id: int) -> list[ClassMember]:
        rows = await self._sql.fetchall(
            f"SELECT {MEMBER_COLS}, m.class_role FROM class_members m "
            "JOIN users u ON u.id = m.user_id WHERE m.class_id = ? "
            "ORDER BY CASE m.class_role WHEN 'teacher' THEN 0 ELSE 1 END, u.username",
            (class_id,),
        )
        return [ClassMember(user_from_row(r), r[-1]) for r in rows]

    @reads
    async def class_channel_ids(self, class_id: int) -> list[int]:
        return await self._channel_ids(self._sql, class_id)

    @staticmethod
    async def _channel_ids(sql: Statements, class_id: int) -> list[int]:
        rows = await sql.fetchall(
            "SELECT id FROM channels WHERE class_id = ? ORDER BY id", (class_id,)
        )
        return [r[0] for r in rows]

    @reads
    async def channels_for(self, user_id: int) -> list[Channel]:
        rows = await self._sql.fetchall(
            f"SELECT {CHANNEL_COLS} FROM channels WHERE class_id IS NULL OR class_id IN "
            "(SELECT class_id FROM class_members WHERE user_id = ?) ORDER BY id",
            (user_id,),
        )
        return [channel_from_row(r) for r in rows]

    @reads
    async def teaches_student(self, teacher_id: int, student_id: int) -> bool:
        row = await self._sql.fetchone(
            "SELECT 1 FROM class_members t JOIN class_members s ON s.class_id = t.class_id "
            "WHERE t.user_id = ? AND t.class_role = 'teacher' "
            "AND s.user_id = ? AND s.class_role = 'student' LIMIT 1",
            (teacher_id, student_id),
        )
        return row is not None
