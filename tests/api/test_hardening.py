"""Findings of a security review, each pinned: cursors reveal and accept nothing a grant hides,
schemas are projected, deleted connections and their ids never come back."""

from __future__ import annotations

import base64

from ownstream.owner import ConnectionOperations

from .conftest import NOTES_DEFINITION, World, assert_error, schema_streams


def _unpadded(token: str) -> bytes:
    body = token.partition(".")[2]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_a_page_cursor_does_not_carry_a_hidden_cursor_value(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "title"]}])
    body = w.cget("/v1/streams/notes/records", token, {"limit": 1}).json()
    hidden = [r["data"]["updated_at"] for r in w.rows("notes")]
    cursor = body["next_cursor"]
    assert all(value.encode() not in _unpadded(cursor) for value in hidden)
    assert all(value[:7] not in cursor for value in hidden)


def test_a_client_cannot_write_its_own_page_position(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "title"]}])
    made_up = "pg1." + base64.urlsafe_b64encode(
        b'{"s":"notes","o":"asc","v":"2025-06","c":"","r":""}'
    ).decode().rstrip("=")
    assert_error(
        w.cget("/v1/streams/notes/records", token, {"order": "asc", "cursor": made_up}),
        400,
        "invalid_cursor",
    )


def test_stream_metadata_names_withheld_fields_but_never_their_values(
    shared_world: World,
) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "title"]}])
    secrets = {n["secret"] for doc in w.notes_data.values() for n in doc["notes"]}
    metadata = w.cget("/v1/streams/notes", token)
    full = w.cget("/v1/schema", token)
    compact = w.cget("/v1/schema", token, {"view": "compact"})
    for response in (metadata, full, compact):
        assert not [s for s in secrets if s in response.text]
    every_field = set(NOTES_DEFINITION["schema"]["properties"])
    for body in (metadata.json(), schema_streams(full.json())[0]):
        assert set(body["field_capabilities"]) == every_field
        withheld = body["field_capabilities"]["secret"]
        assert withheld["granted"] is False
        assert not any(flag["usable"] for flag in withheld["aggregation"].values())
        assert not withheld["lexical_search"]["usable"]
        assert body["granted_fields"] == ["note_id", "title"]
    flags = schema_streams(compact.json())[0]["field_capabilities"]
    assert set(flags) == every_field
    assert flags["secret"] == "t=string,g=false"
    assert flags["title"] == "t=string,lex,a=count_distinct"


def test_deleted_connections_leave_schema_and_ids_for_good(world: World) -> None:
    w = world
    bob = w.conns["bob"]
    _, token = w.grant([{"name": "notes"}])
    before = _record_ids(w)
    ConnectionOperations(w.home).delete(bob)
    listed = schema_streams(w.cget("/v1/schema", token).json())[0]["granted_connections"]
    assert bob not in {c["connection_id"] for c in listed}
    assert bob not in {
        c["connection_id"] for c in w.cget("/v1/streams/notes", token).json()["granted_connections"]
    }
    w.import_notes(
        "dora", [{**r["data"], "note_id": f"d{i}"} for i, r in enumerate(w.rows("notes"))]
    )
    after = _record_ids(w)
    deleted_ids = before - after
    assert deleted_ids and not (deleted_ids & after)  # a deleted record's id is never reused


def _record_ids(w: World) -> set[int]:
    with w.db() as db:
        return {row[0] for row in db.execute("SELECT record_id FROM records")}
