"""`rekey_records` through the Store protocol: records renamed in place keep their ids, history
and search rows, take their match keys, and the change feed says nothing about them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from ownstream.model import ReadScope, RecordWrite
from ownstream.records import match_key
from ownstream.search import parse_query
from ownstream.store.planner import stored_match_key
from tests.rawdb import RawDb
from tests.store.test_planner import PLAYS as PLANNED_PLAYS
from tests.store.test_planner import RULE

from .conftest import Harness

PLAYS = replace(PLANNED_PLAYS, searchable_fields=("track",))


def play(key: str, track: str, second: int = 30, **data: Any) -> RecordWrite:
    at = f"2025-01-01T10:00:{second:02d}.000Z"
    return RecordWrite("plays", key, {"play_id": key, "track": track, "played_at": at, **data}, at)


def collect(harness: Harness, connection_id: str, *plays: RecordWrite) -> None:
    """Plays written before the stream had its record rule: no match keys yet."""
    acquisition = harness.stage(connection_id, "plays-api")
    harness.write(acquisition, plays, PLAYS)
    harness.publish(acquisition)


def renamed(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Version 2 of the plays: keys gain a prefix, tracks a word, and a precision."""
    if data["play_id"].startswith("v2:"):
        return None
    key = f"v2:{data['play_id']}"
    return key, {**data, "play_id": key, "track": f"{data['track']} live", "precision": "second"}


def scope(connection_id: str) -> ReadScope:
    return ReadScope(PLAYS, (connection_id,), PLAYS.fields)


def keys(harness: Harness, connection_id: str) -> list[str]:
    page, _ = harness.store.records_page(scope(connection_id), limit=100, order="asc")
    return [r.record_key for r in page]


def hits(harness: Harness, connection_id: str, text: str) -> list[tuple[int, str]]:
    found, _ = harness.store.search(
        [scope(connection_id)], parse_query(text), limit=10, before=None
    )
    return [(hit.record_id, hit.record_key) for hit in found]


def test_records_are_renamed_in_place_once(harness: Harness) -> None:
    first, second = harness.connection("a"), harness.connection("b")
    collect(harness, first, play("p1", "alpha"), play("p2", "beta", 40))
    collect(harness, second, play("p1", "gamma"))
    ids = {key: record_id for word in ("alpha", "beta") for record_id, key in hits(
        harness, first, word
    )}
    horizon = harness.store.change_horizon()

    report = harness.store.rekey_records("plays", renamed, upgrade="plays@2", rule=RULE)
    assert report is not None
    assert (report.rekeyed, report.unchanged, report.conflicts, report.deferred) == (3, 0, 0, 0)
    assert keys(harness, first) == ["v2:p1", "v2:p2"] and keys(harness, second) == ["v2:p1"]
    (held,) = harness.store.record(scope(first), "v2:p1")
    assert held.data == {
        "play_id": "v2:p1", "track": "alpha live", "played_at": "2025-01-01T10:00:30.000Z",
        "precision": "second",
    }
    # the same records (ids), found by the new words in their own connection only
    assert hits(harness, first, "live") == [(ids["p2"], "v2:p2"), (ids["p1"], "v2:p1")]
    assert hits(harness, first, "gamma") == [] and len(hits(harness, second, "gamma")) == 1
    # provenance follows the record; the change feed has nothing new to say
    assert len(harness.store.record_provenance(first, "plays", "v2:p1")) == 1
    assert harness.store.change_horizon() == horizon
    assert harness.store.rekey_records("plays", renamed, upgrade="plays@2", rule=RULE) is None


def test_rekeyed_records_take_their_match_keys(harness: Harness) -> None:
    """A coarse entry of the same minute joins a record re-keyed under the rule."""
    first = harness.connection("a")
    collect(harness, first, play("p1", "alpha"))

    def precise(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        return None if "precision" in data else (data["play_id"], {**data, "precision": "second"})

    harness.store.rekey_records("plays", precise, upgrade="precise", rule=RULE)
    coarse = play("c1", "Alpha", 0, precision="minute", ms_played=181_000)
    acquisition = harness.stage(first, "plays-export")
    stats = harness.write(acquisition, [coarse], PLAYS, RULE)
    harness.publish(acquisition)
    assert stats.merged_with_existing == 1 and keys(harness, first) == ["p1"]
    (held,) = harness.store.record(scope(first), "p1")
    assert held.data["ms_played"] == 181_000


def test_a_track_a_rekey_removes_is_no_longer_found(harness: Harness) -> None:
    first = harness.connection("a")
    collect(harness, first, play("p1", "alpha"))

    def renamed_track(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return data["play_id"], {**data, "track": "omega"}

    harness.store.rekey_records("plays", renamed_track, upgrade="rename-track")
    assert hits(harness, first, "alpha") == []
    assert [key for _, key in hits(harness, first, "omega")] == ["p1"]


def test_a_connection_with_a_live_stage_waits_for_the_next_start(harness: Harness) -> None:
    busy, idle = harness.connection("busy"), harness.connection("idle")
    collect(harness, busy, play("p1", "alpha"))
    collect(harness, idle, play("p1", "beta"))
    running = harness.stage(busy, "plays-api")
    report = harness.store.rekey_records("plays", renamed, upgrade="plays@2")
    assert report is not None and (report.rekeyed, report.deferred) == (1, 1)
    harness.publish(running)
    again = harness.store.rekey_records("plays", renamed, upgrade="plays@2")
    assert again is not None and (again.rekeyed, again.unchanged, again.deferred) == (1, 1, 0)
    assert keys(harness, busy) == keys(harness, idle) == ["v2:p1"]
    assert harness.store.rekey_records("plays", renamed, upgrade="plays@2") is None


def test_a_taken_key_is_a_conflict_not_an_overwrite(harness: Harness) -> None:
    first = harness.connection("a")
    collect(harness, first, play("p1", "alpha"), play("p2", "beta", 40))

    def merged(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "p1", {**data, "play_id": "p1"}

    report = harness.store.rekey_records("plays", merged, upgrade="merge")
    assert report is not None and (report.unchanged, report.conflicts) == (1, 1)
    assert keys(harness, first) == ["p1", "p2"]

    # in record order: a key given up earlier may be taken, one still held may not
    moves = {"p1": "p3", "p2": "p1"}

    def moved(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        key = moves.get(data["play_id"])
        return None if key is None else (key, {**data, "play_id": key})

    report = harness.store.rekey_records("plays", moved, upgrade="move")
    assert report is not None and (report.rekeyed, report.conflicts) == (2, 0)
    assert sorted(keys(harness, first)) == ["p1", "p3"]
    moves.update({"p3": "p1", "p1": "p4"})  # p3 (the first record) wants p1, still held
    report = harness.store.rekey_records("plays", moved, upgrade="move-back")
    assert report is not None and (report.rekeyed, report.conflicts) == (1, 1)
    assert sorted(keys(harness, first)) == ["p3", "p4"]


def test_match_keys_of_the_previous_format_are_refreshed(harness: Harness) -> None:
    """A database whose match keys are the bare rule keys (format 1) gets the stored format
    (the time window first) from a re-key that keeps every key, and pairs records again."""
    first = harness.connection("a")
    acquisition = harness.stage(first, "plays-api")
    harness.write(acquisition, [play("p1", "alpha", precision="second")], PLAYS, RULE)
    harness.publish(acquisition)
    raw = RawDb(harness.store)
    try:
        (data,) = raw.execute("SELECT data FROM records WHERE record_key = 'p1'").fetchone()
        held = orjson.loads(bytes(data))
        rows = "record_rows" if raw.backend == "sqlite" else "records"  # SQLite: a view
        raw.execute(f"UPDATE {rows} SET match_key = ?", (match_key(RULE, held),))

        def stored() -> str:
            value: str = raw.execute("SELECT match_key FROM records").fetchone()[0]
            return value

        assert stored() != stored_match_key(RULE, held)
        report = harness.store.rekey_records(
            "plays", lambda _data: None, upgrade="plays:mk", rule=RULE
        )
        assert report is not None and (report.rekeyed, report.unchanged) == (1, 0)
        assert stored() == stored_match_key(RULE, held)
    finally:
        raw.close()
    coarse = play("c1", "Alpha", 0, precision="minute", ms_played=181_000)
    acquisition = harness.stage(first, "plays-export")
    stats = harness.write(acquisition, [coarse], PLAYS, RULE)
    harness.publish(acquisition)
    assert stats.merged_with_existing == 1 and keys(harness, first) == ["p1"]
    again = harness.store.rekey_records(
        "plays", lambda _data: None, upgrade="plays:mk2", rule=RULE
    )
    assert again is not None and (again.rekeyed, again.unchanged) == (0, 1)
