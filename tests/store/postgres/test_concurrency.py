"""Several processes writing one database: leases, fencing, schedule claims, clean-ups, blob
holds against the blob collector.

Each store here has its own pool, as a separate process would; the races are real ones
between PostgreSQL sessions, made deterministic where it matters by holding a row lock from a
plain connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from ownstream.clock import iso
from ownstream.errors import ConnectionRunActive, RunLeaseLost
from ownstream.store.base import Binding
from ownstream.store.postgres import PostgresStore
from tests.store.contract.conftest import Clock, Harness, note

from .conftest import OpenStore
from .test_change_feed import in_thread, waiting_for_locks

START = {
    "connector_key": "notes-api",
    "acquisition_method": "provider_api",
    "trigger": "manual",
    "collection_mode": "full_refresh",
    "holder": "test",
}


def race(workers: int, action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` in `workers` threads released at the same moment; results or errors."""
    barrier = threading.Barrier(workers)

    def run(index: int) -> Any:
        barrier.wait()
        try:
            return action(index)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(workers)))


def test_of_racing_starts_of_one_connection_exactly_one_gets_the_lease(
    open_store: OpenStore, pg: Harness
) -> None:
    a = pg.connection("a")
    stores = [open_store(pool_size=1) for _ in range(6)]
    outcomes = race(
        6,
        lambda i: stores[i].start_stage(Binding(a), run_id=f"run_{i}", **START),
    )
    won = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(won) == 1
    assert all(isinstance(o, ConnectionRunActive) for o in outcomes if o not in won)
    lease = pg.store.active_lease(a)
    assert lease is not None and lease.run_id == won[0].run_id
    assert [r.run_id for r in pg.store.runs(a)] == [won[0].run_id]


def test_a_reclaimer_waits_for_a_batch_in_flight_and_then_finds_its_lease_renewed(
    open_store: OpenStore, pg: Harness, clock: Clock, postgres_url: str
) -> None:
    a = pg.connection("a")
    stage = pg.stage(a)
    clock.advance(pg.store.lease_seconds + 1)  # the lease looks stale to any reader now
    other = open_store()
    with psycopg.connect(postgres_url) as batch:
        # a batch in flight: its first statement renews the lease and keeps the row locked
        batch.execute(
            "UPDATE run_leases SET expires_at = %s WHERE run_id = %s",
            (iso(clock() + timedelta(seconds=60)), stage.run_id),
        )
        thread, errors = in_thread(
            lambda: other.start_stage(Binding(a), run_id="run_reclaimer", **START)
        )
        waiting_for_locks(postgres_url, 1)
        batch.commit()
    thread.join(30)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionRunActive)
    pg.write(stage, [note("n1", title="kept")])  # the holder goes on
    pg.publish(stage)
    assert pg.live([a]) == {(a, "n1"): {"id": "n1", "title": "kept"}}


def test_once_the_lease_is_taken_over_the_old_holder_writes_nothing_at_all(
    open_store: OpenStore, pg: Harness, clock: Clock
) -> None:
    a = pg.connection("a")
    pg.collect(a, [note("n1", title="published")])
    old = pg.stage(a)
    pg.write(old, [note("n1", title="zombie"), note("n2", title="zombie")])
    clock.advance(pg.store.lease_seconds + 1)
    other = Harness(open_store(), clock)
    other.runs = 100
    new = other.stage(a)  # reclaims: the old stage is abandoned and cleared
    outcomes = race(
        4,
        lambda i: (
            pg.write(old, [note(f"late{i}", title="zombie")])
            if i % 2
            else pg.publish(old)
        ),
    )
    assert all(isinstance(o, RunLeaseLost) for o in outcomes)
    other.write(new, [note("n3", title="new")])
    other.publish(new)
    assert pg.live([a]) == {
        (a, "n1"): {"id": "n1", "title": "published"},
        (a, "n3"): {"id": "n3", "title": "new"},
    }


def test_of_workers_racing_for_one_due_slot_exactly_one_claims_it(
    open_store: OpenStore, pg: Harness
) -> None:
    a = pg.connection("a")
    due = "2000-01-01T00:00:00.000Z"
    pg.store.put_schedule(
        a, enabled=True, interval_seconds=60, jitter_seconds=0, next_due_at=due, origin="owner"
    )
    stores = [open_store(pool_size=1) for _ in range(8)]
    outcomes = race(
        8, lambda i: stores[i].claim_schedule(a, due, f"2000-01-01T01:0{i}:00.000Z")
    )
    assert outcomes.count(True) == 1 and outcomes.count(False) == 7, outcomes
    schedule = pg.store.schedule(a)
    assert schedule is not None
    assert schedule.next_due_at == f"2000-01-01T01:0{outcomes.index(True)}:00.000Z"


def test_a_claim_skips_a_schedule_another_worker_is_claiming_instead_of_waiting(
    pg: Harness, postgres_url: str
) -> None:
    a = pg.connection("a")
    due = "2000-01-01T00:00:00.000Z"
    pg.store.put_schedule(
        a, enabled=True, interval_seconds=60, jitter_seconds=0, next_due_at=due, origin="owner"
    )
    with psycopg.connect(postgres_url) as claiming:
        claiming.execute("SELECT 1 FROM schedules WHERE connection_id = %s FOR UPDATE", (a,))
        started = time.monotonic()
        assert pg.store.claim_schedule(a, due, "2000-01-01T00:01:00.000Z") is False
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("publish", [True, False], ids=["published", "abandoned"])
def test_processes_finishing_one_clean_up_at_once_leave_exactly_what_one_would(
    open_store: OpenStore, pg: Harness, publish: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = pg.connection("a")
    pg.collect(a, [note(f"n{i}", title="before") for i in range(30)])
    stage = pg.stage(a)
    pg.write(stage, [note(f"n{i}", title="after") for i in range(0, 30, 2)])
    pg.write(stage, [note(f"new{i}", title="added") for i in range(10)])
    # the process ends its stage, then dies before clearing it: the clean-up stays queued
    monkeypatch.setattr(pg.store, "_clean_stage", lambda *args, **kwargs: None)
    if publish:
        pg.publish(stage)
        expected = {f"n{i}": "after" if i % 2 == 0 else "before" for i in range(30)}
        expected |= {f"new{i}": "added" for i in range(10)}
    else:
        pg.store.abandon(stage, {"code": "crashed", "message": "gone"})
        expected = {f"n{i}": "before" for i in range(30)}
    sweepers = [open_store(pool_size=1) for _ in range(2)]
    starter = Harness(open_store(pool_size=1), pg.clock)
    starter.runs = 100


    def next_run() -> None:
        """A new stage must find the old one cleared before it writes."""
        acquisition = starter.stage(a)
        starter.write(acquisition, [note("n0", title="next")])
        starter.publish(acquisition)

    outcomes = race(3, lambda i: sweepers[i].reclaim_stalled() if i < 2 else next_run())
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    live = {key: data["title"] for (_, key), data in pg.live([a]).items()}
    assert live == {**expected, "n0": "next"}
    with psycopg.connect(sweepers[0].url) as db:
        assert db.execute("SELECT count(*) FROM stage_cleanup").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM records WHERE parked <> 0").fetchone() == (0,)


BLOB = "blob_sha256_" + "d" * 64


def test_a_hold_waits_for_a_collection_in_progress_and_keeps_the_blob(
    open_store: OpenStore, pg: Harness, postgres_url: str
) -> None:
    a = pg.connection("a")
    stage = pg.stage(a)
    assert pg.store.queue_unused_blobs([BLOB]) == 1  # a file no record knows, say
    deleting, finish = threading.Event(), threading.Event()
    deleted: list[str] = []

    def delete(blob_id: str) -> None:
        deleting.set()
        assert finish.wait(30)
        deleted.append(blob_id)

    collector, collect_errors = in_thread(lambda: open_store().collect_blob_garbage(delete))
    assert deleting.wait(30)
    # the stage's connector hands over the same content meanwhile: its hold (and so the
    # placing of its file) waits until the deletion has committed
    holder, hold_errors = in_thread(lambda: pg.store.hold_blobs(stage, [BLOB]))
    waiting_for_locks(postgres_url, 1)
    finish.set()
    collector.join(30)
    holder.join(30)
    assert not collect_errors and not hold_errors
    assert deleted == [BLOB]
    assert pg.store.queue_unused_blobs([BLOB]) == 0  # held now
    collected: list[str] = []
    pg.store.collect_blob_garbage(collected.append)
    assert collected == []


def test_a_collection_waits_for_a_hold_in_flight_and_then_sees_it(
    open_store: OpenStore, pg: Harness, postgres_url: str
) -> None:
    a = pg.connection("a")
    stage = pg.stage(a)
    store = pg.store
    assert isinstance(store, PostgresStore)
    assert store.queue_unused_blobs([BLOB]) == 1
    collected: list[str] = []
    with store._tx():  # the hold's transaction, not yet committed
        store.hold_blobs(stage, [BLOB])
        collector, errors = in_thread(
            lambda: open_store().collect_blob_garbage(collected.append)
        )
        waiting_for_locks(postgres_url, 1)
    collector.join(30)
    assert not errors
    assert collected == []  # it saw the hold once it could look
