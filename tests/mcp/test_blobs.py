"""`fetch_blob` over both transports: a blob through a record the grant may read, as text or as
an embedded resource by its media type, the same bytes REST serves; anything else is
`blob_not_found`, and a blob over the bound is refused."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from mcp_types import BlobResourceContents, EmbeddedResource

from ownstream.mcp.bounds import BLOB_BYTES
from tests.blobs.conftest import Photos, photos_world

from .conftest import Connect, call, connect_to, failure, run, text

NOTE = "A note in UTF-8: café, naïve, ✓\nsecond line\n".encode()
LATIN = "not UTF-8: café".encode("latin-1")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
BIG = b"x" * (BLOB_BYTES + 1)


def blob_id(content: bytes) -> str:
    return "blob_sha256_" + hashlib.sha256(content).hexdigest()


@dataclass
class BlobWorld:
    photos: Photos
    token: str  # a grant on photos with every field
    without_image: str  # a grant on photos without the blob field


@pytest.fixture(scope="module")
def blob_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobWorld]:
    photos = photos_world(tmp_path_factory.mktemp("mcp-blobs"))
    photos.import_zip(
        {"note.txt": NOTE, "latin.txt": LATIN, "pixel.png": PNG, "big.bin": BIG}
    )
    yield BlobWorld(
        photos,
        photos.grant([{"name": "photos"}]),
        photos.grant([{"name": "photos", "fields": ["photo_id", "taken_at", "caption"]}]),
    )
    photos.home.store.close()


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest, blob_world: BlobWorld) -> Connect:
    return connect_to(blob_world.photos.home, request.param)


def test_a_text_blob_is_text_and_any_other_an_embedded_resource(
    connect: Connect, blob_world: BlobWorld
) -> None:
    photos, token = blob_world.photos, blob_world.token

    async def scenario() -> None:
        async with connect(token) as client:
            result = await client.call_tool("fetch_blob", {"blob_id": blob_id(NOTE)})
            assert not result.is_error, result.content
            [block] = result.content
            header, _, body = text(block).partition("\n")
            assert body == NOTE.decode()
            assert header == f"{blob_id(NOTE)}: text/plain, {len(NOTE)} bytes"
            assert result.structured_content == {
                "data": {
                    "blob_id": blob_id(NOTE),
                    "mime_type": "text/plain",
                    "size_bytes": len(NOTE),
                    "sha256": hashlib.sha256(NOTE).hexdigest(),
                    "returned_as": "text",
                }
            }
            # binary content, and text that does not decode, come as a base64 resource
            for content, mime_type in ((PNG, "image/png"), (LATIN, "text/plain")):
                result = await client.call_tool("fetch_blob", {"blob_id": blob_id(content)})
                assert not result.is_error, result.content
                summary, attached = result.content
                assert blob_id(content) in text(summary)
                assert isinstance(attached, EmbeddedResource)
                resource = attached.resource
                assert isinstance(resource, BlobResourceContents)
                assert resource.uri == f"pdpp://blob/{blob_id(content)}"
                assert resource.mime_type == mime_type
                assert base64.b64decode(resource.blob) == content
                assert base64.b64decode(resource.blob) == (
                    photos.get(f"/v1/blobs/{blob_id(content)}", token).content
                )
                data = (await call(client, "fetch_blob", {"blob_id": blob_id(content)}))["data"]
                assert (data["returned_as"], data["size_bytes"]) == ("resource", len(content))

    run(scenario)


def test_only_a_blob_of_a_readable_record_under_the_bound(
    connect: Connect, blob_world: BlobWorld
) -> None:
    photos = blob_world.photos

    async def scenario() -> None:
        async with connect(blob_world.token) as client:
            schema = {t.name: t.output_schema for t in (await client.list_tools()).tools}[
                "fetch_blob"
            ]
            unknown = await failure(
                client, "fetch_blob", {"blob_id": f"blob_sha256_{'0' * 64}"}, schema
            )
            assert (unknown["code"], unknown["type"]) == ("blob_not_found", "not_found_error")
            same = {**unknown, "message": ""}
            malformed = await failure(client, "fetch_blob", {"blob_id": "../etc/passwd"})
            assert {**malformed, "message": ""} == same
            too_large = await failure(client, "fetch_blob", {"blob_id": blob_id(BIG)}, schema)
            assert too_large["code"] == "blob_too_large_to_return"
            assert (too_large["size_bytes"], too_large["limit_bytes"]) == (len(BIG), BLOB_BYTES)
            missing = await failure(client, "fetch_blob", {})
            assert missing["code"] == "invalid_request"
        # a grant without the blob field reaches no blob, with the answer for an unknown id
        async with connect(blob_world.without_image) as client:
            for content in (NOTE, PNG):
                refused = await failure(client, "fetch_blob", {"blob_id": blob_id(content)})
                assert {**refused, "message": ""} == same
                rest = photos.get(f"/v1/blobs/{blob_id(content)}", blob_world.without_image)
                assert rest.status_code == 404

    run(scenario)

