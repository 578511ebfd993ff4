"""The SQLite file: per-thread connections, short transactions, schema version and upgrades.

Every piece of the SQLite store derives from `SQLiteBase`, which owns the file and the clock.
WAL mode lets readers run while one writer writes; writers hold the lock only for one batch or
one operation (never a whole import), so nobody waits long.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from ownstream.clock import iso, random_id, utc_now
from ownstream.store.sqlite.record_codec import RecordCodec, loader, register

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 60_000
# Page cache per connection: batches are short, so it need not be large (an import's peak RSS:
# 165 MiB at 32 MiB, 149 at 16, 148 at 8, in the same import time, at 300,000 plays)
CACHE_KIB = 16 * 1024
# Checkpoint once the WAL holds this many pages (32 MiB), not SQLite's 1,000: an import's batches
# rewrite the same key-index pages, which a checkpoint then copies (and syncs) once per few
# batches instead of after every one (at 300,000 records: 15 % fewer bytes written).
CHECKPOINT_PAGES = 8192
CHUNK = 500  # keys per IN (...) lookup, well under SQLite's parameter limit


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def dumps_text(value: Any) -> str:
    """JSON as TEXT, for columns SQLite's JSON functions must read."""
    return orjson.dumps(value).decode()


def _commit(db: sqlite3.Connection, behind: Sequence[tuple[str, Sequence[Any]]]) -> None:
    try:
        for sql, params in behind:
            db.execute(sql, params)
        db.execute("COMMIT")
    except BaseException:
        # a failed statement or COMMIT may leave the transaction open: nothing of it is kept
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _as_is(data: bytes) -> bytes:
    return data


def marks(count: int) -> str:
    return ",".join("?" * count)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def schema_script() -> str:
    """The current schema: every table and index, `IF NOT EXISTS`."""
    return resources.files(__package__).joinpath("schema.sql").read_text()


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Execute a script statement by statement inside the caller's transaction
    (`executescript` would commit it first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in statement.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement: {statement[:80]!r}")


def private_file(path: Path) -> None:
    """Owner-only permissions on a file of the data directory (the database, WAL, SHM)."""
    if path.exists() and path.stat().st_mode & 0o077:
        path.chmod(0o600)


class SQLiteBase:
    """The database file and the store's clock; each thread gets its own connection."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = path
        self.clock = clock
        self._local = threading.local()
        self._codec = RecordCodec()
        self._committer_lock = threading.Lock()
        self._committer: ThreadPoolExecutor | None = None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # created 0600 from the start; SQLite gives its -wal and -shm the same mode. Never
            # open and close an existing database file here: closing any descriptor of a file
            # drops every POSIX lock this process holds on it, including SQLite's own.
            with suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        private_file(path)
        self._prepare()

    def _now(self) -> str:
        return iso(self.clock())

    # connections to the file -----------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        self._await_commit()
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA journal_size_limit = 67108864")
            db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute("PRAGMA temp_store = MEMORY")
            db.execute("PRAGMA foreign_keys = OFF")
            register(db, self._codec, self._load_dictionary)
            self._local.db = db
            self._local.depth = 0
        return db

    @contextmanager
    def _tx(self, *, commit_behind: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls join the outer one (as savepoints).

        With `commit_behind`, the end of an outer transaction runs on the store's commit
        thread and the call returns at once: the statements its body left for later
        (`_later`: each one long call into SQLite for a whole batch) and its COMMIT (the WAL
        write, FTS5 flushing its terms, a checkpoint now and then) run without the GIL, so
        they overlap the caller's work on its next batch. The caller's next use of its
        connection (`_db`, so any store call on its thread) waits for them and raises their
        error, after which nothing of the transaction is kept; readers could not see a
        batch before its stage is published anyway."""
        db = self._db()
        depth: int = self._local.depth
        name = f"sp{depth}"
        db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        if depth == 0:
            self._local.behind = [] if commit_behind else None
        behind: list[tuple[str, Sequence[Any]]] | None = self._local.behind
        queued = 0 if behind is None else len(behind)
        self._local.depth = depth + 1
        try:
            yield db
        except BaseException:
            self._local.depth = depth
            if depth == 0:
                self._local.behind = None
                db.execute("ROLLBACK")
            else:
                if behind is not None:
                    del behind[queued:]  # what the savepoint left for later goes with it
                db.execute(f"ROLLBACK TO {name}")
                db.execute(f"RELEASE {name}")
            raise
        self._local.depth = depth
        if depth > 0:
            db.execute(f"RELEASE {name}")
            return
        self._local.behind = None
        if behind is not None:
            self._local.commit = self._commit_thread().submit(_commit, db, behind)
        else:
            db.execute("COMMIT")

    def _later(self, sql: str, params: Sequence[Any]) -> bool:
        """Leave a statement for the end of a commit-behind transaction (see `_tx`); False,
        doing nothing, outside one (the caller runs it now, its own way)."""
        behind: list[tuple[str, Sequence[Any]]] | None = getattr(self._local, "behind", None)
        if behind is None:
            return False
        behind.append((sql, params))
        return True

    def _commit_thread(self) -> ThreadPoolExecutor:
        with self._committer_lock:
            if self._committer is None:
                self._committer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
            return self._committer

    def _await_commit(self) -> None:
        """Wait for this thread's commit behind, if one is running; raise its error."""
        pending: Future[None] | None = getattr(self._local, "commit", None)
        if pending is not None:
            self._local.commit = None
            pending.result()

    def close(self) -> None:
        """Close this thread's connection, after its commit behind (whose error it raises)."""
        try:
            self._await_commit()
        finally:
            db: sqlite3.Connection | None = getattr(self._local, "db", None)
            if db is not None:
                db.close()
                self._local.db = None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cursor = self._db().cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params).fetchall()

    @staticmethod
    def _where(conditions: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
        """` WHERE a = ? AND …` for the conditions whose value is not None."""
        used = [(clause, value) for clause, value in conditions if value is not None]
        if not used:
            return "", []
        return " WHERE " + " AND ".join(c for c, _ in used), [v for _, v in used]

    def _record_json(self, data: bytes) -> bytes:
        """A stored record's JSON, whether compressed or not (see `record_codec`)."""
        return self._codec.decode(data, self._load_dictionary)

    def _load_dictionary(self, dictionary_id: int) -> bytes | None:
        return loader(self._db())(dictionary_id)

    @staticmethod
    def _record_scope(
        db: sqlite3.Connection, connection_id: str, stream: str, *, create: bool = False
    ) -> int | None:
        """The number `record_rows` names a connection's stream by (created on the first write).

        Looked up every time, never cached: a number a rolled-back transaction created may be
        given to another stream later."""
        row = db.execute(
            "SELECT scope FROM record_scopes WHERE connection_id = ? AND stream = ?",
            (connection_id, stream),
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        cursor = db.execute(
            "INSERT INTO record_scopes (connection_id, stream) VALUES (?, ?)",
            (connection_id, stream),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _record_encoder(
        self,
        db: sqlite3.Connection,
        connection_id: str,
        stream: str,
        batch: Sequence[bytes] = (),
    ) -> Callable[[bytes], bytes]:
        """How a connection's stream stores record JSON now (see `record_codec`)."""
        encode = self._codec.encoder(db, connection_id, stream, batch)
        return _as_is if encode is None else encode

    def _records_data(self, stored: Sequence[bytes]) -> list[dict[str, Any]]:
        """Several records' data at once (a page of a read; see `RecordCodec.decode_many`)."""
        return [orjson.loads(d) for d in self._codec.decode_many(stored, self._load_dictionary)]

    def _record_data(self, data: bytes) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(self._record_json(data))
        return decoded

    def _meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def epoch(self) -> str:
        found = self._meta("store_epoch")
        assert found is not None
        return found

    # schema ------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        db = self._db()
        has_meta = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return 0
        found = self._meta("schema_version")
        return int(found) if found else 0

    def _prepare(self) -> None:
        """Create a fresh database, or upgrade an older one in place."""
        from ownstream.store.sqlite.migrations import upgrade

        version = self.schema_version()
        if version == 0:
            with self._tx() as db:
                run_script(db, schema_script())
                db.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("store_epoch", random_id("db")),
                        ("publish_clock", "0"),
                    ],
                )
        elif version < SCHEMA_VERSION:
            upgrade(self, version)
        else:
            # tables and indexes added within a version are created (every statement is
            # IF NOT EXISTS); a change to an existing table takes a new version and a step
            with self._tx() as db:
                run_script(db, schema_script())
        for suffix in ("", "-wal", "-shm"):
            private_file(Path(f"{self.path}{suffix}"))
