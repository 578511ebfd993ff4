"""Blobs end to end: stored through the run protocol by an importer, served by
`/v1/blobs/{id}` only through a record the bearer may read, deleted with their last reference."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from typing import Any

import pytest

from ownstream.blobs import STALE_TEMP_SECONDS
from ownstream.errors import RunFailed
from ownstream.owner import ConnectionOperations, WriteOperations
from ownstream.scheduler import Worker
from tests.api.conftest import assert_error

from .conftest import MAX_BLOB_BYTES, Photos

JPEG = b"\xff\xd8\xff\xe0 a small jpeg " * 20
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def blob_id(content: bytes) -> str:
    return "blob_sha256_" + hashlib.sha256(content).hexdigest()


def records(photos: Photos, token: str, stream: str = "photos") -> dict[str, Any]:
    response = photos.get(f"/v1/streams/{stream}/records?limit=100", token)
    assert response.status_code == 200, response.text
    return {r["id"]: r["data"] for r in response.json()["data"]}


def test_a_granted_record_leads_to_its_blob_with_safe_headers(photos: Photos) -> None:
    photos.import_zip({"sunset.jpg": JPEG, "drawing.svg": SVG})
    token = photos.grant([{"name": "photos"}])
    found = records(photos, token)
    image = found["drawing.svg"]["image"]
    assert image == {
        "blob_id": blob_id(SVG),
        "mime_type": "image/svg+xml",
        "size_bytes": len(SVG),
        "sha256": hashlib.sha256(SVG).hexdigest(),
        "fetch_url": f"/v1/blobs/{blob_id(SVG)}",
    }
    response = photos.get(image["fetch_url"], token)
    assert response.status_code == 200 and response.content == SVG
    headers = response.headers
    assert headers["content-type"] == "image/svg+xml"  # as the record says, never sniffed
    assert headers["content-length"] == str(len(SVG))
    assert headers["content-disposition"] == "attachment"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox"
    assert headers["cache-control"] == "private, no-store"
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"] == f'"{hashlib.sha256(SVG).hexdigest()}"'
    single = photos.get("/v1/streams/photos/records/sunset.jpg", token).json()
    assert single["data"]["image"]["fetch_url"] == f"/v1/blobs/{blob_id(JPEG)}"
    # the owner reads it too (self-export)
    assert photos.get(image["fetch_url"], photos.owner_token).content == SVG


def test_a_clients_blob_read_is_in_the_access_log(photos: Photos) -> None:
    connection_id = photos.import_zip({"sunset.jpg": JPEG}).receipt.connection_id
    token = photos.grant([{"name": "photos"}])
    assert photos.get(f"/v1/blobs/{blob_id(JPEG)}", token).status_code == 200
    photos.home.usage.flush()
    [count] = photos.home.store.access_log()
    assert (count.stream, count.connection_id, count.reads) == ("photos", connection_id, 1)


def test_ranges_head_and_etags(photos: Photos) -> None:
    photos.import_zip({"sunset.jpg": JPEG})
    token = photos.grant([{"name": "photos"}])
    url = f"/v1/blobs/{blob_id(JPEG)}"
    part = photos.get(url, token, Range="bytes=4-9")
    assert part.status_code == 206 and part.content == JPEG[4:10]
    assert part.headers["content-range"] == f"bytes 4-9/{len(JPEG)}"
    assert part.headers["content-length"] == "6"
    tail = photos.get(url, token, Range="bytes=-5")
    assert tail.status_code == 206 and tail.content == JPEG[-5:]
    rest = photos.get(url, token, Range=f"bytes={len(JPEG) - 3}-")
    assert rest.content == JPEG[-3:]
    past = photos.get(url, token, Range=f"bytes={len(JPEG)}-")
    assert past.status_code == 416 and past.json()["error"]["code"] == "range_not_satisfiable"
    assert past.headers["content-range"] == f"bytes */{len(JPEG)}"
    several = photos.get(url, token, Range="bytes=0-1,4-5")  # not served in parts: the whole
    assert several.status_code == 200 and several.content == JPEG
    etag = part.headers["etag"]
    assert photos.get(url, token, **{"If-None-Match": etag}).status_code == 304
    stale = photos.get(url, token, Range="bytes=0-1", **{"If-Range": '"another"'})
    assert stale.status_code == 200 and stale.content == JPEG
    head = photos.http.head(url, headers={"Authorization": f"Bearer {token}"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(JPEG))
    assert head.headers["content-disposition"] == "attachment"


def test_without_a_readable_record_a_blob_is_not_found(photos: Photos) -> None:
    first = photos.import_zip({"sunset.jpg": JPEG}).receipt.connection_id
    second = photos.import_zip({"other.png": b"another picture"}).receipt.connection_id
    url = f"/v1/blobs/{blob_id(JPEG)}"
    denied = {
        "the field": photos.grant([{"name": "photos", "fields": ["photo_id", "caption"]}]),
        "the stream": photos.grant([{"name": "albums", "fields": ["album_id", "title"]}]),
        "the connection": photos.grant([{"name": "photos", "connection_ids": [second]}]),
        "the time window": photos.grant(
            [{"name": "photos", "time_range": {"since": "2025-01-01T00:00:00Z"}}]
        ),
        "the resources": photos.grant([{"name": "photos", "resources": ["other.png"]}]),
    }
    unknown = photos.get(f"/v1/blobs/blob_sha256_{'0' * 64}", photos.owner_token)
    expected = assert_error(unknown, 404, "blob_not_found")
    for lacking, token in denied.items():
        response = photos.get(url, token)
        error = assert_error(response, 404, "blob_not_found")
        # the same answer as for an id that does not exist: nothing about what the owner holds
        assert {**error, "request_id": "", "message": ""} == {
            **expected, "request_id": "", "message": "",
        }, lacking
        assert error["message"] == f"no blob {blob_id(JPEG)!r}", lacking
    assert_error(photos.get("/v1/blobs/../secret.key", photos.owner_token), 404, "not_found")
    assert_error(photos.get("/v1/blobs/not-a-blob", photos.owner_token), 404, "blob_not_found")
    # the cover is the same content, reachable through the album's granted `cover` field
    cover = photos.grant([{"name": "albums", "connection_ids": [first]}])
    assert photos.get(url, cover).content == JPEG


def test_content_is_stored_once_and_goes_with_its_last_reference(photos: Photos) -> None:
    first = photos.import_zip({"a.jpg": JPEG, "b.svg": SVG}).receipt.connection_id
    second = photos.import_zip({"copy.jpg": JPEG}).receipt.connection_id
    assert photos.blob_files() == sorted([blob_id(JPEG), blob_id(SVG)])  # one file per content
    writes = WriteOperations(photos.home)
    second_only = photos.grant([{"name": "photos", "connection_ids": [second]}])
    writes.delete_record("photos", "a.jpg", first)
    writes.delete_record("albums", "archive-1", first)  # its cover is a.jpg's content too
    assert photos.blob_files() == sorted([blob_id(JPEG), blob_id(SVG)])
    first_only = photos.grant([{"name": "photos", "connection_ids": [first]}])
    assert_error(photos.get(f"/v1/blobs/{blob_id(JPEG)}", first_only), 404, "blob_not_found")
    assert photos.get(f"/v1/blobs/{blob_id(JPEG)}", second_only).content == JPEG
    writes.delete_record("photos", "copy.jpg")
    writes.delete_record("albums", "archive-2")
    assert photos.blob_files() == [blob_id(SVG)]  # the last reference went: so did the file
    assert_error(photos.get(f"/v1/blobs/{blob_id(JPEG)}", photos.owner_token), 404,
                 "blob_not_found")


def test_a_deleted_connection_takes_its_blobs_along(photos: Photos) -> None:
    first = photos.import_zip({"a.jpg": JPEG, "b.svg": SVG}).receipt.connection_id
    photos.import_zip({"copy.jpg": JPEG})
    result = ConnectionOperations(photos.home).delete(first)
    assert result["blobs_deleted"] == 1
    assert photos.blob_files() == [blob_id(JPEG)]  # still referenced by the other connection


def test_an_oversize_or_bomb_member_is_refused(photos: Photos) -> None:
    bomb = b"\0" * (8 * 1024 * 1024)  # a few KiB compressed, 128 times the limit expanded
    at_limit = os.urandom(MAX_BLOB_BYTES)
    tracemalloc.start()
    members = {"bomb.raw": bomb, "edge.raw": at_limit, "over.raw": at_limit + b"!"}
    result = photos.import_zip(members)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    counts = result.receipt.counts
    assert counts["accepted"] == 2 and counts["rejected"] == 2  # edge.raw and its album
    assert [r["reason"] for r in counts["rejections"]] == ["too_large"]
    assert sorted(e["key"] for e in counts["rejections"][0]["examples"]) == ["bomb.raw",
                                                                            "over.raw"]
    assert photos.blob_files() == [blob_id(at_limit)]
    assert list(photos.home.blobs.temp.iterdir()) == []  # nothing of them stays anywhere
    assert peak < 4 * 1024 * 1024  # read a chunk at a time, never expanded in memory


@pytest.mark.parametrize(
    ("how", "reason"),
    [("unknown_ref", "unknown_blob"), ("wrong_size", "blob_size_mismatch"),
     ("borrowed_ref", "unknown_blob")],
)
def test_a_record_names_only_blobs_its_connection_has(
    photos: Photos, how: str, reason: str
) -> None:
    photos.import_zip({"private.jpg": JPEG})  # another connection holds this content
    result = photos.import_file(f"{how} {blob_id(JPEG)}".encode(), "photos-probe")
    counts = result.receipt.counts
    assert counts["accepted"] == 0 and [r["reason"] for r in counts["rejections"]] == [reason]
    # the content it handed over is not kept for a record that was refused
    assert photos.blob_files() == [blob_id(JPEG)]


@pytest.mark.parametrize("how", ["escape", "wrong_hash"])
def test_a_blob_the_runtime_cannot_verify_fails_the_import(photos: Photos, how: str) -> None:
    with pytest.raises(RunFailed) as failed:
        photos.import_file(how.encode(), "photos-probe")
    assert failed.value.extra["connector_error"]["code"] == "protocol_violation"
    assert photos.blob_files() == [] and list(photos.home.blobs.temp.iterdir()) == []
    assert photos.home.store.connections() == []


def test_a_subprocess_connector_hands_blobs_over_the_same_way(
    photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNSTREAM_CONNECTOR_TRANSPORT", "subprocess")
    result = photos.import_zip({"sunset.jpg": JPEG, "big.raw": b"\0" * (2 * MAX_BLOB_BYTES)})
    assert result.receipt.counts["rejections"][0]["reason"] == "too_large"
    assert photos.blob_files() == [blob_id(JPEG)]
    assert photos.get(f"/v1/blobs/{blob_id(JPEG)}", photos.owner_token).content == JPEG


def test_the_worker_sweeps_files_nothing_references(photos: Photos) -> None:
    photos.import_zip({"a.jpg": JPEG})
    blobs = photos.home.blobs
    stray = blobs.path(blob_id(b"left by a crash"))
    stray.parent.mkdir(mode=0o700, exist_ok=True)
    stray.write_bytes(b"left by a crash")
    dead = blobs.run_area()
    (dead / "blob-x").write_bytes(b"a dead run's content")
    os.utime(dead, (0, 0))
    fresh = blobs.run_area()  # a live run's area is left alone
    Worker(photos.home.runtime()).maintain()
    assert photos.blob_files() == [blob_id(JPEG)]
    assert not dead.exists() and fresh.exists()
    assert STALE_TEMP_SECONDS >= 3600


def test_blob_files_are_private(photos: Photos) -> None:
    photos.import_zip({"a.jpg": JPEG})
    path = photos.home.blobs.path(blob_id(JPEG))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert photos.home.blobs.root.stat().st_mode & 0o777 == 0o700
