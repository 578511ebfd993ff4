"""Connection-scoped storage (SQLite): isolation, multi-path writes, versions, tombstones.

Writes go through real runs and imports; assertions read the owner surface and, for versions
and the change log, the database itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ownstream.model import ReadScope, StreamDefinition
from ownstream.records import canonical_key, changed_fields, merge, message_key, sortable
from tests.runtime.messages import done, entry, identity_msg, item, journal_identity, record

ACCT = identity_msg("acct-1")


def changes(owner: Any, connection_id: str, stream: str, key: str) -> list[tuple[Any, ...]]:
    with owner.db() as db:
        rows = db.execute(
            "SELECT c.seq, c.version, c.op, c.fields FROM record_changes c "
            "JOIN records r ON r.record_id = c.record_id WHERE r.connection_id = ? "
            "AND r.stream = ? AND r.record_key = ? AND r.parked = 0 ORDER BY c.seq",
            (connection_id, stream, key),
        ).fetchall()
    return [
        (seq, version, op, None if fields is None else json.loads(fields))
        for seq, version, op, fields in rows
    ]


def stored(owner: Any, connection_id: str, stream: str, key: str) -> Any:
    """(data, version, deleted) of a record, tombstones included; None when absent."""
    with owner.db() as db:
        row = db.execute(
            "SELECT data, version, deleted FROM records WHERE connection_id = ? AND stream = ?"
            " AND record_key = ? AND parked = 0",
            (connection_id, stream, key),
        ).fetchone()
    return None if row is None else (json.loads(row[0]), row[1], bool(row[2]))


def run(owner: Any, name: str, cid: str, steps: list[dict[str, Any]], **kw: Any) -> Any:
    owner.script(name, steps, identity=kw.pop("identity", "acct-1"))
    [outcome] = owner.runtime().run_connection(cid)
    assert outcome.status == "succeeded", outcome.error
    return outcome


# ------------------------------------------------------------------------------------------
# two connections, one connector, equal keys
# ------------------------------------------------------------------------------------------


def test_equal_keys_in_two_connections_of_one_connector_stay_separate(owner: Any) -> None:
    owner.add_connector("shell_notes")
    alice = owner.json("connect", "shell-notes", "--setting", "account=alice")["connection_id"]
    bob = owner.json("connect", "shell-notes", "--setting", "account=bob",
                     "--setting", "count=2")["connection_id"]
    assert alice != bob
    owner.json("run", alice)
    owner.json("run", bob)
    owner.json("run", alice)  # a re-run of one never freshens the other

    mine, theirs = owner.records(alice, "notes"), owner.records(bob, "notes")
    assert sorted(mine) == ["note-1", "note-2", "note-3"] and sorted(theirs) == ["note-1", "note-2"]
    assert mine["note-1"]["title"] == "note 1 of alice"
    assert theirs["note-1"]["title"] == "note 1 of bob"
    assert stored(owner, bob, "notes", "note-1")[1] == 1
    assert [op for _, _, op, _ in changes(owner, bob, "notes", "note-1")] == ["insert"]

    read = owner.json("records", alice, "notes", "--limit", "10")
    assert {r["connection_id"] for r in read["data"]} == {alice}
    assert [r["id"] for r in read["data"]] == ["note-3", "note-2", "note-1"]  # newest first
    assert read["has_more"] is False
    both = owner.home().store.records_page(
        ReadScope(owner.home().catalog.definition("notes"), (alice, bob), ("id", "title")),
        limit=10,
    )[0]
    assert sorted((r.connection_id, r.record_key) for r in both) == sorted(
        [(alice, f"note-{i}") for i in (1, 2, 3)] + [(bob, f"note-{i}") for i in (1, 2)]
    )
    assert all(set(r.data) == {"id", "title"} for r in both)  # the scope's fields only
    counts = {(c.connection_id, c.stream): c.record_count
              for c in owner.home().store.stream_counts()}
    assert counts == {(alice, "notes"): 3, (bob, "notes"): 2}


def test_a_delete_in_one_connection_leaves_the_siblings_equal_key(scripted: Any) -> None:
    a = scripted.connect_scripted("a", identity="acct-1")
    b = scripted.connect_scripted("b", identity="acct-2")
    run(scripted, "a", a, [ACCT, item("r1", title="a"), done(1)])
    run(scripted, "b", b, [identity_msg("acct-2"), item("r1", title="b"), done(1)],
        identity="acct-2")
    outcome = run(scripted, "a", a, [ACCT, record("items", "r1", {"id": "r1"}, op="delete"),
                                     done(1)])
    assert outcome.tally.deleted == 1
    assert scripted.records(a, "items") == {}
    assert scripted.records(b, "items") == {"r1": {"id": "r1", "title": "b"}}
    assert stored(scripted, b, "items", "r1") == ({"id": "r1", "title": "b"}, 1, False)


# ------------------------------------------------------------------------------------------
# several acquisition paths into one connection
# ------------------------------------------------------------------------------------------


def test_paths_merge_without_losing_fields_and_delete_only_their_own(journal: Any) -> None:
    cid = journal.connect_scripted("api", identity="u1", connector="journal-api")

    def api(*steps: dict[str, Any]) -> Any:
        records = sum(1 for s in steps if s["type"] == "RECORD")
        return run(journal, "api", cid, [journal_identity("u1"), *steps, done(records)],
                   identity="u1")

    def export(name: str, *lines: dict[str, Any]) -> dict[str, Any]:
        path = journal.import_file(name, list(lines), header={"user": "u1"})
        result: dict[str, Any] = journal.json("import", "journal-export", path)
        assert result["connection_id"] == cid
        return result

    first = api(entry("e1", text="api text", mood="calm"), entry("e2", text="api only"))
    imported = export(
        "one.jsonl",
        {"entry_id": "e1", "written_at": "2024-01-01T08:00:00Z", "text": "export text",
         "location": "Oslo"},
        {"entry_id": "e3", "written_at": "2024-01-02T08:00:00Z", "text": "export only"},
    )
    assert imported["counts"]["updated"] == 1 and imported["counts"]["new"] == 1
    e1 = journal.records(cid, "journal_entries")["e1"]
    # the export supplies text and location; mood, which only the API supplied, is kept
    assert e1 == {"entry_id": "e1", "written_at": "2024-01-01T08:00:00Z",
                  "text": "export text", "mood": "calm", "location": "Oslo"}
    provenance = journal.home().store.record_provenance(cid, "journal_entries", "e1")
    assert [(p.connector_key, p.acquisition_method, p.batch_id) for p in provenance] == [
        ("journal-api", "provider_api", None),
        ("journal-export", "owner_artifact", imported["batch_id"]),
    ]
    assert provenance[0].run_id == first.run_id
    assert provenance[1].run_id == imported["run_id"]

    # the API again, without location: the export's field survives
    api(entry("e1", text="api text 2", mood="calm"))
    assert journal.records(cid, "journal_entries")["e1"]["location"] == "Oslo"
    assert journal.records(cid, "journal_entries")["e1"]["text"] == "api text 2"

    # the API may delete only what it alone evidences
    outcome = api(
        record("journal_entries", "e1", {"entry_id": "e1"}, op="delete"),
        record("journal_entries", "e2", {"entry_id": "e2"}, op="delete"),
        record("journal_entries", "e3", {"entry_id": "e3"}, op="delete"),
    )
    assert (outcome.tally.deleted, outcome.tally.skipped) == (1, 2)
    assert sorted(journal.records(cid, "journal_entries")) == ["e1", "e3"]
    assert stored(journal, cid, "journal_entries", "e2")[2] is True  # a tombstone

    # the export may delete e3 (only it evidences e3) but not e1 (the API does too)
    receipt = export(
        "two.jsonl",
        {"_op": "delete", "entry_id": "e1", "written_at": "2024-01-01T08:00:00Z"},
        {"_op": "delete", "entry_id": "e3", "written_at": "2024-01-02T08:00:00Z"},
    )
    assert receipt["counts"]["skipped"] == 1  # the deferred delete of e1
    assert sorted(journal.records(cid, "journal_entries")) == ["e1"]
    assert [op for _, _, op, _ in changes(journal, cid, "journal_entries", "e3")] == [
        "insert", "delete",
    ]


def test_a_single_path_replaces_its_mutable_state_and_enriches_append_only(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    at = "2024-01-01T00:00:00Z"
    run(scripted, "c", cid, [ACCT, item("r1", title="t", body="b"),
                             record("events", "e1", {"id": "e1", "at": at, "kind": "open"}),
                             done(2)])
    run(scripted, "c", cid, [ACCT, item("r1", title="t2"),
                             record("events", "e1", {"id": "e1", "at": at}), done(2)])
    # mutable_state, evidenced only by this path: the record is what the path now reports
    assert scripted.records(cid, "items")["r1"] == {"id": "r1", "title": "t2"}
    # append_only: events are enriched, never shrunk
    assert scripted.records(cid, "events")["e1"] == {"id": "e1", "at": at, "kind": "open"}


# ------------------------------------------------------------------------------------------
# versions, change log, tombstones
# ------------------------------------------------------------------------------------------


def test_versions_and_the_change_log_grow_monotonically(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    delete = record("items", "r1", {"id": "r1"}, op="delete")
    histories = [
        [ACCT, item("r1", title="a", body="x"), done(1)],
        [ACCT, item("r1", title="a", body="x"), done(1)],  # unchanged: no new version
        [ACCT, item("r1", title="b", body="x"), done(1)],
        [ACCT, delete, done(1)],
        [ACCT, delete, done(1)],  # deleting a tombstone changes nothing
        [ACCT, item("r1", title="c"), done(1)],  # resurrected
    ]
    counts = [run(scripted, "c", cid, steps).tally for steps in histories]
    # a record that comes back after a delete is new again
    assert [(c.new, c.updated, c.duplicate, c.deleted) for c in counts] == [
        (1, 0, 0, 0), (0, 0, 1, 0), (0, 1, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (1, 0, 0, 0),
    ]
    log = changes(scripted, cid, "items", "r1")
    # an insert's entry says it is an insert; an update lists what it changed (and keeps
    # the previous values of just those fields); a tombstone keeps the data on the record
    assert [(version, op, fields) for _, version, op, fields in log] == [
        (1, "insert", None),
        (2, "update", ["title"]),
        (3, "delete", None),
        (4, "insert", ["body", "title"]),
    ]
    seqs = [seq for seq, *_ in log]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert stored(scripted, cid, "items", "r1") == ({"id": "r1", "title": "c"}, 4, False)
    # every run that wrote, confirmed or deleted it is in its provenance (not the no-op delete)
    assert len(scripted.home().store.record_provenance(cid, "items", "r1")) == 5


def test_delete_on_mutable_state_tombstones(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    run(scripted, "c", cid, [ACCT, item("r1", title="a"), item("r2", title="b"), done(2)])
    outcome = run(scripted, "c", cid, [
        ACCT,
        record("items", "r1", {"id": "r1"}, op="delete"),
        record("items", "zz", {"id": "zz"}, op="delete"),  # never existed
        item("r3", title="c"),
        record("items", "r3", {"id": "r3"}, op="delete"),  # created and deleted in one batch
        done(4),
    ])
    assert outcome.tally.deleted == 2 and outcome.tally.duplicate == 1
    assert sorted(scripted.records(cid, "items")) == ["r2"]
    data, version, deleted = stored(scripted, cid, "items", "r1")
    assert (version, deleted) == (2, True) and data == {"id": "r1", "title": "a"}
    assert stored(scripted, cid, "items", "r3")[2] is True
    assert stored(scripted, cid, "items", "zz") is None
    counts = scripted.home().store.stream_counts([cid])
    assert [(c.stream, c.record_count) for c in counts] == [("items", 1)]
    show = scripted.json("records", cid, "items")
    assert [r["id"] for r in show["data"]] == ["r2"]


def test_change_sequences_are_global_and_increasing_across_connections(scripted: Any) -> None:
    a = scripted.connect_scripted("a", identity="acct-1")
    b = scripted.connect_scripted("b", identity="acct-2")
    run(scripted, "a", a, [ACCT, item("x"), done(1)])
    run(scripted, "b", b, [identity_msg("acct-2"), item("x"), done(1)], identity="acct-2")
    run(scripted, "a", a, [ACCT, item("x", title="2"), done(1)])
    seq_a = [s for s, *_ in changes(scripted, a, "items", "x")]
    seq_b = [s for s, *_ in changes(scripted, b, "items", "x")]
    assert seq_a[0] < seq_b[0] < seq_a[1]


# ------------------------------------------------------------------------------------------
# the pure record rules every backend shares (ownstream/records.py)
# ------------------------------------------------------------------------------------------


def test_the_merge_policy() -> None:
    old, new = {"id": "1", "a": 1, "b": 2}, {"id": "1", "a": 9}
    assert merge(old, new, semantics="mutable_state", other_paths=False) == new
    assert merge(old, new, semantics="mutable_state", other_paths=True) == {
        "id": "1", "a": 9, "b": 2,
    }
    assert merge(old, new, semantics="append_only", other_paths=False) == {
        "id": "1", "a": 9, "b": 2,
    }
    assert changed_fields(old, {"id": "1", "a": 1, "c": None}) == ["b", "c"]
    assert changed_fields(None, {"x": 1}) == ["x"]


def test_keys_and_sortable_values() -> None:
    compound = StreamDefinition(
        "s", 1, "mutable_state", ("a", "b"),
        {"type": "object", "properties": {"a": {}, "b": {}}},
    )
    assert canonical_key(compound, {"a": "x", "b": 2}) == '["x","2"]'
    assert canonical_key(compound, {"a": "x", "b": True}) is None
    assert canonical_key(compound, {"a": "x"}) is None
    assert message_key(["x", 2]) == '["x","2"]' and message_key("k") == "k"
    assert message_key([1.5]) is None and message_key({}) is None
    values = [-1e6, -10, -2.5, -2, -0.5, 0, 3, 25, 100.5, 1.7e12]
    assert sorted(values, key=sortable) == values
    assert sortable(None) == "" and sortable(True) == ""
    assert sorted(["2024-01-02T00:00:00Z", "2023-12-31T23:00:00Z"], key=sortable)[0].startswith(
        "2023"
    )


@pytest.mark.parametrize("semantics", ["append_only", "mutable_state"])
def test_merge_with_another_path_never_drops_a_field(semantics: str) -> None:
    old = {"id": "1", "first_only": "kept", "both": "old"}
    merged = merge(old, {"id": "1", "both": "new"}, semantics=semantics, other_paths=True)
    assert merged == {"id": "1", "first_only": "kept", "both": "new"}
