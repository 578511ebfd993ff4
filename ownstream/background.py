"""Work the server starts and does not wait for (a run the owner started over HTTP): tracked,
logged when it fails, and joined on shutdown so a stopping server does not cut it off silently."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


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
