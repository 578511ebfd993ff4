"""`rekey_records`: records renamed in place keep their ids, history and search rows, and the
change feed says nothing about them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ownstream.model import Acquisition, ReadScope, RecordWrite
from ownstream.records import match_key
from ownstream.search import parse_query
from ownstream.store.base import Binding, NewConnection, PathAttachment, Publication, StreamBatch
from ownstream.store.sqlite import SQLiteStore
from ownstream.store.sqlite import rekey as rekey_module
from tests.store.test_planner import PLAYS as PLANNED_PLAYS
from tests.store.test_planner import RULE

PLAYS = replace(PLANNED_PLAYS, searchable_fields=("track",))
PATH = PathAttachment("plays-api", "provider_api", False, None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "db.sqlite")
    yield opened
    opened.close()


def connection(store: SQLiteStore, seed: str) -> str:
    new = NewConnection("owner", "plays", seed, True, None, seed)
    return store.create_connection(new, PATH).connection_id


def stage(store: SQLiteStore, connection_id: str) -> Acquisition:
    return store.start_stage(
        Binding(connection_id),
        connector_key="plays-api",
        acquisition_method="provider_api",
        trigger="test",
        collection_mode="full_refresh",
        holder="test",
        run_id=f"run_{connection_id[-6:]}_{len(store.runs(connection_id))}",
    )


def publish(store: SQLiteStore, acquisition: Acquisition) -> None:
    store.publish(acquisition, Publication("succeeded", {}, [], {}, None, {}))


def write(store: SQLiteStore, connection_id: str, *plays: dict[str, Any]) -> None:
    acquisition = stage(store, connection_id)
    writes = [RecordWrite("plays", p["play_id"], p, "2025-01-01T00:00:00.000Z") for p in plays]
    store.commit_batch(acquisition, [StreamBatch(PLAYS, writes)])
    publish(store, acquisition)


def play(key: str, track: str, minute: int = 0) -> dict[str, Any]:
    return {"play_id": key, "track": track, "played_at": f"2025-01-01T10:{minute:02d}:30.000Z"}


def renamed(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Version 2 of the plays: keys gain a prefix, tracks a word, and a precision."""
    if data["play_id"].startswith("v2:"):
        return None
    key = f"v2:{data['play_id']}"
    return key, {**data, "play_id": key, "track": f"{data['track']} revised", "precision": "second"}


def rows(store: SQLiteStore) -> list[tuple[Any, ...]]:
    return store._db().execute(
        "SELECT record_id, connection_id, record_key, version, stage, deleted, match_key "
        "FROM records ORDER BY record_id"
    ).fetchall()


def hits(store: SQLiteStore, connection_id: str, text: str) -> list[str]:
    scope = ReadScope(PLAYS, (connection_id,), PLAYS.fields)
    found, _ = store.search([scope], parse_query(text), limit=10, before=None)
    return [hit.record_key for hit in found]


def test_records_are_renamed_in_place_once(store: SQLiteStore) -> None:
    first, second = connection(store, "a"), connection(store, "b")
    write(store, first, play("n1", "alpha"), play("n2", "beta", 1))
    write(store, second, play("n1", "gamma"))
    before = rows(store)
    changes = store._db().execute("SELECT count(*) FROM record_changes").fetchone()
    horizon = store.change_horizon()

    report = store.rekey_records("plays", renamed, upgrade="plays@2", rule=RULE)
    assert report is not None
    assert (report.rekeyed, report.unchanged, report.conflicts, report.deferred) == (3, 0, 0, 0)
    after = rows(store)
    # ids, versions, stages and liveness kept; keys renamed; match keys computed by the rule
    assert [r[:2] + r[3:6] for r in after] == [r[:2] + r[3:6] for r in before]
    assert [r[2] for r in after] == ["v2:n1", "v2:n2", "v2:n1"]
    held = store.record(ReadScope(PLAYS, (first,), PLAYS.fields), "v2:n1")[0].data
    assert held == {**play("v2:n1", "alpha revised"), "precision": "second"}
    assert after[0][6] == match_key(RULE, held)
    # no change-log entry and no publication: a change feed has nothing new to say
    assert store._db().execute("SELECT count(*) FROM record_changes").fetchone() == changes
    assert store.change_horizon() == horizon
    # the search index follows the data, in the right connection
    assert hits(store, first, "revised") == ["v2:n2", "v2:n1"]
    assert hits(store, first, "gamma") == [] and hits(store, second, "gamma") == ["v2:n1"]
    assert hits(store, first, "alpha") == ["v2:n1"]
    # provenance follows the record under its new key
    assert len(store.record_provenance(first, "plays", "v2:n1")) == 1
    assert store.rekey_records("plays", renamed, upgrade="plays@2", rule=RULE) is None


def test_a_track_name_a_rekey_removes_is_no_longer_found(store: SQLiteStore) -> None:
    first = connection(store, "a")
    write(store, first, play("n1", "alpha"))

    def renamed_track(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return data["play_id"], {**data, "track": "omega"}

    store.rekey_records("plays", renamed_track, upgrade="rename-track")
    assert hits(store, first, "alpha") == [] and hits(store, first, "omega") == ["n1"]
    assert [r[6] for r in rows(store)] == [None]  # no rule: the match key is left alone


def test_a_connection_with_a_live_stage_waits_for_the_next_start(store: SQLiteStore) -> None:
    busy, idle = connection(store, "busy"), connection(store, "idle")
    write(store, busy, play("n1", "alpha"))
    write(store, idle, play("n1", "beta"))
    running = stage(store, busy)
    report = store.rekey_records("plays", renamed, upgrade="plays@2")
    assert report is not None and (report.rekeyed, report.deferred) == (1, 1)
    publish(store, running)
    again = store.rekey_records("plays", renamed, upgrade="plays@2")
    assert again is not None and (again.rekeyed, again.unchanged, again.deferred) == (1, 1, 0)
    assert [r[2] for r in rows(store)] == ["v2:n1", "v2:n1"]
    assert store.rekey_records("plays", renamed, upgrade="plays@2") is None


def test_a_taken_key_is_a_conflict_not_an_overwrite(store: SQLiteStore) -> None:
    first = connection(store, "a")
    write(store, first, play("n1", "alpha"), play("n2", "beta"))

    def merged(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "n1", {**data, "play_id": "n1"}

    report = store.rekey_records("plays", merged, upgrade="merge")
    assert report is not None and (report.unchanged, report.conflicts) == (1, 1)
    assert [r[2] for r in rows(store)] == ["n1", "n2"]

    # in record order: a key given up earlier may be taken, one still held may not
    moves = {"n1": "n3", "n2": "n1"}

    def moved(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        key = moves.get(data["play_id"])
        return None if key is None else (key, {**data, "play_id": key})

    report = store.rekey_records("plays", moved, upgrade="move")
    assert report is not None and (report.rekeyed, report.conflicts) == (2, 0)
    assert [r[2] for r in rows(store)] == ["n3", "n1"]
    moves.update({"n3": "n1", "n1": "n4"})  # n3 (first) wants n1, still held by the second
    report = store.rekey_records("plays", moved, upgrade="move-back")
    assert report is not None and (report.rekeyed, report.conflicts) == (1, 1)
    assert [r[2] for r in rows(store)] == ["n3", "n4"]


def test_an_interrupted_rekey_resumes(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rekey_module, "REKEY_CHUNK", 2)
    first = connection(store, "a")
    write(store, first, *(play(f"n{i}", f"t{i}", i) for i in range(5)))
    calls = 0

    def failing(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the process died")
        return renamed(data)

    with pytest.raises(RuntimeError):
        store.rekey_records("plays", failing, upgrade="plays@2")
    assert [r[2] for r in rows(store)] == ["v2:n0", "v2:n1", "n2", "n3", "n4"]  # one chunk
    report = store.rekey_records("plays", renamed, upgrade="plays@2")
    assert report is not None and (report.rekeyed, report.unchanged) == (3, 2)
    assert [r[2] for r in rows(store)] == [f"v2:n{i}" for i in range(5)]
