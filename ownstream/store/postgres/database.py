"""The PostgreSQL database: a connection pool, short transactions, schema version and upgrades.

Every piece of the PostgreSQL store derives from `PostgresBase`, which owns the pool and the
clock. Each thread that calls the store borrows a pooled connection for one statement, or for
one transaction (`_tx`): nested `_tx` calls on the same thread join the outer transaction as
savepoints, and reads inside a transaction see its writes, exactly like the SQLite store's
per-thread connection. Connections are in autocommit mode outside `_tx`, so a read never holds
a snapshot open between calls.

Several processes (`serve`, `ownstream worker`) may open one database at once: creating and
upgrading the schema happen under a transaction-scoped advisory lock, so exactly one of them
does it and the others then find it done.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from ownstream.clock import iso, random_id, utc_now
from ownstream.errors import InvalidRequest

SCHEMA_VERSION = 2
SCRIPTS = ("schema.sql", "auth.sql")
# pg_advisory_xact_lock key taken while the schema is created or upgraded ("ownstrm" in hex)
SCHEMA_LOCK = 0x6F776E7374726D
POOL_SIZE = 10  # connections per process; the API's thread pool queues for them
POOL_TIMEOUT_SECONDS = 60.0

Connection = psycopg.Connection[TupleRow]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def schema_scripts() -> str:
    """The current schema: every table and index, `IF NOT EXISTS`."""
    folder = resources.files(__package__)
    return "\n".join(folder.joinpath(name).read_text() for name in SCRIPTS)


def read_password(path: str | Path) -> str:
    """A database password from a file (its first line), so it never appears in argv."""
    text = Path(path).read_text().splitlines()
    if not text or not text[0]:
        raise InvalidRequest(f"the database password file {path} is empty")
    return text[0]


class PostgresBase:
    """The connection pool and the store's clock."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.url = url
        self.clock = clock
        self._local = threading.local()
        extra: dict[str, Any] = {"autocommit": True}
        if password is not None:
            extra["password"] = password
        self._pool = ConnectionPool(
            url,
            kwargs=extra,
            min_size=1,
            max_size=max(1, pool_size),
            timeout=POOL_TIMEOUT_SECONDS,
            name=f"ownstream-{os.getpid()}",
            open=False,
        )
        self._pool.open(wait=True)
        try:
            self._prepare()
        except BaseException:
            self._pool.close()
            raise

    def _now(self) -> str:
        return iso(self.clock())

    # connections -----------------------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[Connection]:
        """The connection of this thread's open transaction, or a pooled one for one read."""
        current: Connection | None = getattr(self._local, "db", None)
        if current is not None:
            yield current
            return
        with self._pool.connection() as db:
            yield db

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction; nested calls join the outer one (as savepoints)."""
        current: Connection | None = getattr(self._local, "db", None)
        if current is not None:
            with current.transaction():
                yield current
            return
        with self._pool.connection() as db:
            self._local.db = db
            try:
                with db.transaction():
                    yield db
            finally:
                self._local.db = None

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """Several reads that must see one snapshot (a read-only, repeatable-read transaction),
        or the thread's open transaction."""
        current: Connection | None = getattr(self._local, "db", None)
        if current is not None:
            yield current
            return
        with self._pool.connection() as db, db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield db

    def close(self) -> None:
        self._pool.close()

    def _rows(
        self, sql: str, params: Sequence[Any] = (), *, prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        """All rows of one statement. `prepare=False` for a statement whose best plan depends
        on its parameters: a prepared one may fall back to one generic plan for all."""
        with self._db() as db:
            return db.execute(sql, params, prepare=prepare).fetchall()

    def _row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._db() as db:
            return db.execute(sql, params).fetchone()

    @staticmethod
    def _where(conditions: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
        """` WHERE a = %s AND …` for the conditions whose value is not None."""
        used = [(clause, value) for clause, value in conditions if value is not None]
        if not used:
            return "", []
        return " WHERE " + " AND ".join(c for c, _ in used), [v for _, v in used]

    def _meta(self, key: str) -> str | None:
        row = self._row("SELECT value FROM meta WHERE key = %s", (key,))
        return None if row is None else str(row[0])

    def epoch(self) -> str:
        found = self._meta("store_epoch")
        assert found is not None
        return found

    # schema ------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._db() as db:
            return _version(db)

    def _prepare(self) -> None:
        """Create a fresh database, or upgrade an older one in place, once whoever else opens
        it at the same moment; refuse a database a newer release upgraded."""
        from ownstream.store.postgres.migrations import upgrade

        script = schema_scripts()
        digest = hashlib.sha256(script.encode()).hexdigest()
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            version = _version(db)
            if version > SCHEMA_VERSION:
                raise InvalidRequest(
                    f"the database has schema version {version}, newer than this release's "
                    f"{SCHEMA_VERSION}: upgrade ownstream on every machine that uses it"
                )
            if version == 0:
                db.execute(script)
                db.cursor().executemany(
                    "INSERT INTO meta (key, value) VALUES (%s, %s)",
                    [
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("store_epoch", random_id("db")),
                        ("publish_clock", "0"),
                        ("schema_digest", digest),
                    ],
                )
                return
            if version < SCHEMA_VERSION:
                upgrade(db, version, SCHEMA_VERSION)
            # tables and indexes added within a version are created (every statement is
            # IF NOT EXISTS) only when the script changed: re-running it on every start would
            # take table locks that wait for (and then block) other processes' writers
            stored = db.execute("SELECT value FROM meta WHERE key = 'schema_digest'").fetchone()
            if stored is None or stored[0] != digest:
                db.execute(script)
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_digest', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (digest,),
                )


def _version(db: Connection) -> int:
    exists = db.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0
