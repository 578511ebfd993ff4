"""The write planner, without a database: every rule a backend applies, decided in Python."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ownstream.model import AcquisitionPath, RecordRule, RecordWrite, StreamDefinition
from ownstream.store.planner import (
    BatchPlan,
    Change,
    CurrentRecord,
    Matching,
    MatchKeys,
    plan_batch,
    reconstruct,
)

API = AcquisitionPath("notes-api", "provider_api")
EXPORT = AcquisitionPath("notes-export", "owner_artifact")
STAGE = 7


def definition(semantics: str = "mutable_state", union: tuple[str, ...] = ()) -> StreamDefinition:
    return StreamDefinition(
        name="notes",
        version=1,
        semantics=semantics,  # type: ignore[arg-type]
        primary_key=("id",),
        schema={
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "title": {"type": "string"},
                "body": {"type": "string"},
                "tags": {"type": "array"},
                "at": {"type": "string"},
            },
        },
        cursor_field="at",
        consent_time_field="at",
        union_fields=union,
    )


def up(key: str, **data: Any) -> RecordWrite:
    return RecordWrite("notes", key, {"id": key, **data}, "2024-05-01T00:00:00.000Z")


def delete(key: str) -> RecordWrite:
    return RecordWrite("notes", key, {"id": key}, "2024-05-01T00:00:00.000Z", op="delete")


def held(
    key: str, record_id: int = 1, *, paths: tuple[str, ...] = ("notes-api",), stage: int = 3,
    deleted: bool = False, version: int = 1, **data: Any,
) -> CurrentRecord:
    return CurrentRecord(
        record_id=record_id,
        encoded=orjson.dumps({"id": key, **data}),
        version=version,
        deleted=deleted,
        paths=frozenset(paths),
        stage=stage,
        emitted_at="2024-01-01T00:00:00.000Z",
    )


def plan(
    writes: list[RecordWrite],
    current: dict[str, CurrentRecord] | None = None,
    *,
    path: AcquisitionPath = API,
    semantics: str = "mutable_state",
    union: tuple[str, ...] = (),
) -> BatchPlan:
    return plan_batch(definition(semantics, union), path, STAGE, current or {}, writes)


def test_an_unknown_key_inserts_with_its_cursor_and_consent_time() -> None:
    result = plan([up("a", title="t", at="2024-03-01T10:00:00+02:00")])
    [insert] = result.inserts
    assert insert.change == Change("insert", 1, None, None)
    assert insert.head.version == 1 and insert.head.paths == {"notes-api"}
    assert insert.head.consent_time == "2024-03-01T08:00:00.000Z"
    assert insert.head.cursor_value == "2024-03-01T10:00:00+02:00"
    assert result.stats.new == 1 and result.stats.count_delta == 1
    assert (result.stats.window_start, result.stats.window_end) == (
        "2024-03-01T08:00:00.000Z",
        "2024-03-01T08:00:00.000Z",
    )


def test_the_same_data_again_is_a_sighting_not_a_version() -> None:
    result = plan([up("a", title="t")], {"a": held("a", title="t")})
    assert not result.inserts and not result.versions
    assert [(s.record_id, s.add_path) for s in result.sightings] == [(1, False)]
    assert result.stats.duplicate == 1


def test_an_update_keeps_a_diff_and_parks_a_published_head() -> None:
    result = plan([up("a", title="new")], {"a": held("a", title="old", body="b", version=4)})
    [version] = result.versions
    # a single path replaces its mutable state wholesale: body is gone, title changed
    assert version.change == Change("update", 5, ("body", "title"), {"body": "b", "title": "old"})
    assert version.park  # the head is another stage's: kept readable until publication
    assert version.head.data == {"id": "a", "title": "new"}
    assert result.stats.updated == 1 and result.stats.count_delta == 0


def test_a_head_this_stage_wrote_is_overwritten_not_parked() -> None:
    result = plan([up("a", title="new")], {"a": held("a", title="old", stage=STAGE)})
    assert result.versions[0].park is False


def test_another_paths_fields_are_kept_and_unions_united() -> None:
    current = {"a": held("a", paths=("notes-export",), title="t", body="kept", tags=["x"])}
    result = plan([up("a", title="t2", tags=["y", "x"])], current, union=("tags",))
    [version] = result.versions
    assert version.head.data == {"id": "a", "title": "t2", "body": "kept", "tags": ["x", "y"]}
    assert version.head.paths == {"notes-api", "notes-export"}
    assert result.stats.merged_with_existing == 1


def test_a_new_path_seeing_unchanged_data_adds_its_mark_as_a_sighting() -> None:
    current = {"a": held("a", paths=("notes-export",), title="t")}
    result = plan([up("a", title="t")], current)
    assert [(s.record_id, s.add_path) for s in result.sightings] == [(1, True)]
    assert result.stats.merged_with_existing == 1


def test_a_delete_removes_only_what_the_writing_path_alone_evidences() -> None:
    current = {
        "mine": held("mine", 1, title="m"),
        "shared": held("shared", 2, paths=("notes-api", "notes-export"), title="s"),
        "gone": held("gone", 3, deleted=True, version=2),
    }
    result = plan([delete("mine"), delete("shared"), delete("gone"), delete("never")], current)
    [version] = result.versions
    assert version.record_id == 1 and version.change == Change("delete", 2, None, None)
    assert version.head.deleted and version.head.data == {"id": "mine", "title": "m"}
    assert (result.stats.deleted, result.stats.skipped, result.stats.duplicate) == (1, 1, 2)
    assert result.stats.count_delta == -1


def test_a_record_that_comes_back_is_new_again_from_the_paths_data() -> None:
    current = {"a": held("a", deleted=True, version=3, title="old", body="b")}
    result = plan([up("a", title="back")], current)
    [version] = result.versions
    assert version.change == Change("insert", 4, ("body", "title"), {"body": "b", "title": "old"})
    assert version.head.data == {"id": "a", "title": "back"}
    assert result.stats.new == 1 and result.stats.count_delta == 1


def test_writes_of_one_key_in_a_batch_fold_into_one_version() -> None:
    current = {"a": held("a", title="t0", version=2)}
    result = plan([up("a", title="t1"), up("a", title="t2"), up("b", title="x"), delete("b")],
                  current)
    [version] = result.versions
    assert version.change == Change("update", 3, ("title",), {"title": "t0"})
    [insert] = result.inserts  # created and deleted in the batch: a tombstone insert
    assert insert.head.deleted and insert.change.op == "insert"
    assert result.stats.count_delta == 0


def test_append_only_records_are_enriched_never_shrunk() -> None:
    current = {"a": held("a", title="t", body="b")}
    result = plan([up("a", title="t")], current, semantics="append_only")
    assert not result.versions and result.stats.duplicate == 1


def test_emitted_at_stays_the_first_collection_time() -> None:
    result = plan([up("a", title="new")], {"a": held("a", title="old")})
    assert result.versions[0].head.emitted_at == "2024-01-01T00:00:00.000Z"


Data = dict[str, Any]
values = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3))
datas = st.dictionaries(st.sampled_from(["title", "body", "at"]), values, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), datas), min_size=1, max_size=8))
def test_history_replays_backwards_from_the_diffs(steps: list[tuple[bool, Data]]) -> None:
    """Fold a series of batches onto one record; `reconstruct` undoes the change log back to
    every earlier version, exactly."""
    current: dict[str, CurrentRecord] = {}
    versions: list[Data] = []
    log: list[Change] = []
    for stage, (is_delete, data) in enumerate(steps, start=10):
        write = delete("a") if is_delete else up("a", **data)
        result = plan_batch(definition(), API, stage, current, [write])
        for insert in result.inserts:
            head, change = insert.head, insert.change
        for version in result.versions:
            head, change = version.head, version.change
        if not result.inserts and not result.versions:
            continue
        log.append(change)
        if not head.deleted:
            versions.append(head.data)
        current = {"a": CurrentRecord(1, head.encoded, head.version, head.deleted, head.paths,
                                      stage, head.emitted_at)}
    live = [c for c in log if c.op != "delete"]
    for back, expected in enumerate(reversed(versions)):
        assert reconstruct(versions[-1], list(reversed(live))[:back]) == expected


# -- record rules: one event seen at two precisions ----------------------------------------

PLAYS = StreamDefinition(
    name="plays",
    version=1,
    semantics="append_only",
    primary_key=("play_id",),
    schema={
        "type": "object",
        "properties": {
            "play_id": {"type": "string"},
            "played_at": {"type": "string"},
            "precision": {"type": "string"},
            "track": {"type": "string"},
            "ms_played": {"type": "integer"},
            "uri": {"type": "string"},
        },
    },
    cursor_field="played_at",
    consent_time_field="played_at",
)
RULE = RecordRule(
    rule_id="plays-minute",
    version=1,
    stream="plays",
    time_field="played_at",
    window_seconds=60,
    match_fields=("track",),
    coarse_field="precision",
    coarse_values=("minute",),
    precision_order=("minute", "second", "millisecond"),
)
BASIC = AcquisitionPath("basic-export", "owner_artifact")


def play(key: str, at: str, precision: str, **data: Any) -> RecordWrite:
    payload = {"play_id": key, "played_at": at, "precision": precision, "track": "Song", **data}
    return RecordWrite("plays", key, payload, "2024-05-01T00:00:00.000Z")


def held_play(write: RecordWrite, record_id: int, path: str) -> CurrentRecord:
    return CurrentRecord(
        record_id, orjson.dumps(write.data), 1, False, frozenset([path]), 3, write.emitted_at
    )


def plan_plays(
    writes: list[RecordWrite], held: dict[str, CurrentRecord], path: AcquisitionPath
) -> BatchPlan:
    keys = MatchKeys(RULE)
    candidates: dict[str, list[str]] = {}
    for key, record in held.items():
        found = keys(record.data)
        if found is not None:
            candidates.setdefault(found, []).append(key)
    return plan_batch(PLAYS, path, STAGE, held, writes, Matching(RULE, candidates, keys))


PRECISE = play("p1", "2024-03-01T10:15:42.120Z", "millisecond", uri="spotify:track:1")
COARSE = play("c1", "2024-03-01T10:15:00Z", "minute", ms_played=181000)


def test_a_coarse_entry_fills_the_precise_record_of_the_same_event() -> None:
    result = plan_plays([COARSE], {"p1": held_play(PRECISE, 1, "api")}, BASIC)
    assert not result.inserts
    [version] = result.versions
    assert version.record_id == 1
    assert version.head.data == {**PRECISE.data, "ms_played": 181000}  # precise values win
    assert version.head.paths == {"api", "basic-export"}
    assert (result.stats.updated, result.stats.merged_with_existing) == (1, 1)
    # the same entry again (another archive repeating it) changes nothing
    filled = held_play(RecordWrite("plays", "p1", version.head.data, ""), 1, "api")
    again = plan_plays([COARSE], {"p1": filled}, BASIC)
    assert not again.versions and again.stats.duplicate == 1
    # either way the batch evidenced that play: its time is in the batch's window
    for outcome in (result, again):
        assert (outcome.stats.window_start, outcome.stats.window_end) == (
            "2024-03-01T10:15:00.000Z", "2024-03-01T10:15:00.000Z"
        )


def test_a_precise_record_absorbs_the_coarse_one_held_before_it() -> None:
    result = plan_plays([PRECISE], {"c1": held_play(COARSE, 9, "basic-export")}, API)
    [insert] = result.inserts
    assert insert.head.record_key == "p1"
    assert insert.head.data == {**PRECISE.data, "ms_played": 181000}
    assert insert.head.paths == {"notes-api", "basic-export"}
    [tombstone] = result.versions  # the coarse key is re-keyed away
    assert tombstone.record_id == 9 and tombstone.head.deleted
    assert result.stats.count_delta == 0 and result.stats.merged_with_existing == 1


def test_both_in_one_batch_are_one_record() -> None:
    result = plan_plays([COARSE, PRECISE], {}, BASIC)
    [insert] = result.inserts
    assert insert.head.record_key == "p1" and insert.head.data["ms_played"] == 181000


def test_ambiguous_coarse_evidence_keeps_both_and_says_so() -> None:
    twin = play("p2", "2024-03-01T10:15:58.000Z", "millisecond")  # played twice that minute
    held = {"p1": held_play(PRECISE, 1, "api"), "p2": held_play(twin, 2, "api")}
    result = plan_plays([COARSE], held, BASIC)
    [insert] = result.inserts
    assert insert.head.record_key == "c1" and result.stats.ambiguous == 1
    other_minute = play("c2", "2024-03-01T10:16:00Z", "minute")
    assert plan_plays([other_minute], held, BASIC).stats.ambiguous == 0


def test_precise_plays_meeting_two_held_minute_plays_report_the_ambiguity() -> None:
    first = play("c1", "2024-03-01T10:15:00Z", "minute", ms_played=9_000)
    second = play("c2", "2024-03-01T10:15:00Z", "minute", ms_played=181_000)
    held = {"c1": held_play(first, 1, "basic-export"), "c2": held_play(second, 2, "basic-export")}
    result = plan_plays([PRECISE], held, API)
    assert [i.head.record_key for i in result.inserts] == ["p1"]
    assert not result.versions  # both minute plays stay as they were
    assert result.stats.ambiguous == 2


def test_a_coarser_write_of_the_same_record_keeps_its_finer_time() -> None:
    extended = play("p1", "2024-03-01T10:15:42.000Z", "second", ms_played=181_000)
    result = plan_plays([extended], {"p1": held_play(PRECISE, 1, "api")}, BASIC)
    [version] = result.versions
    assert version.head.data["played_at"] == "2024-03-01T10:15:42.120Z"
    assert version.head.data["precision"] == "millisecond"
    assert version.head.data["ms_played"] == 181_000  # what the export adds is kept
    assert version.change.fields == ("ms_played",)


def test_a_finer_write_of_the_same_record_refines_its_time() -> None:
    second = play("p1", "2024-03-01T10:15:42.000Z", "second")
    result = plan_plays([PRECISE], {"p1": held_play(second, 1, "basic-export")}, API)
    [version] = result.versions
    assert version.head.data["played_at"] == "2024-03-01T10:15:42.120Z"
    assert version.head.data["precision"] == "millisecond"


def test_a_write_identical_to_the_held_bytes_is_a_duplicate_without_decoding_either() -> None:
    """A re-import of known records costs a byte comparison, not a decode and a diff."""
    data = {"id": "a", "title": "same"}
    write = RecordWrite("notes", "a", data, "2024-05-01T00:00:00.000Z", encoded=orjson.dumps(data))
    current = held("a", title="same")
    assert write.encoded == current.encoded
    result = plan_batch(definition(), API, STAGE, {"a": current}, [write])
    assert (result.stats.duplicate, result.inserts, result.versions) == (1, [], [])
    assert "data" not in current.__dict__  # never decoded


def test_a_head_lists_the_blobs_its_data_references_and_a_tombstone_none() -> None:
    blob = "blob_sha256_" + "a" * 64
    photos = StreamDefinition(
        name="photos",
        version=1,
        semantics="mutable_state",
        primary_key=("id",),
        schema={"type": "object", "properties": {"id": {}, "image": {}, "files": {}}},
        blob_fields=("image", "files[].blob_ref"),
    )
    image = {"blob_id": blob, "mime_type": "image/png", "size_bytes": 1, "sha256": "a" * 64}
    data = {"id": "p", "image": image, "files": [{"blob_ref": image}, {"name": "no content"}]}
    plan = plan_batch(photos, API, STAGE, {}, [RecordWrite("photos", "p", data, "t")])
    [insert] = plan.inserts
    assert [(u.field, u.blob_id, u.mime_type) for u in insert.head.blobs] == [
        ("image", blob, "image/png"),
        ("files", blob, "image/png"),
    ]
    held = CurrentRecord(1, orjson.dumps(data), 1, False, frozenset({"notes-api"}), STAGE, "t")
    gone = RecordWrite("photos", "p", {"id": "p"}, "t", op="delete")
    [tombstone] = plan_batch(photos, API, STAGE + 1, {"p": held}, [gone]).versions
    assert tombstone.head.deleted and tombstone.head.blobs == ()
