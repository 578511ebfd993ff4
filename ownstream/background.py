"""Work the server starts and does not wait for (a run the owner started over HTTP): tracked,
logged when it fails, and joined on shutdown so a stopping server does not cut it off silently.

`ProgressHub` holds the latest progress of such work, keyed by run id (or an import's progress
id), for the console's live views. It is memory of this process only: a run started by another
`serve` process, or by the worker, is unknown here, and the console then follows the run's
status in the database instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
FINISHED_KEPT_SECONDS = 600.0  # a finished entry stays readable this long, then is forgotten


class Background:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def start(self, name: str, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("background work %s failed", name)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def active(self) -> list[str]:
        with self._lock:
            return sorted(t.name for t in self._threads)

    def join(self, timeout: float) -> list[str]:
        """Wait up to `timeout` seconds for running work; returns what is still running (its
        leases lapse and it is reclaimed, as after a crash)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        still = self.active()
        if still:
            log.warning("stopping with background work still running: %s", ", ".join(still))
        return still


@dataclass(frozen=True)
class Snapshot:
    """Where one piece of work stands: `version` grows with every change, so a reader sends
    only what is new; `finished` is set once, at the end."""

    version: int
    progress: dict[str, Any] | None
    finished: dict[str, Any] | None


@dataclass
class _Entry:
    version: int = 0
    progress: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None
    finished_at: float | None = None


class ProgressHub:
    """The latest progress event and the final outcome of work running in this process.

    Only the latest event is kept (a reader wants where the work stands, not its history), so
    memory stays bounded however chatty a connector is. Reads never wait: a reader polls
    `snapshot`, which holds the lock for a dictionary lookup."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._clock = clock

    def begin(self, key: str) -> None:
        with self._lock:
            self._forget_old()
            self._entries[key] = _Entry()

    def update(self, key: str, progress: dict[str, Any]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.finished is None:
                entry.version += 1
                entry.progress = progress

    def finish(self, key: str, outcome: dict[str, Any]) -> None:
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            entry.version += 1
            entry.finished = outcome
            entry.finished_at = self._clock()

    def snapshot(self, key: str) -> Snapshot | None:
        """Where the work stands, or None when this process does not know it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            return Snapshot(entry.version, entry.progress, entry.finished)

    def _forget_old(self) -> None:
        horizon = self._clock() - FINISHED_KEPT_SECONDS
        old = [
            key
            for key, entry in self._entries.items()
            if entry.finished_at is not None and entry.finished_at < horizon
        ]
        for key in old:
            del self._entries[key]
