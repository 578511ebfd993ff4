"""Record data as stored: zstd frames against a dictionary of the connection's own stream.

A record's JSON repeats its field names and most of its values' shapes in every row, and a
single record is too small for a compressor to find that on its own. A dictionary trained on the
first batch of a connection's stream (its own records, never another connection's: deleting the
connection deletes its dictionaries with its records) brings a Spotify play from ~400 bytes of
JSON to ~90 for a microsecond of CPU each way. Rows written before their stream had a dictionary
stay plain JSON; `decode` reads both, told apart by the zstd frame's magic number (JSON never
starts with it). Frames carry their dictionary's id, which is the row id in
`record_dictionaries`: random, so an id a rolled-back transaction gave out is never given to
another dictionary, and any row decodes on its own. SQL reads a record's fields through the
`record_json(data)` function every connection registers.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import zstandard

log = logging.getLogger(__name__)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
TRAIN_AT = 1000  # records in one batch before its stream gets a dictionary
TRAINING_SAMPLES = 5000
DICTIONARY_BYTES = 8192
LEVEL = 3

Loader = Callable[[int], bytes | None]


class RecordCodec:
    """Dictionaries by id (immutable once stored, so cached for the store's lifetime) and, per
    thread, the zstd compressors and decompressors built on them (those are not thread-safe)."""

    def __init__(self) -> None:
        self._dictionaries: dict[int, zstandard.ZstdCompressionDict] = {}
        self._by_stream: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    # writing -----------------------------------------------------------------------------------
    def encoder(
        self, db: sqlite3.Connection, connection_id: str, stream: str, batch: Sequence[bytes]
    ) -> Callable[[bytes], bytes] | None:
        """How this connection's stream stores its records now: with its dictionary, trained
        from `batch` if it has none yet and the batch is large enough; None for plain JSON."""
        dictionary_id = self._stream_dictionary(db, connection_id, stream)
        if dictionary_id is None and len(batch) >= TRAIN_AT:
            dictionary_id = self._train(db, connection_id, stream, batch)
        if dictionary_id is None:
            return None
        compressors: dict[int, zstandard.ZstdCompressor] = self._thread_cache("compressors")
        compressor = compressors.get(dictionary_id)
        if compressor is None:
            compressor = compressors[dictionary_id] = zstandard.ZstdCompressor(
                level=LEVEL,
                dict_data=self._dictionary(dictionary_id, loader(db)),
                write_checksum=False,
            )
        compress: Callable[[bytes], bytes] = compressor.compress
        return compress

    def _stream_dictionary(
        self, db: sqlite3.Connection, connection_id: str, stream: str
    ) -> int | None:
        scope = (connection_id, stream)
        if scope not in self._by_stream:
            row = db.execute(
                "SELECT dictionary_id FROM record_dictionaries "
                "WHERE connection_id = ? AND stream = ?",
                scope,
            ).fetchone()
            if row is None:
                return None  # not cached: a batch may train one, or another process may have
            with self._lock:
                self._by_stream[scope] = int(row[0])
        return self._by_stream[scope]

    def _train(
        self, db: sqlite3.Connection, connection_id: str, stream: str, batch: Sequence[bytes]
    ) -> int | None:
        step = max(1, len(batch) // TRAINING_SAMPLES)
        dictionary_id = secrets.randbelow(2**31 - 1) + 1
        while db.execute(
            "SELECT 1 FROM record_dictionaries WHERE dictionary_id = ?", (dictionary_id,)
        ).fetchone():
            dictionary_id = secrets.randbelow(2**31 - 1) + 1
        try:
            trained = zstandard.train_dictionary(
                DICTIONARY_BYTES, list(batch[::step]), dict_id=dictionary_id
            )
        except zstandard.ZstdError as exc:
            # too little variety to learn from: the stream stays JSON until a later batch
            log.info("no record dictionary for %s/%s yet: %s", connection_id, stream, exc)
            return None
        db.execute(
            "INSERT INTO record_dictionaries (dictionary_id, connection_id, stream, content) "
            "VALUES (?, ?, ?, ?)",
            (dictionary_id, connection_id, stream, trained.as_bytes()),
        )
        with self._lock:
            self._dictionaries[dictionary_id] = trained
        return dictionary_id

    # reading -----------------------------------------------------------------------------------
    def decode(
        self,
        data: bytes,
        load: Loader,
        decompressors: dict[int, zstandard.ZstdDecompressor] | None = None,
    ) -> bytes:
        """A stored record's JSON; with the caller's own `decompressors` (one per connection,
        which runs one statement at a time) instead of this thread's."""
        if data[:4] != ZSTD_MAGIC:
            return data
        dictionary_id = zstandard.get_frame_parameters(data).dict_id
        decoded: bytes = self._decompressor(dictionary_id, load, decompressors).decompress(data)
        return decoded

    def decode_many(self, stored: Sequence[bytes], load: Loader) -> list[bytes]:
        """Stored records' JSON, each dictionary's frames in one call. A read serving several
        requests at once decodes a page this way: zstd lets go of the GIL for each call, and
        taking it back after each of a hundred sub-microsecond calls, with other threads
        waiting, costs more than the decoding (3 µs a record instead of 1.2 at 4 threads)."""
        decoded = list(stored)
        frames: dict[int, list[int]] = {}
        for index, data in enumerate(stored):
            if data[:4] == ZSTD_MAGIC:
                dictionary_id = zstandard.get_frame_parameters(data).dict_id
                frames.setdefault(dictionary_id, []).append(index)
        for dictionary_id, indexes in frames.items():
            buffers = self._decompressor(dictionary_id, load).multi_decompress_to_buffer(
                [stored[index] for index in indexes]
            )
            for position, index in enumerate(indexes):
                decoded[index] = buffers[position].tobytes()
        return decoded

    def _decompressor(
        self,
        dictionary_id: int,
        load: Loader,
        cache: dict[int, zstandard.ZstdDecompressor] | None = None,
    ) -> zstandard.ZstdDecompressor:
        if cache is None:
            cache = self._thread_cache("decompressors")
        decompressor = cache.get(dictionary_id)
        if decompressor is None:
            decompressor = cache[dictionary_id] = zstandard.ZstdDecompressor(
                dict_data=self._dictionary(dictionary_id, load)
            )
        return decompressor

    def _dictionary(self, dictionary_id: int, load: Loader) -> zstandard.ZstdCompressionDict:
        found = self._dictionaries.get(dictionary_id)
        if found is None:
            content = load(dictionary_id)
            if content is None:
                raise LookupError(f"record dictionary {dictionary_id} is missing")
            found = zstandard.ZstdCompressionDict(content)
            with self._lock:
                self._dictionaries[dictionary_id] = found
        return found

    def _thread_cache(self, name: str) -> dict[int, Any]:
        cache: dict[int, Any] | None = getattr(self._local, name, None)
        if cache is None:
            cache = {}
            setattr(self._local, name, cache)
        return cache


def loader(db: sqlite3.Connection) -> Loader:
    """Dictionaries read through this connection."""
    def load(dictionary_id: int) -> bytes | None:
        row = db.execute(
            "SELECT content FROM record_dictionaries WHERE dictionary_id = ?", (dictionary_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    return load


def register(db: sqlite3.Connection, codec: RecordCodec, load: Loader | None = None) -> None:
    """`record_json(data)` on this connection: a stored record's JSON text, for SQL's JSON
    functions (the store's connections, and anything reading its file straight). The store
    passes a `load` that does not hold the connection: a function holding its own connection
    is a reference cycle, and a connection left to the cycle collector is never closed (nor
    is its WAL checkpointed) when its thread ends. SQLite calls it for every row an
    aggregation reads, so it keeps its own decompressors (a connection runs one statement at
    a time): faster than looking up the codec's per-thread ones for every row."""
    load = load or loader(db)
    decompressors: dict[int, zstandard.ZstdDecompressor] = {}

    def record_json(data: bytes | str) -> str:
        if isinstance(data, str):
            return data  # JSON a TEXT column holds
        return codec.decode(data, load, decompressors).decode()

    db.create_function("record_json", 1, record_json, deterministic=True)
