"""How clients use their grants: reads and records per client, grant, stream and connection per
day, and each token's last use. Counted in memory and written in one batch every few seconds —
never a database write per read."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping

from ownstream.clock import iso
from ownstream.model import Bearer
from ownstream.store.base import AccessCount, Store

log = logging.getLogger(__name__)
FLUSH_SECONDS = 5.0


class UsageRecorder:
    def __init__(self, store: Store, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._store = store
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._reads: Counter[tuple[str, str, str, str, str]] = Counter()
        self._records: Counter[tuple[str, str, str, str, str]] = Counter()
        self._last_used: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note_token(self, bearer: Bearer) -> None:
        with self._lock:
            self._last_used[bearer.token_id] = iso(self._store.clock())

    def note_read(self, bearer: Bearer, stream: str, records: Mapping[str, int]) -> None:
        """One read of `stream` by a client, with the records it got from each connection."""
        grant = bearer.grant
        if grant is None:
            return
        day = iso(self._store.clock())[:10]
        with self._lock:
            for connection_id, count in records.items():
                key = (day, grant.client_id, grant.grant_id, stream, connection_id)
                self._reads[key] += 1
                self._records[key] += count

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="usage", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._flush_seconds + 5)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            try:
                self.flush()
            except Exception:
                log.exception("writing access counts failed; they are kept for the next try")

    def flush(self) -> None:
        with self._lock:
            reads, records, last_used = self._reads, self._records, self._last_used
            self._reads, self._records, self._last_used = Counter(), Counter(), {}
        try:
            self._store.add_access_counts(
                [AccessCount(*key, reads[key], records[key]) for key in reads]
            )
            self._store.note_token_use(last_used)
        except Exception:
            with self._lock:  # put them back: counts are never lost to a busy database
                self._reads.update(reads)
                self._records.update(records)
                for token_id, at in last_used.items():
                    self._last_used[token_id] = max(at, self._last_used.get(token_id, at))
            raise
