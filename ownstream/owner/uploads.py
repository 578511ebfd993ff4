"""Archives uploaded over HTTP (the owner API's raw body, the console's form): streamed into a
private file under the data directory, hashed and size-limited as they arrive, never held in
memory, then imported with `ConnectionOperations.import_artifact` like a file on disk.

The file lives in `uploads/<random>/` (folders 0700, the file 0600) under the owner's name for
it, so the receipt names the archive the owner chose; the folder is removed after the import,
whatever its outcome.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from ownstream.errors import InvalidRequest, UploadTooLarge
from ownstream.model import ArtifactInfo
from ownstream.owner.connections import ConnectionOperations
from ownstream.runtime.runner import ImportResult

UPLOADS_DIR = "uploads"
MAX_UPLOAD_ENV = "OWNSTREAM_MAX_UPLOAD_BYTES"
DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024**3  # a large mail export; raise it with the variable
MAX_NAME_CHARS = 120
MAX_FIELD_BYTES = 4096  # a text field of the upload form (a CSRF token, a connector key)
MAX_FIELDS = 16
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")


def max_upload_bytes() -> int:
    raw = os.environ.get(MAX_UPLOAD_ENV)
    return int(raw) if raw else DEFAULT_MAX_UPLOAD_BYTES


def check_declared_size(content_length: str | None, limit: int) -> None:
    """Refuse at once a body whose declared length is over the limit (nothing is read)."""
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise UploadTooLarge(too_large_message(limit), limit_bytes=limit)


def too_large_message(limit: int) -> str:
    return (
        f"the archive is larger than this server accepts ({limit} bytes); raise "
        f"{MAX_UPLOAD_ENV} to import it, or use `ownstream import` on the server"
    )


def safe_name(name: str | None) -> str:
    """The last component of a client-supplied file name, with only harmless characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = UNSAFE_NAME.sub("_", base).strip(" .")[:MAX_NAME_CHARS]
    return cleaned or "upload"


class Upload:
    """One archive arriving: a private file, its running SHA-256 and size."""

    def __init__(self, home: Path, name: str | None, limit: int) -> None:
        root = home / UPLOADS_DIR
        root.mkdir(mode=0o700, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="up-", dir=root))  # created 0700
        self.path = self.directory / safe_name(name)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(descriptor, "wb")
        self._digest = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadTooLarge(too_large_message(self.limit), limit_bytes=self.limit)
        self._digest.update(chunk)
        self._file.write(chunk)

    def artifact(self) -> ArtifactInfo:
        """Close the file; what the import is told about it (no second pass to hash it)."""
        self._file.close()
        return ArtifactInfo(str(self.path), self.path.name, self._digest.hexdigest(), self.size)

    def discard(self) -> None:
        self._file.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class FormUpload:
    """A multipart/form-data body whose one file field streams into an `Upload` and whose
    few small text fields are kept. `open_file(fields, filename)` is called when the file
    begins, with the fields sent before it: the console checks the CSRF token there, so a
    forged form never gets a byte written."""

    def __init__(
        self,
        content_type: str | None,
        file_field: str,
        open_file: Callable[[dict[str, str], str], Upload],
    ) -> None:
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise InvalidRequest("the form must be sent as multipart/form-data")
        self.fields: dict[str, str] = {}
        self.upload: Upload | None = None
        self._file_field = file_field
        self._open_file = open_file
        self._header = (bytearray(), bytearray())  # the header being read: name, value
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._text: bytearray | None = None
        self._to_file = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def finish(self) -> None:
        self._parser.finalize()

    def discard(self) -> None:
        if self.upload is not None:
            self.upload.discard()

    def _part_begin(self) -> None:
        self._headers = {}
        self._name, self._text, self._to_file = None, None, False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0].extend(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1].extend(data[start:end])

    def _header_end(self) -> None:
        name, value = self._header
        self._headers[bytes(name).lower()] = bytes(value)
        self._header = (bytearray(), bytearray())

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._name = name
        if filename is not None:
            if name == self._file_field and filename and self.upload is None:
                chosen = filename.decode("utf-8", "replace")
                self.upload = self._open_file(dict(self.fields), chosen)
                self._to_file = True
            return  # an empty or unexpected file field is skipped
        if len(self.fields) >= MAX_FIELDS:
            raise InvalidRequest("the form has too many fields")
        self._text = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._to_file:
            assert self.upload is not None
            self.upload.write(data[start:end])
        elif self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"the form field {self._name!r} is too long")

    def _part_end(self) -> None:
        if self._text is not None and self._name:
            self.fields[self._name] = self._text.decode("utf-8", "replace")
        self._text, self._to_file = None, False


def import_upload(
    ops: ConnectionOperations,
    connector_key: str,
    upload: Upload,
    *,
    connection_id: str | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> ImportResult:
    """Import an uploaded archive (audited, as every import), then remove its file."""
    try:
        return ops.import_artifact(
            connector_key,
            upload.path,
            on_progress,
            connection_id=connection_id,
            artifact=upload.artifact(),
        )
    finally:
        upload.discard()
