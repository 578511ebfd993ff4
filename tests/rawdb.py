"""Straight SQL on a store's database, on either backend, for ground-truth assertions and for
faults a test injects behind the store's back.

Statements use `?` marks on both backends (they become `%s` for psycopg) and portable SQL:
booleans are bound as Python bools, JSON documents come back as bytes or text (both load).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from ownstream.store.base import Store
from ownstream.store.postgres import PostgresStore
from ownstream.store.sqlite import SQLiteStore


class RawDb:
    def __init__(self, store: Store) -> None:
        self.backend = store.capabilities.backend
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: psycopg.Connection[Any] | None = None
        if isinstance(store, PostgresStore):
            self._postgres = psycopg.connect(store.url, autocommit=True)
        else:
            assert isinstance(store, SQLiteStore)
            self._sqlite = sqlite3.connect(store.path, isolation_level=None)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A cursor over the statement's rows (`fetchone`, `fetchall`, iteration)."""
        if self._postgres is not None:
            return self._postgres.execute(sql.replace("?", "%s"), params)
        assert self._sqlite is not None
        return self._sqlite.execute(sql, params)

    def everything(self) -> bytes:
        """Every byte the database holds: SQLite's file and WAL as they sit on disk; every
        row of every PostgreSQL table in COPY's binary format (bytea values unencoded)."""
        if self._sqlite is not None:
            path = Path(self._sqlite.execute("PRAGMA database_list").fetchone()[2])
            files = (path, path.with_name(path.name + "-wal"))
            return b"".join(p.read_bytes() for p in files if p.exists())
        assert self._postgres is not None
        found = b""
        tables = self.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
        )
        for (table,) in tables.fetchall():
            with self._postgres.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                found += b"".join(bytes(chunk) for chunk in copy)
        return found

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
        if self._sqlite is not None:
            self._sqlite.close()

    def __enter__(self) -> RawDb:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
