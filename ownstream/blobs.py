"""Content-addressed blob files: photos, attachments, voice notes, stored once per content.

A blob is a file named by its id (`blob_sha256_<hex>`) under the blob directory
(`OWNSTREAM_BLOB_DIR`, default `<data dir>/blobs`; a shared location when several processes
serve one database), in a subfolder of the hash's first two hex digits. Folders are 0700,
files 0600. Content arrives streamed into a private temporary file in the same directory,
hashed and size-limited (`OWNSTREAM_MAX_BLOB_BYTES`) as it is written, synced, and renamed into
place only after its stage holds it in the store; equal content is one file.

The database knows which records reference which blob (`Store.hold_blobs`, record
references); this module owns only the files. A blob's file is deleted by
`collect` when the store confirms nothing references or holds it, and `sweep` finds files
the store no longer knows (a crash between a deletion and its bookkeeping, a stage that lost
its lease while placing a file) and leftovers of runs that died.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ownstream.errors import BlobNotFound, BlobTooLarge
from ownstream.records import BLOB_ID, BLOB_ID_PREFIX, blob_id_for
from ownstream.runtime.sdk import file_chunks
from ownstream.store.base import Store

BLOB_DIR_ENV = "OWNSTREAM_BLOB_DIR"
MAX_BLOB_ENV = "OWNSTREAM_MAX_BLOB_BYTES"
DEFAULT_MAX_BLOB_BYTES = 512 * 1024**2
TEMP_DIR = "tmp"
STALE_TEMP_SECONDS = 24 * 3600  # a run's leftovers older than this belong to no live run
SWEEP_BATCH = 1000


@dataclass(frozen=True)
class Received:
    """Content written to a private temporary file, hashed and counted; not yet in place."""

    blob_id: str
    sha256: str
    size: int
    temp: Path


class BlobStore:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.temp = root / TEMP_DIR
        for folder in (root, self.temp):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    @classmethod
    def configured(cls, home: Path) -> BlobStore:
        """The blob directory the environment names, or `blobs` in the data directory."""
        root = os.environ.get(BLOB_DIR_ENV)
        limit = os.environ.get(MAX_BLOB_ENV)
        return cls(
            Path(root) if root else home / "blobs",
            int(limit) if limit else DEFAULT_MAX_BLOB_BYTES,
        )

    def path(self, blob_id: str) -> Path:
        if not BLOB_ID.fullmatch(blob_id):
            raise BlobNotFound(f"no blob {blob_id!r}", param="blob_id")
        return self.root / blob_id[len(BLOB_ID_PREFIX) :][:2] / blob_id

    # writing ------------------------------------------------------------------------------
    def receive(self, chunks: Iterable[bytes]) -> Received:
        """Write content to a private temporary file, hashing and counting it; over the size
        limit nothing is kept and `BlobTooLarge` is raised (reading stops there)."""
        descriptor, name = tempfile.mkstemp(prefix="in-", dir=self.temp)  # created 0600
        temp = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(descriptor, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise BlobTooLarge(
                            f"the content is larger than this server stores as one blob "
                            f"({self.max_bytes} bytes; {MAX_BLOB_ENV})",
                            limit_bytes=self.max_bytes,
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        sha = digest.hexdigest()
        return Received(blob_id_for(sha), sha, size, temp)

    def receive_file(self, path: Path) -> Received:
        """Copy a file a connector wrote (a regular file, never followed through a link)."""
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise FileNotFoundError(f"{path.name}: {exc.strerror}") from exc
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise FileNotFoundError(f"{path.name} is not a regular file")
            return self.receive(file_chunks(handle))

    def place(self, received: Received) -> None:
        """Move received content into place (equal content simply replaces itself). Call it
        only once the stage holds the blob, so a collection cannot delete it meanwhile."""
        target = self.path(received.blob_id)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(received.temp, target)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    @staticmethod
    def discard(received: Received) -> None:
        received.temp.unlink(missing_ok=True)

    # run areas ----------------------------------------------------------------------------
    def run_area(self) -> Path:
        """A private folder a connector writes blob content into (START names it)."""
        return Path(tempfile.mkdtemp(prefix="run-", dir=self.temp))

    @staticmethod
    def remove_area(area: Path) -> None:
        shutil.rmtree(area, ignore_errors=True)

    # reading ------------------------------------------------------------------------------
    def size(self, blob_id: str) -> int | None:
        try:
            return self.path(blob_id).stat().st_size
        except (FileNotFoundError, BlobNotFound):
            return None

    def open(self, blob_id: str) -> BinaryIO:
        try:
            return self.path(blob_id).open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {blob_id!r}", param="blob_id") from exc

    # deleting -----------------------------------------------------------------------------
    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)

    def collect(self, store: Store) -> int:
        """Delete the files of the blobs the store queued and confirms unused."""
        return store.collect_blob_garbage(self.delete)

    def sweep(self, store: Store) -> int:
        """Queue every file the store no longer references or holds, collect them, and
        remove temporary leftovers of runs that died; how many blob files went."""
        batch: list[str] = []
        for shard in self.root.iterdir():
            if shard.name == TEMP_DIR or not shard.is_dir():
                continue
            for item in shard.iterdir():
                if BLOB_ID.fullmatch(item.name):
                    batch.append(item.name)
                if len(batch) >= SWEEP_BATCH:
                    store.queue_unused_blobs(batch)
                    batch = []
        if batch:
            store.queue_unused_blobs(batch)
        cutoff = time.time() - STALE_TEMP_SECONDS
        for item in self.temp.iterdir():
            with suppress(FileNotFoundError):
                if item.lstat().st_mtime < cutoff:
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item, ignore_errors=True)
                    else:
                        item.unlink()
        return self.collect(store)
