"""How SQLite stores records (schema version 3): zstd against a dictionary of the connection's
own stream, and the `record_scopes` numbers rows name their connection and stream by.

Every read must give the same answer whether a record is stored compressed or as JSON, so the
same history is written to two stores, one of which never trains a dictionary, and read back
through every path that decodes data or reads a field in SQL.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ownstream.model import FieldFilter, ReadScope, RecordWrite
from ownstream.search import parse_query
from ownstream.store.base import AggregateSpec
from ownstream.store.sqlite import SQLiteStore, record_codec
from tests.store.contract.conftest import NOTES, Clock, Harness, gone, note

WORDS = ("harbour", "lighthouse", "amber", "north", "storm", "quiet", "gull", "tide")
BATCH = record_codec.TRAIN_AT + 200


def _notes(rng: random.Random, count: int, start: int = 0) -> list[RecordWrite]:
    return [
        note(
            f"n{i:05d}",
            title=" ".join(rng.choices(WORDS, k=3)),
            body=f"body {i} " + " ".join(rng.choices(WORDS, k=8)),
            secret=f"s{rng.randrange(10**6)}",
            at=f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00.000Z",
        )
        for i in range(start, start + count)
    ]


def _history(harness: Harness) -> list[str]:
    """Two connections: a small first batch (stored as JSON), a large one (trains the
    dictionary), then a stage that rewrites and deletes some (parking published versions)."""
    rng = random.Random(3)
    connections = [harness.connection("a"), harness.connection("b")]
    for connection_id in connections:
        first = harness.stage(connection_id)
        harness.write(first, _notes(rng, 50))
        harness.write(first, _notes(rng, BATCH, start=50))
        harness.publish(first)
        harness.clock.advance(60)
        second = harness.stage(connection_id)
        changed = _notes(random.Random(9), 300, start=25)
        harness.write(second, [*changed, gone("n00010"), gone("n00900")])
        harness.publish(second)
        harness.clock.advance(60)
    return connections


def _store(tmp_path: Path, name: str) -> SQLiteStore:
    return SQLiteStore(tmp_path / f"{name}.db", clock=Clock())


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Harness, Harness]]:
    compressed = Harness(_store(tmp_path, "compressed"), Clock())
    _history(compressed)
    monkeypatch.setattr(record_codec, "TRAIN_AT", 10**9)
    plain = Harness(_store(tmp_path, "plain"), Clock())
    _history(plain)
    yield compressed, plain
    compressed.store.close()
    plain.store.close()


def _raw(harness: Harness) -> sqlite3.Connection:
    assert isinstance(harness.store, SQLiteStore)
    return sqlite3.connect(harness.store.path)


def _reads(harness: Harness) -> dict[str, Any]:
    store, connections = harness.store, tuple(harness.connections)
    everything = ReadScope(NOTES, connections, NOTES.fields)
    page, _ = store.records_page(everything, limit=10_000)
    filtered = ReadScope(
        NOTES, connections, NOTES.fields, filters=(FieldFilter("title", "gte", "north"),)
    )
    hits, _ = store.search([everything], parse_query("lighthouse tide"), limit=50, before=None)
    rare, _ = store.search([everything], parse_query("1175"), limit=50, before=None)
    changes, _ = store.changes_page(everything, since=0, upto=10**9, after=None, limit=10_000)
    return {
        "page": [(r.connection_id, r.record_key, r.data, r.cursor_value) for r in page],
        "one": [(r.connection_id, r.data) for r in store.record(everything, "n00030")],
        "filtered": [
            (r.connection_id, r.record_key) for r in store.records_page(filtered, limit=10_000)[0]
        ],
        "search": [(h.connection_id, h.record_key, h.data) for h in hits],
        "rare": [(h.connection_id, h.record_key) for h in rare],
        "changes": [(c.connection_id, c.record_key, c.data) for c in changes],
        "count by title": store.aggregate(filtered, AggregateSpec("count", group_by="title")),
        "max body": store.aggregate(everything, AggregateSpec("max", field="body")),
    }


def test_every_read_is_the_same_compressed_or_not(stores: tuple[Harness, Harness]) -> None:
    compressed, plain = stores
    with _raw(compressed) as db:
        kinds = dict(
            db.execute(
                "SELECT substr(data, 1, 4) = ?, count(*) FROM record_rows GROUP BY 1",
                (record_codec.ZSTD_MAGIC,),
            ).fetchall()
        )
        dictionaries = db.execute(
            "SELECT connection_id, stream FROM record_dictionaries ORDER BY 1"
        ).fetchall()
    assert kinds[1] > 2 * BATCH and kinds[0] >= 40  # rows stored as JSON stay JSON beside them
    assert dictionaries == [(c, "notes") for c in sorted(compressed.connections)]
    with _raw(plain) as db:
        assert db.execute("SELECT count(*) FROM record_dictionaries").fetchone() == (0,)
    expected, found = _reads(plain), _reads(compressed)
    for name, value in expected.items():
        assert found[name] == value, name
    assert expected["page"] and expected["search"] and expected["rare"] and expected["filtered"]
    assert expected["count by title"].record_count > 0


def test_compressed_rows_are_a_fraction_of_their_json(stores: tuple[Harness, Harness]) -> None:
    sizes = []
    for harness in stores:
        with _raw(harness) as db:
            sizes.append(db.execute("SELECT sum(length(data)) FROM record_rows").fetchone()[0])
    assert sizes[0] < sizes[1] * 0.6


def test_deleting_a_connection_deletes_its_dictionaries_and_scopes(
    stores: tuple[Harness, Harness],
) -> None:
    compressed, _ = stores
    gone_id, kept = compressed.connections
    compressed.store.delete_connection(gone_id, "owner")
    with _raw(compressed) as db:
        for table in ("record_dictionaries", "record_scopes"):
            rows = db.execute(f"SELECT DISTINCT connection_id FROM {table}").fetchall()
            assert rows == [(kept,)], table
    page, _ = compressed.store.records_page(ReadScope(NOTES, (kept,), NOTES.fields), limit=5)
    assert len(page) == 5 and all(r.data["title"] for r in page)


def test_an_abandoned_stage_restores_compressed_versions(tmp_path: Path) -> None:
    harness = Harness(_store(tmp_path, "abandon"), Clock())
    connection_id = harness.connection("a")
    harness.collect(connection_id, _notes(random.Random(1), BATCH))
    before = harness.live([connection_id])
    stage = harness.stage(connection_id)
    harness.write(stage, [*_notes(random.Random(2), 400), gone("n00007")])
    harness.store.abandon(stage, {"code": "test", "message": "abandoned"})
    assert harness.live([connection_id]) == before


def test_a_batch_whose_transaction_fails_leaves_no_dictionary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dictionary trained in a transaction that rolls back is gone with it; the next batch
    trains its own, and every row decodes."""
    store = _store(tmp_path, "rollback")
    harness = Harness(store, Clock())
    connection_id = harness.connection("a")
    stage = harness.stage(connection_id)
    real = SQLiteStore._index

    def failing(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(SQLiteStore, "_index", failing)
    with pytest.raises(RuntimeError):
        harness.write(stage, _notes(random.Random(1), BATCH))
    monkeypatch.setattr(SQLiteStore, "_index", real)
    with _raw(harness) as db:
        assert db.execute("SELECT count(*) FROM record_dictionaries").fetchone() == (0,)
    harness.write(stage, _notes(random.Random(1), BATCH))
    harness.publish(stage)
    assert len(harness.live([connection_id])) == BATCH


def test_a_stream_too_uniform_to_train_stays_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> zstandard.ZstdCompressionDict:
        raise zstandard.ZstdError("cannot train dict")

    monkeypatch.setattr(zstandard, "train_dictionary", refuse)
    harness = Harness(_store(tmp_path, "uniform"), Clock())
    connection_id = harness.connection("a")
    harness.collect(connection_id, _notes(random.Random(1), BATCH))
    with _raw(harness) as db:
        assert db.execute("SELECT count(*) FROM record_dictionaries").fetchone() == (0,)
        assert db.execute(
            "SELECT count(*) FROM record_rows WHERE substr(data, 1, 1) = x'7b'"
        ).fetchone() == (BATCH,)
    assert len(harness.live([connection_id])) == BATCH
