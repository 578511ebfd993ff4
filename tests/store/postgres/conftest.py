"""Stores on a fresh PostgreSQL database, with the contract suite's clock and stage driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ownstream.store.postgres import PostgresStore
from tests.store.contract.conftest import Clock, Harness

from ..contract.backends import LEASE_SECONDS

OpenStore = Callable[..., PostgresStore]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_store(postgres_url: str, clock: Clock) -> Iterator[OpenStore]:
    """Another store (its own pool, as another process would have) on the test's database."""
    opened: list[PostgresStore] = []

    def open_(*, lease_seconds: int = LEASE_SECONDS, pool_size: int = 4) -> PostgresStore:
        store = PostgresStore(
            postgres_url, clock=clock, lease_seconds=lease_seconds, pool_size=pool_size
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def pg(open_store: OpenStore, clock: Clock) -> Harness:
    return Harness(open_store(), clock)
