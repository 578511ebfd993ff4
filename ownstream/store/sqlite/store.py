"""The SQLite Store: one database file in WAL mode, nothing to set up.

Each area of the store is its own module; this class puts them together behind the `Store`
protocol (mypy checks that it satisfies it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ownstream.clock import utc_now
from ownstream.store.base import StoreCapabilities
from ownstream.store.sqlite.access import AccessRecords
from ownstream.store.sqlite.activity import ActivityQueries
from ownstream.store.sqlite.aggregate import AggregateQueries
from ownstream.store.sqlite.auth import AuthRecords
from ownstream.store.sqlite.collection import LEASE_SECONDS
from ownstream.store.sqlite.provider_auth import ProviderAuthRecords
from ownstream.store.sqlite.reads import ReadQueries
from ownstream.store.sqlite.rekey import RecordRekeys
from ownstream.store.sqlite.schedules import ScheduleRecords
from ownstream.store.sqlite.search_index import SLOTS


class SQLiteStore(
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
        backend="sqlite", concurrent_writers=False, max_searchable_fields=SLOTS
    )

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        lease_seconds: int = LEASE_SECONDS,
    ) -> None:
        self.lease_seconds = lease_seconds
        super().__init__(path, clock=clock)
