"""What every part of the SQL layer shares: statements, error mapping, the connection's rules.

`SQLDatabase` (sql.py) is built from parts: the core records in sql.py and one mixin per
feature (a `*_sql.py` module beside it), each a subclass of `SQLParts`. A part writes its
statements with `?` placeholders against `self._sql` (each statement its own transaction) or
`self._transaction()` (several in one), and marks each method `@reads` or `@writes` so the
database's driver errors become domain errors (StorageUnavailable, UnstorableValue).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Concatenate, ParamSpec, Protocol, TypeVar

from .schema import render

Row = Sequence[Any]
Params = Sequence[Any]


@dataclass(frozen=True, eq=False)
class Dialect:
    """What differs in the SQL text between two databases."""

    name: str
    # The schema's type placeholders (see schema.py).
    types: Mapping[str, str]
    # DB-API paramstyle: "qmark" (`?`, as written here) or "format" (`%s`).
    paramstyle: str = "qmark"
    # False where text columns cannot hold NUL (PostgreSQL).
    text_holds_nul: bool = True
    _converted: dict[str, str] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def migrations(self) -> dict[int, str]:
        """The schema scripts rendered for this dialect, by the version each one reaches."""
        return render(self.types)

    def sql(self, text: str) -> str:
        """`text`, written with `?` placeholders, in this dialect's paramstyle.

        The statements here hold no `?` or `%` inside literals, so a plain replace is exact.
        """
        if self.paramstyle == "qmark":
            return text
        converted = self._converted.get(text)
        if converted is None:
            converted = self._converted[text] = text.replace("?", "%s")
        return converted

    def audit_text(self, value: str | None) -> str | None:
        """Client-given text for an audit column: an audit row records what was sent, so a
        NUL the database cannot hold is replaced rather than refused."""
        if value and not self.text_holds_nul:
            return value.replace("\x00", "\ufffd")
        return value


class Statements(Protocol):
    """Statements on a connection: each its own transaction, or all in the caller's."""

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; how many rows it changed."""
        ...

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT of one row; the new row's id."""
        ...


D = TypeVar("D", bound="SQLParts")
P = ParamSpec("P")
R = TypeVar("R")
Method = Callable[Concatenate[D, P], Awaitable[R]]


def _mapped(action: str) -> Callable[[Method[D, P, R]], Method[D, P, R]]:
    """Let the database turn its driver's errors during a `read` or `write` into ours."""

    def decorate(method: Method[D, P, R]) -> Method[D, P, R]:
        @functools.wraps(method)
        async def wrapper(self: D, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(self, *args, **kwargs)
            except Exception as exc:
                mapped = self._fault(exc, action)
                if mapped is None:
                    raise
                raise mapped from exc

        return wrapper

    return decorate


reads = _mapped("read")
writes = _mapped("write")


class SQLParts(abc.ABC):
    """The connection and error rules a SQL database brings; every part of the layer uses them."""

    dialect: ClassVar[Dialect]
    # Statements that each commit on their own.
    _sql: Statements

    @abc.abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Statements]:
        """Statements in one transaction: committed when the block ends, else rolled back."""

    @abc.abstractmethod
    def _fault(self, exc: Exception, action: str) -> Exception | None:
        """The error to raise instead of `exc`, met during a `read` or `write`; None to let
        it through. Faults of the storage become StorageUnavailable, values the database
        cannot hold UnstorableValue."""

    @abc.abstractmethod
    def _unique_key(self, exc: Exception) -> str | None:
        """The unique column ("table.column", schema.UNIQUE_KEYS) `exc` says a write hit."""

    @abc.abstractmethod
    def _missing_reference(self, exc: Exception) -> bool:
        """Whether `exc` says a written row refers to a row that does not exist."""
