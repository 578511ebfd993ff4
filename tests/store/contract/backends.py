"""How the contract suite gets a fresh, empty store of each backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from ownstream.store.base import Store
from ownstream.store.postgres import PostgresStore
from ownstream.store.sqlite import SQLiteStore

LEASE_SECONDS = 60

Factory = Callable[[pytest.FixtureRequest, Path, Callable[[], datetime]], Store]


def sqlite_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Callable[[], datetime]
) -> Store:
    return SQLiteStore(tmp_path / "contract.db", clock=clock, lease_seconds=LEASE_SECONDS)


def postgres_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Callable[[], datetime]
) -> Store:
    url: str = request.getfixturevalue("postgres_url")
    return PostgresStore(url, clock=clock, lease_seconds=LEASE_SECONDS)


FACTORIES: dict[str, Factory] = {"sqlite": sqlite_store, "postgresql": postgres_store}
