"""Reading a blob (PDPP "Get a blob"): only through a record the bearer may read.

A blob id alone grants nothing. The bearer reaches a blob when a live, published record it can
read (its grant's streams, connections, time window and resources) references the blob in a
field the grant includes; one store query decides it. Anything else, an unknown id included,
is the same `blob_not_found`, so an id reveals nothing about what the owner holds.

`find_blob` is a plain function of the read domain: the HTTP endpoint and other surfaces (an
MCP tool) serve what it returns, a chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ownstream.blobs import BlobStore
from ownstream.errors import BlobNotFound
from ownstream.grants.scope import readable_streams
from ownstream.home import Home
from ownstream.model import Bearer
from ownstream.reads.common import note_read, scopes
from ownstream.records import BLOB_ID, BLOB_ID_PREFIX

CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class BlobContent:
    """A blob the bearer may read: its media type (as the referencing record gives it), size,
    and a strong entity tag (its content hash)."""

    blob_id: str
    mime_type: str
    size: int
    store: BlobStore

    @property
    def sha256(self) -> str:
        return self.blob_id[len(BLOB_ID_PREFIX) :]

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes from `start` up to `end` (exclusive; the end of the blob by default),
        read a chunk at a time."""
        left = (self.size if end is None else end) - start
        with self.store.open(self.blob_id) as handle:
            handle.seek(start)
            while left > 0:
                chunk = handle.read(min(CHUNK_BYTES, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


def find_blob(home: Home, who: Bearer, blob_id: str) -> BlobContent:
    """The blob, when a record the bearer can read references it in a granted field;
    otherwise `blob_not_found`, as for an id that does not exist."""
    missing = BlobNotFound(f"no blob {blob_id!r}", param="blob_id")
    if not BLOB_ID.fullmatch(blob_id):
        raise missing
    names = [d.name for d in readable_streams(who, home.catalog) if d.blob_fields]
    access = home.store.readable_blob(scopes(who, home, names, None), blob_id)
    size = home.blobs.size(blob_id) if access is not None else None
    if access is None or size is None:
        raise missing
    note_read(home, who, access.stream, [access.connection_id])  # a disclosure like a record
    return BlobContent(blob_id, access.mime_type, size, home.blobs)
