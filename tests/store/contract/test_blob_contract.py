"""The store contract for blobs, owner writes and request filters: references follow record
versions through stages, holds keep handed-over content until its stage ends, the garbage
collector deletes only what nothing uses, the owner's delete is authoritative, the push path
keeps its state, and `ReadScope.filters` narrow every read in the store."""

from __future__ import annotations

from typing import Any

import pytest

from ownstream.errors import ConnectionNotFound, RunLeaseLost
from ownstream.model import FieldFilter, ReadScope, RecordWrite, StreamDefinition
from ownstream.store.base import BlobAccess
from ownstream.store.planner import OWNER_EDITOR

from .conftest import NOTES, Harness, gone, note

PHOTOS = StreamDefinition(
    name="photos",
    version=1,
    semantics="mutable_state",
    primary_key=("id",),
    schema={
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "image": {"type": "object", "x_pdpp_type": "blob_ref"},
            "files": {"type": "array", "items": {"type": "object", "properties": {
                "blob_ref": {"type": "object", "x_pdpp_type": "blob_ref"}}}},
        },
        "required": ["id"],
    },
    cursor_field="at",
    consent_time_field="at",
    blob_fields=("image", "files[].blob_ref"),
)
X, Y, Z = ("blob_sha256_" + digit * 64 for digit in "abc")


def ref(blob_id: str, mime: str = "image/png") -> dict[str, Any]:
    return {"blob_id": blob_id, "mime_type": mime, "size_bytes": 3, "sha256": blob_id[-64:]}


def photo(key: str, **data: Any) -> RecordWrite:
    return RecordWrite("photos", key, {"id": key, "at": "2024-05-01T00:00:00Z", **data},
                       "2024-05-01T00:00:00.000Z")


def photo_gone(key: str) -> RecordWrite:
    return RecordWrite("photos", key, {"id": key}, "2024-05-01T00:00:00.000Z", op="delete")


def scope(*connection_ids: str, fields: tuple[str, ...] = PHOTOS.fields, **extra: Any) -> ReadScope:
    return ReadScope(PHOTOS, connection_ids, fields, **extra)


def store_photos(
    harness: Harness, connection_id: str, records: list[RecordWrite], held: list[str]
) -> None:
    stage = harness.stage(connection_id)
    harness.store.hold_blobs(stage, held)
    harness.write(stage, records, PHOTOS)
    harness.publish(stage)


def mime(harness: Harness, scopes: list[ReadScope], blob_id: str) -> str | None:
    found = harness.store.readable_blob(scopes, blob_id)
    return None if found is None else found.mime_type


def collected(harness: Harness) -> list[str]:
    deleted: list[str] = []
    harness.store.collect_blob_garbage(deleted.append)
    return deleted


def test_a_blob_is_readable_through_a_visible_record_that_holds_it_in_a_granted_field(
    harness: Harness,
) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    stage = harness.stage(a)
    harness.store.hold_blobs(stage, [X, Y])
    harness.write(stage, [photo("p1", image=ref(X)), photo("p2", files=[{"blob_ref": ref(Y)}])],
                  PHOTOS)
    store = harness.store
    assert mime(harness, [scope(a)], X) is None  # staged: not yet anyone's to read
    harness.publish(stage)
    assert store.readable_blob([scope(a)], X) == BlobAccess("image/png", "photos", a)
    assert mime(harness, [scope(a)], Y) == "image/png"  # inside an array of objects
    assert mime(harness, [scope(a, fields=("id", "files"))], X) is None
    assert mime(harness, [scope(a, fields=("id", "files"))], Y) == "image/png"
    assert mime(harness, [scope(b)], X) is None
    assert mime(harness, [scope(a, since="2025-01-01T00:00:00.000Z")], X) is None
    assert mime(harness, [scope(a, resources=("p2",))], X) is None
    assert mime(harness, [scope(b), scope(a)], X) == "image/png"  # one of the scopes
    assert mime(harness, [scope(a)], Z) is None
    narrowed = scope(a, filters=(FieldFilter("id", "eq", "p2"),))
    assert mime(harness, [narrowed], X) is None


def test_a_record_may_name_only_blobs_its_connection_has(harness: Harness) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    store_photos(harness, a, [photo("p1", image=ref(X))], [X])
    other = harness.stage(b)
    assert harness.store.hold_known_blobs(other, [X, Y]) == set()
    harness.publish(other)
    own = harness.stage(a)
    assert harness.store.hold_known_blobs(own, [X, Y]) == {X}


def test_a_blob_goes_only_when_its_last_reference_is_published_away(harness: Harness) -> None:
    a = harness.connection("a")
    store_photos(harness, a, [photo("p1", image=ref(X)), photo("p2", image=ref(Y)),
                              photo("p3", image=ref(Y))], [X, Y])
    assert collected(harness) == []
    stage = harness.stage(a)
    harness.write(stage, [photo("p1", caption="no image now"), photo_gone("p2")], PHOTOS)
    assert collected(harness) == []  # readers still see the published versions that hold them
    assert mime(harness, [scope(a)], X) == "image/png"
    harness.publish(stage)
    assert collected(harness) == [X]  # p3 still holds Y
    assert mime(harness, [scope(a)], X) is None
    store_photos(harness, a, [photo_gone("p3")], [])
    assert collected(harness) == [Y]
    assert collected(harness) == []


def test_a_version_rewritten_within_its_stage_releases_what_it_held(harness: Harness) -> None:
    a = harness.connection("a")
    stage = harness.stage(a)
    harness.store.hold_blobs(stage, [X, Y])
    harness.write(stage, [photo("p1", image=ref(X))], PHOTOS)
    harness.write(stage, [photo("p1", image=ref(Y))], PHOTOS)
    harness.publish(stage)
    assert collected(harness) == [X]
    assert mime(harness, [scope(a)], Y) == "image/png"


def test_holds_keep_handed_over_content_until_the_stage_ends(harness: Harness) -> None:
    a = harness.connection("a")
    store_photos(harness, a, [photo("p1", image=ref(X))], [X])
    stage = harness.stage(a)
    harness.store.hold_blobs(stage, [Y, Z])
    harness.write(stage, [photo("p2", image=ref(Y))], PHOTOS)
    assert harness.store.queue_unused_blobs([X, Y, Z]) == 0  # referenced, or held
    assert collected(harness) == []
    harness.store.abandon(stage, {"code": "boom", "message": "the import failed"})
    assert sorted(collected(harness)) == [Y, Z]
    assert mime(harness, [scope(a)], X) == "image/png"


def test_an_unknown_file_is_queued_and_collected(harness: Harness) -> None:
    assert harness.store.queue_unused_blobs([Z]) == 1
    assert collected(harness) == [Z]


def test_a_failing_deletion_leaves_the_queue_for_the_next_collection(harness: Harness) -> None:
    a = harness.connection("a")
    store_photos(harness, a, [photo("p1", image=ref(X))], [X])
    store_photos(harness, a, [photo_gone("p1")], [])

    def refuse(blob_id: str) -> None:
        raise OSError("the disk is read-only")

    with pytest.raises(OSError):
        harness.store.collect_blob_garbage(refuse)
    assert collected(harness) == [X]


def test_holds_are_fenced_by_the_lease(harness: Harness) -> None:
    a = harness.connection("a")
    slow = harness.stage(a)
    harness.clock.advance(120)
    winner = harness.stage(a)
    with pytest.raises(RunLeaseLost):
        harness.store.hold_blobs(slow, [X])
    with pytest.raises(RunLeaseLost):
        harness.store.hold_known_blobs(slow, [X])
    harness.publish(winner)
    assert harness.store.queue_unused_blobs([X]) == 1  # the lost stage holds nothing


def test_a_deleted_connection_releases_its_blobs_and_holds(harness: Harness) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    store_photos(harness, a, [photo("p1", image=ref(X)), photo("p2", image=ref(Y))], [X, Y])
    store_photos(harness, b, [photo("q1", image=ref(Y))], [Y])
    crashed = harness.stage(a)
    harness.store.hold_blobs(crashed, [Z])
    harness.clock.advance(120)  # its process died: the lease lapsed
    harness.store.delete_connection(a, "owner")
    assert sorted(collected(harness)) == [X, Z]
    assert mime(harness, [scope(b)], Y) == "image/png"


def test_the_owners_delete_is_authoritative_and_sticks_until_the_source_changes(
    harness: Harness,
) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("n1", title="shared")], connector="notes-api")
    harness.collect(a, [note("n1", title="shared")], connector="notes-export")
    path_delete = harness.stage(a)  # a path cannot delete what another path evidences…
    assert harness.write(path_delete, [gone("n1")]).skipped == 1
    harness.publish(path_delete)
    owner = harness.stage(a, OWNER_EDITOR, "owner_edit")  # …the owner can
    assert harness.write(owner, [gone("n1")]).deleted == 1
    harness.publish(owner)
    assert harness.live([a]) == {}
    assert [e.connector_key for e in harness.store.record_provenance(a, "notes", "n1")][-1] == (
        OWNER_EDITOR
    )
    again = harness.stage(a)
    assert harness.write(again, [note("n1", title="shared")]).skipped == 1  # seen again
    harness.publish(again)
    assert harness.live([a]) == {}
    changed = harness.stage(a, "notes-export", "owner_artifact")
    assert harness.write(changed, [note("n1", title="edited at the source")]).new == 1
    harness.publish(changed)
    assert harness.live([a]) == {(a, "n1"): {"id": "n1", "title": "edited at the source"}}
    only_path = harness.stage(a, "notes-export", "owner_artifact")  # its evidence alone now
    assert harness.write(only_path, [gone("n1")]).deleted == 1


def test_a_paths_state_is_replaced_outside_any_stage(harness: Harness) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("n1")])
    harness.publish(harness.stage(a), states={"notes": {"after": 1}})
    store = harness.store
    store.put_connection_state(a, "owner-push", {"notes": {"page": 2}, "photos": "x"})
    store.put_connection_state(a, "owner-push", {"notes": {"page": 3}})
    assert store.connection_state(a, "owner-push") == {"notes": {"page": 3}}
    assert store.connection_state(a, "notes-api") == {"notes": {"after": 1}}
    with pytest.raises(ConnectionNotFound):
        store.put_connection_state("cin_nope", "owner-push", {})


def test_request_filters_narrow_reads_in_the_store(harness: Harness) -> None:
    a = harness.connection("a")
    harness.collect(a, [
        note("n1", title="one", at="2024-01-01T10:00:00Z"),
        note("n2", title="two", at="2024-01-01T12:00:00+01:00"),  # 11:00 UTC
        note("n3", title="three", at="2024-01-02T00:00:00Z"),
    ])

    def keys(*filters: FieldFilter) -> list[str]:
        read = ReadScope(NOTES, (a,), NOTES.fields, filters=filters)
        page, _ = harness.store.records_page(read, limit=10, order="asc")
        return [r.record_key for r in page]

    assert keys(FieldFilter("title", "eq", "two")) == ["n2"]
    noon = "2024-01-01T11:00:00.000Z"
    assert keys(FieldFilter("at", "gte", noon, moment=True)) == ["n2", "n3"]
    assert keys(FieldFilter("at", "gt", noon, moment=True)) == ["n3"]
    assert keys(FieldFilter("at", "lte", noon, moment=True)) == ["n1", "n2"]
    assert keys(FieldFilter("at", "lt", noon, moment=True)) == ["n1"]
    assert keys(FieldFilter("at", "lt", noon, moment=True),
                FieldFilter("title", "eq", "two")) == []
    read = ReadScope(NOTES, (a,), NOTES.fields, filters=(FieldFilter("title", "eq", "one"),))
    [(count, _)] = harness.store.scoped_count(read).values()
    assert count == 1
