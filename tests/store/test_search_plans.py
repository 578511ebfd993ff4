"""Search's two plans give the same hits, pages and cursors (SQLite).

A rare term's candidates are joined to `records`; a common one goes through the MATCH with the
grant's scope tokens in it. Which plan runs depends only on how many rows the terms match, so
both are forced here over the same data, scopes and queries, and must agree page by page.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ownstream.model import ReadScope, RecordWrite, StreamDefinition
from ownstream.search import parse_query
from ownstream.store.sqlite import SQLiteStore, reads
from tests.store.contract.conftest import NOTES, Clock, Harness

# a second stream whose searchable fields sit in other slots: another column group
MEMOS = StreamDefinition(
    name="memos",
    version=1,
    semantics="mutable_state",
    primary_key=("id",),
    schema={
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "body": {"type": "string"},
            "title": {"type": "string"},
            "at": {"type": "string"},
        },
        "required": ["id"],
    },
    cursor_field="at",
    consent_time_field="at",
    searchable_fields=("body", "title"),
)
WORDS = ("common", "harbour", "lighthouse", "rare", "quiet", "storm", "north", "amber")
WEIGHTS = (40, 8, 8, 1, 6, 6, 4, 2)


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, WEIGHTS, k=rng.randint(1, 4)))


def _write(stream: str, key: str, rng: random.Random, day: int) -> RecordWrite:
    data: dict[str, Any] = {"id": key, "title": _text(rng), "body": _text(rng)}
    data["at"] = f"2024-05-{day:02d}T00:00:00.000Z"
    if stream == "notes":
        data["secret"] = _text(rng)
    return RecordWrite(stream, key, data, "2024-05-01T00:00:00.000Z")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """Three connections, two streams; stages that insert, rewrite (parking published
    versions) and delete, one stage left unpublished."""
    clock = Clock()
    store = SQLiteStore(tmp_path / "search.db", clock=clock)
    harness = Harness(store, clock)
    rng = random.Random(18)
    connections = [harness.connection(name) for name in ("a", "b", "c")]
    for round_index in range(4):
        for connection_id in connections:
            stage = harness.stage(connection_id)
            for definition in (NOTES, MEMOS):
                keys = rng.sample(range(40), 15)
                writes = [_write(definition.name, f"k{key}", rng, 1 + key % 28) for key in keys]
                if definition is NOTES and round_index:
                    writes.append(
                        RecordWrite("notes", f"k{keys[0]}", {"id": f"k{keys[0]}"}, "x", op="delete")
                    )
                harness.write(stage, writes, definition)
            if round_index < 3 or connection_id != connections[0]:
                harness.publish(stage)
            clock.advance(60)
    yield harness
    store.close()


def _scopes(harness: Harness, rng: random.Random) -> list[ReadScope]:
    chosen = []
    for definition in (NOTES, MEMOS):
        if rng.random() < 0.3:
            continue
        ids = tuple(c for c in harness.connections if rng.random() < 0.7) or (
            harness.connections[1],
        )
        fields = tuple(f for f in definition.fields if f == "id" or rng.random() < 0.6)
        window: dict[str, Any] = {}
        if rng.random() < 0.3:
            window = {"since": "2024-05-05T00:00:00.000Z", "until": "2024-05-20T00:00:00.000Z"}
        chosen.append(ReadScope(definition, ids, fields, **window))
    return chosen or [ReadScope(NOTES, tuple(harness.connections), NOTES.fields)]


def _walk(
    harness: Harness, scopes: list[ReadScope], q: str, limit: int
) -> list[tuple[list[tuple[Any, ...]], bool]]:
    pages: list[tuple[list[tuple[Any, ...]], bool]] = []
    before = None
    while True:
        hits, more = harness.store.search(scopes, parse_query(q), limit=limit, before=before)
        pages.append(
            (
                [
                    (h.record_id, h.connection_id, h.stream, h.record_key, h.data, h.emitted_at)
                    for h in hits
                ],
                more,
            )
        )
        if not more:
            return pages
        before = hits[-1].record_id


QUERIES = ("common", "rare", "harbour storm", "lig*", "amber north", "rare common", "absent")


@pytest.mark.parametrize("seed", range(12))
def test_candidate_and_scoped_plans_agree(
    harness: Harness, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    scopes = _scopes(harness, rng)
    for q in QUERIES:
        limit = rng.choice((1, 3, 10))
        monkeypatch.setattr(reads, "SEARCH_PROBE", 0)  # the probe never completes: scoped MATCH
        scoped = _walk(harness, scopes, q, limit)
        monkeypatch.setattr(reads, "SEARCH_PROBE", 10**6)  # it always completes: candidates
        candidates = _walk(harness, scopes, q, limit)
        monkeypatch.setattr(reads, "SEARCH_PROBE", 4)  # a mix, by term and position
        mixed = _walk(harness, scopes, q, limit)
        assert candidates == scoped, (q, scopes)
        assert mixed == scoped, (q, scopes)
    found = _walk(
        harness, [ReadScope(NOTES, tuple(harness.connections), NOTES.fields)], "common", 100
    )
    assert found[0][0], "the data has hits for the common term"


def test_candidates_are_read_by_record_id(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidates' join reads `record_rows` by rowid: given many candidate ids and a scope of a
    few connections, SQLite would otherwise walk every record of those connections on the page
    index (at a million records, 122 ms instead of well under one)."""
    monkeypatch.setattr(reads, "SEARCH_PROBE", 10**6)
    statements: list[str] = []
    assert isinstance(harness.store, SQLiteStore)
    db = harness.store._db()
    db.set_trace_callback(statements.append)
    try:
        scope = ReadScope(NOTES, tuple(harness.connections), NOTES.fields)
        hits, _ = harness.store.search([scope], parse_query("common"), limit=5, before=None)
    finally:
        db.set_trace_callback(None)
    assert hits
    [joined] = [s for s in statements if "FROM record_rows r" in s and "record_id IN" in s]
    plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {joined}"))
    assert "SEARCH r USING INTEGER PRIMARY KEY" in plan, plan
