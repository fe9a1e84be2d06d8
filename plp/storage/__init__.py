"""Storage backends behind the `Store` interface; `open_database` picks one by URL."""

from __future__ import annotations

from .store import Store


def open_database(url: str) -> Store:
    """A SQLite database for a file path, PostgreSQL for a postgresql:// URL (not migrated)."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresDatabase

        return PostgresDatabase(url)
    from .sqlite import SQLiteDatabase

    return SQLiteDatabase(url)
