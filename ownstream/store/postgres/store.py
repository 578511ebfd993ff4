"""The PostgreSQL Store: several `serve` and `ownstream worker` processes on one database.

Each area of the store is its own module, mirroring the SQLite store; this class puts them
together behind the `Store` protocol (mypy checks that it satisfies it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ownstream.clock import utc_now
from ownstream.search import MAX_SEARCHABLE_FIELDS
from ownstream.store.base import StoreCapabilities
from ownstream.store.postgres.access import AccessRecords
from ownstream.store.postgres.activity import ActivityQueries
from ownstream.store.postgres.aggregate import AggregateQueries
from ownstream.store.postgres.auth import AuthRecords
from ownstream.store.postgres.collection import LEASE_SECONDS
from ownstream.store.postgres.database import POOL_SIZE
from ownstream.store.postgres.provider_auth import ProviderAuthRecords
from ownstream.store.postgres.reads import ReadQueries
from ownstream.store.postgres.rekey import RecordRekeys
from ownstream.store.postgres.schedules import ScheduleRecords


class PostgresStore(
    ProviderAuthRecords,
    ReadQueries,
    RecordRekeys,
    AggregateQueries,
    ActivityQueries,
    AccessRecords,
    AuthRecords,
    ScheduleRecords,
):
    capabilities = StoreCapabilities(
        backend="postgresql", concurrent_writers=True, max_searchable_fields=MAX_SEARCHABLE_FIELDS
    )

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        lease_seconds: int = LEASE_SECONDS,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.lease_seconds = lease_seconds
        super().__init__(url, password=password, clock=clock, pool_size=pool_size)
