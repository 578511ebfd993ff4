"""A batch's COMMIT runs behind (SQLite): `commit_batch` returns while its transaction commits
on the store's commit thread, and the caller's next use of the store waits for it.

What must hold: a batch is never lost or half-kept, a failed commit surfaces at the caller's
next store call (and keeps nothing), and nothing reads around a commit still running.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ownstream.model import ReadScope
from ownstream.search import parse_query
from ownstream.store.sqlite import SQLiteStore, database
from tests.store.contract.conftest import NOTES, Clock, Harness, note


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(SQLiteStore(tmp_path / "behind.db", clock=Clock()), Clock())
    yield harness
    harness.store.close()


def _rows(harness: Harness) -> int:
    assert isinstance(harness.store, SQLiteStore)
    with sqlite3.connect(harness.store.path) as db:
        (count,) = db.execute("SELECT count(*) FROM record_rows").fetchone()
    return int(count)


def test_the_next_store_call_waits_for_the_commit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a commit is held back, the caller's next store call blocks; once it lets go, the
    call proceeds and sees the batch."""
    connection_id = harness.connection("a")
    stage = harness.stage(connection_id)
    release, started = threading.Event(), threading.Event()
    events: list[str] = []
    real = database._commit

    def slow(db: sqlite3.Connection, behind: Sequence[tuple[str, Sequence[Any]]]) -> None:
        started.set()
        assert release.wait(10)
        real(db, behind)
        events.append("committed")

    monkeypatch.setattr(database, "_commit", slow)
    harness.write(stage, [note("n1", title="one"), note("n2", title="two")])
    assert started.wait(10)
    assert _rows(harness) == 0  # not committed yet: another connection sees nothing
    timer = threading.Timer(0.2, release.set)
    timer.start()
    harness.publish(stage)  # waits for the commit, then publishes both records
    events.append("published")
    timer.join()
    assert events == ["committed", "published"]
    assert _rows(harness) == 2
    assert sorted(k for _, k in harness.live([connection_id])) == ["n1", "n2"]


def test_a_failed_commit_surfaces_at_the_next_call_and_keeps_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_id = harness.connection("a")
    stage = harness.stage(connection_id)
    harness.write(stage, [note("n1", title="kept")])
    real = database._commit

    def failing(db: sqlite3.Connection, behind: Sequence[tuple[str, Sequence[Any]]]) -> None:
        db.execute("ROLLBACK")  # what a failed COMMIT leaves: nothing of the batch
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(database, "_commit", failing)
    harness.write(stage, [note("n2", title="lost")])  # returns: its commit runs behind
    monkeypatch.setattr(database, "_commit", real)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        harness.write(stage, [note("n3", title="next")])
    assert _rows(harness) == 1  # n1 only: the failed batch is gone, the next never started
    harness.write(stage, [note("n4", title="after")])  # the store goes on
    harness.publish(stage)
    scope = ReadScope(NOTES, (connection_id,), NOTES.fields)
    page, _ = harness.store.records_page(scope, limit=10)
    assert sorted(r.record_key for r in page) == ["n1", "n4"]


def test_closing_waits_for_the_commit(harness: Harness) -> None:
    connection_id = harness.connection("a")
    stage = harness.stage(connection_id)
    harness.write(stage, [note(f"n{i}", title="x" * 200) for i in range(2000)])
    harness.store.close()
    assert _rows(harness) == 2000


def test_a_batch_indexed_behind_is_searchable_and_a_failed_one_leaves_no_index_rows(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search rows of a batch are written behind, in its transaction: a batch whose end
    fails leaves neither its records nor their search rows (a contentless index would
    otherwise keep terms for rows that do not exist)."""
    connection_id = harness.connection("a")
    stage = harness.stage(connection_id)
    harness.write(stage, [note("n1", title="harbour lighthouse")])
    real = database._commit

    def failing(db: sqlite3.Connection, behind: Sequence[tuple[str, Sequence[Any]]]) -> None:
        for sql, params in behind:
            db.execute(sql, params)
        db.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(database, "_commit", failing)
    harness.write(stage, [note("n2", title="harbour storm")])
    monkeypatch.setattr(database, "_commit", real)
    with pytest.raises(sqlite3.OperationalError):
        harness.publish(stage)
    harness.write(stage, [note("n3", title="harbour quiet")])
    harness.publish(stage)
    scope = ReadScope(NOTES, (connection_id,), NOTES.fields)
    hits, _ = harness.store.search([scope], parse_query("harbour"), limit=10, before=None)
    assert sorted(h.record_key for h in hits) == ["n1", "n3"]
    assert isinstance(harness.store, SQLiteStore)
    with sqlite3.connect(harness.store.path) as db:
        assert db.execute(
            "SELECT count(*) FROM search_index WHERE search_index MATCH 'storm'"
        ).fetchone() == (0,)


def test_closing_raises_a_failed_commit_and_still_closes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_id = harness.connection("a")
    stage = harness.stage(connection_id)

    def failing(db: sqlite3.Connection, behind: Sequence[tuple[str, Sequence[Any]]]) -> None:
        db.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(database, "_commit", failing)
    harness.write(stage, [note("n1", title="lost")])
    with pytest.raises(sqlite3.OperationalError):
        harness.store.close()
    assert isinstance(harness.store, SQLiteStore)
    assert harness.store._local.db is None  # closed all the same; the next call opens anew
    assert _rows(harness) == 0
