"""How the contract suite gets a fresh, empty store of each backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ownstream.store.base import Store
from ownstream.store.sqlite import SQLiteStore

LEASE_SECONDS = 60


def sqlite_store(tmp_path: Path, clock: Callable[[], datetime]) -> Store:
    return SQLiteStore(tmp_path / "contract.db", clock=clock, lease_seconds=LEASE_SECONDS)


FACTORIES: dict[str, Callable[[Path, Callable[[], datetime]], Store]] = {"sqlite": sqlite_store}
