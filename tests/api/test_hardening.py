"""Findings of a security review, each pinned: cursors reveal and accept nothing a grant hides,
schemas are projected, deleted connections and their ids never come back."""

from __future__ import annotations

import base64

from ownstream.owner import ConnectionOperations

from .conftest import World, assert_error


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


def test_stream_metadata_shows_only_the_granted_fields(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "title"]}])
    for body in (
        w.cget("/v1/streams/notes", token).json(),
        w.cget("/v1/schema", token).json()["streams"][0],
    ):
        assert set(body["schema"]["properties"]) == {"note_id", "title"}
        assert set(body["schema"]["required"]) <= {"note_id", "title"}
        assert body["granted_fields"] == ["note_id", "title"]


def test_deleted_connections_leave_schema_and_ids_for_good(world: World) -> None:
    w = world
    bob = w.conns["bob"]
    _, token = w.grant([{"name": "notes"}])
    before = _record_ids(w)
    ConnectionOperations(w.home).delete(bob)
    listed = w.cget("/v1/schema", token).json()["streams"][0]["granted_connections"]
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
