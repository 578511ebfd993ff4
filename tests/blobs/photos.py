"""Test connectors (in-process, SDK generators) for blobs.

`collect` imports a ZIP of photos: each member becomes a `photos` record whose `image` is the
member's content, stored as a blob a chunk at a time, and the archive one `albums` record whose
`cover` is its first photo. A member over the run's blob size limit (however small it is
compressed) is rejected as `too_large` and the import goes on.

`misbehave` imports a text file naming one way to break the blob rules, for the runtime's
checks: `escape` (a BLOB naming a file outside the blob area), `wrong_hash`, `unknown_ref` (a
record naming a blob nobody handed over), `borrowed_ref` (a blob another connection has, named
in the file after the word), `wrong_size`.
"""

from __future__ import annotations

import mimetypes
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ownstream.runtime.sdk import (
    Message,
    Start,
    file_chunks,
    record,
    reject,
    store_blob,
)

TAKEN_AT = "2024-06-{day:02d}T12:00:00Z"


def collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
    assert start.artifact is not None
    cover = None
    with zipfile.ZipFile(start.artifact["path"]) as archive:
        for day, info in enumerate(sorted(archive.infolist(), key=lambda i: i.filename), 1):
            mime = mimetypes.guess_type(info.filename)[0] or "application/octet-stream"
            with archive.open(info) as member:
                stored = store_blob(start, file_chunks(member), mime)
            if stored is None:
                yield reject("photos", "too_large", f"{info.filename} is over the limit",
                             key=info.filename)
                continue
            yield stored.message
            cover = cover or stored.ref
            yield record(
                "photos",
                info.filename,
                {"photo_id": info.filename, "taken_at": TAKEN_AT.format(day=day),
                 "caption": f"photo {day}", "image": stored.ref},
            )
    album = {"album_id": Path(start.artifact["name"]).stem, "title": "an album"}
    yield record("albums", album["album_id"], {**album, "cover": cover} if cover else album)


def misbehave(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
    assert start.artifact is not None and start.blobs is not None
    how, _, other = Path(start.artifact["path"]).read_text().strip().partition(" ")
    stored = store_blob(start, [b"content of ", how.encode()], "text/plain")
    assert stored is not None
    message, ref = dict(stored.message), dict(stored.ref)
    if how == "escape":
        message["file"] = "../" + message["file"]
    elif how == "wrong_hash":
        message["sha256"] = "0" * 64
    elif how == "unknown_ref":
        ref = {**ref, "blob_id": "blob_sha256_" + "1" * 64, "sha256": "1" * 64}
    elif how == "borrowed_ref":
        ref = {**ref, "blob_id": other, "sha256": other.removeprefix("blob_sha256_")}
    elif how == "wrong_size":
        ref = {**ref, "size_bytes": ref["size_bytes"] + 1}
    yield message
    yield record(
        "photos",
        how,
        {"photo_id": how, "taken_at": TAKEN_AT.format(day=1), "caption": how, "image": ref},
    )
