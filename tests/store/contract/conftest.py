"""A fresh store per test and backend, a clock the test moves, and a small stage driver."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ownstream.clock import iso, utc_now
from ownstream.model import (
    Acquisition,
    ConnectionIdentity,
    ReadScope,
    RecordRule,
    RecordWrite,
    StreamDefinition,
)
from ownstream.store.base import (
    Binding,
    NewConnection,
    PathAttachment,
    Publication,
    Store,
    StreamBatch,
)
from ownstream.store.planner import BatchStats

from .backends import FACTORIES

NOTES = StreamDefinition(
    name="notes",
    version=1,
    semantics="mutable_state",
    primary_key=("id",),
    schema={
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "body": {"type": "string"},
            "secret": {"type": "string"},
            "at": {"type": "string"},
        },
        "required": ["id"],
    },
    cursor_field="at",
    consent_time_field="at",
    searchable_fields=("title", "body", "secret"),
)


class Clock:
    """The store's clock: moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Harness:
    store: Store
    clock: Clock
    runs: int = 0
    connections: list[str] = field(default_factory=list)

    def connection(self, name: str, connector: str = "notes-api") -> str:
        new = NewConnection(
            owner_id="owner",
            source="notes",
            display_name=name,
            display_name_is_placeholder=False,
            identity=ConnectionIdentity("account", name, connector, None, iso(self.clock())),
            seed=name,
        )
        attach = PathAttachment(connector, "provider_api", True, None)
        created = self.store.create_connection(new, attach)
        self.connections.append(created.connection_id)
        return created.connection_id

    def stage(
        self, connection_id: str, connector: str = "notes-api", method: str = "provider_api"
    ) -> Acquisition:
        self.runs += 1
        return self.store.start_stage(
            Binding(connection_id),
            connector_key=connector,
            acquisition_method=method,
            trigger="manual",
            collection_mode="full_refresh",
            holder="contract",
            run_id=f"run_{self.runs:04d}",
        )

    def write(
        self,
        acquisition: Acquisition,
        records: Sequence[RecordWrite],
        definition: StreamDefinition = NOTES,
        rule: RecordRule | None = None,
    ) -> BatchStats:
        return self.store.commit_batch(acquisition, [StreamBatch(definition, records, rule)])

    def publish(
        self, acquisition: Acquisition, states: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        self.store.publish(
            acquisition,
            Publication(
                status="succeeded",
                counts={},
                known_gaps=[],
                checkpoint={},
                error=None,
                states=states,
                **extra,
            ),
        )

    def collect(
        self, connection_id: str, records: Sequence[RecordWrite], connector: str = "notes-api"
    ) -> Acquisition:
        """A whole stage: start, one batch, publish."""
        acquisition = self.stage(connection_id, connector)
        self.write(acquisition, records)
        self.publish(acquisition)
        return acquisition

    def live(
        self, connection_ids: Sequence[str], fields: Sequence[str] | None = None, **scope: Any
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Every live record the scope reads, by (connection, key)."""
        read = ReadScope(NOTES, tuple(connection_ids), tuple(fields or NOTES.fields), **scope)
        page, more = self.store.records_page(read, limit=10_000)
        assert not more
        return {(r.connection_id, r.record_key): r.data for r in page}


def note(key: str, **data: Any) -> RecordWrite:
    return RecordWrite("notes", key, {"id": key, **data}, "2024-05-01T00:00:00.000Z")


def gone(key: str) -> RecordWrite:
    return RecordWrite("notes", key, {"id": key}, "2024-05-01T00:00:00.000Z", op="delete")


@pytest.fixture(params=sorted(FACTORIES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    clock = Clock()
    store = FACTORIES[request.param](tmp_path, clock)
    yield Harness(store, clock)
    store.close()
