"""Record handles: the ids `search` returns and `fetch` takes, and the `pdpp://` resource URIs.

A handle names one record as `{connection_id}/{stream}:{record_id}`, so `fetch` needs no other
argument even when the same key exists under several connections. The PDPP adapter's legacy
form `{stream}:{record_id}` is accepted too (the read then fans in and may be
`ambiguous_connection`). Connection ids and stream names hold neither `/` nor `:`, so a record
key may hold both: the key is everything after the first `:`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from ownstream.errors import InvalidArgument

STREAM_URI = "pdpp://stream/"
RECORD_URI = "pdpp://record/"
STREAM_TEMPLATE = STREAM_URI + "{name}"
RECORD_TEMPLATE = RECORD_URI + "{id}"


@dataclass(frozen=True)
class RecordHandle:
    stream: str
    record_id: str
    connection_id: str | None = None

    @property
    def id(self) -> str:
        base = f"{self.stream}:{self.record_id}"
        return f"{self.connection_id}/{base}" if self.connection_id else base

    @property
    def uri(self) -> str:
        return RECORD_URI + quote(self.id, safe="")


def stream_uri(name: str) -> str:
    return STREAM_URI + quote(name, safe="")


def parse_handle(text: str, param: str = "id") -> RecordHandle:
    """A handle from an id (either form) or a `pdpp://record/…` URI."""
    if text.startswith(RECORD_URI):
        text = unquote(text.removeprefix(RECORD_URI))
    head, colon, record_id = text.partition(":")
    connection_id, slash, stream = head.rpartition("/")
    if not colon or not record_id or not stream or "/" in connection_id or (
        slash and not connection_id
    ):
        raise InvalidArgument(
            "an id is connection_id/stream:record_id, as search returns it (or stream:record_id)",
            param=param,
        )
    return RecordHandle(stream, record_id, connection_id or None)


def parse_stream_uri(uri: str) -> str | None:
    """The stream a `pdpp://stream/{name}` URI names, or None for any other URI."""
    if not uri.startswith(STREAM_URI):
        return None
    return unquote(uri.removeprefix(STREAM_URI)) or None
