"""Attachment content stored as blobs, for one run of a mail connector."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ownstream.runtime.sdk import Message, Start, StoredBlob, omit, store_blob


class Attachments:
    """The blob sink `build_record` writes attachment content through: it keeps the BLOB
    messages of the message being built (yield them before its record) and counts the
    attachments too large to store (their records keep the metadata, without `blob_ref`)."""

    def __init__(self, start: Start) -> None:
        self.start = start
        self.pending: list[StoredBlob] = []
        self.too_large = 0

    def __call__(self, chunks: Iterable[bytes], mime_type: str) -> dict[str, Any] | None:
        stored = store_blob(self.start, chunks, mime_type)
        if stored is None:
            self.too_large += self.start.blobs is not None
            return None
        self.pending.append(stored)
        return stored.ref

    def handed_over(self) -> list[Message]:
        """The BLOB messages of the message just built."""
        found = [blob.message for blob in self.pending]
        self.pending = []
        return found

    def discard(self) -> None:
        """The message was rejected: its content is not handed over (nor kept on disk)."""
        if self.start.blobs is not None:
            for blob in self.pending:
                (self.start.blobs.directory / blob.message["file"]).unlink(missing_ok=True)
        self.pending = []

    def report(self) -> Iterator[Message]:
        if self.too_large:
            yield omit("attachment_too_large", self.too_large)
