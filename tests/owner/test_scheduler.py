"""The scheduler: refresh policies, due slots, durable leases, back-off, sibling isolation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from ownstream.clock import iso, now_iso
from ownstream.connectors.spotify import connector as spotify_connector
from ownstream.errors import ConnectionRunActive, ScheduleNotAllowed
from ownstream.home import LEASE_ENV
from ownstream.runtime.sdk import Message, Start
from ownstream.scheduler import Worker
from ownstream.store.base import Binding

from . import FakeClock, Lab, custom_manifest

HOUR = 3600
AFTER_FIRST_SLOT = HOUR + 300 + 1  # the refresh-policy interval plus its largest jitter


def statuses(result: Any) -> list[str]:
    assert isinstance(result, list), result
    return [o.status for o in result]


def owner_schedule(lab: Lab, connection_id: str, interval: int = 60) -> None:
    lab.ops.put_schedule(connection_id, enabled=True, interval_seconds=interval, jitter_seconds=0)


# -- refresh policies ----------------------------------------------------------------------------


def test_an_automatic_background_safe_connector_is_enrolled_at_connect(lab: Lab) -> None:
    ann = lab.connect("ann")
    schedule = lab.store.schedule(ann)
    assert schedule is not None
    assert (schedule.enabled, schedule.paused, schedule.origin) == (True, False, "refresh_policy")
    assert (schedule.interval_seconds, schedule.jitter_seconds) == (HOUR, 300)
    assert schedule.next_due_at is not None and schedule.next_due_at > schedule.updated_at
    # a re-connect (say, a new token) keeps the schedule the owner may have changed
    owner_schedule(lab, ann, 900)
    lab.connect("ann", connection_id=ann)
    kept = lab.store.schedule(ann)
    assert kept is not None and (kept.interval_seconds, kept.origin) == (900, "owner")


def test_a_background_unsafe_connector_refuses_an_enabled_schedule(lab: Lab) -> None:
    ben = lab.import_archive("ben").receipt.connection_id  # spotify-export: manual, unsafe
    assert lab.store.schedule(ben) is None
    with pytest.raises(ScheduleNotAllowed):
        lab.ops.put_schedule(ben, enabled=True, interval_seconds=HOUR)
    assert lab.store.schedule(ben) is None
    # a disabled schedule says nothing will run: allowed
    assert lab.ops.put_schedule(ben, enabled=False, interval_seconds=HOUR).enabled is False


@pytest.mark.parametrize(
    ("policy", "accepted"),
    [
        ({"recommended_mode": "paused", "background_safe": True}, False),
        ({"recommended_mode": "automatic", "background_safe": False}, False),
        ({"recommended_mode": "manual", "background_safe": False}, False),
        # R45: manual by default, but safe in the background: the owner may schedule it
        ({"recommended_mode": "manual", "background_safe": True}, True),
    ],
    ids=["paused-mode", "automatic-unsafe", "manual-unsafe", "manual-background-safe"],
)
def test_refresh_policy_decides_enrollment_and_owner_schedules(
    lab: Lab, policy: dict[str, Any], accepted: bool
) -> None:
    lab.register(custom_manifest("spotify-custom", policy))
    ann = lab.connect("ann", connector="spotify-custom")
    assert lab.store.schedule(ann) is None  # never auto-enrolled
    assert lab.ops.connection_entry(lab.store.connection(ann))["schedule"] is None
    if not accepted:
        error = lab.error(
            "PUT",
            f"/v1/owner/connections/{ann}/schedule",
            409,
            "schedule_not_allowed",
            json={"enabled": True, "interval_seconds": 600},
        )
        assert error["connection_id"] == ann
        assert lab.store.schedule(ann) is None
        return
    body = lab.ok(
        "PUT",
        f"/v1/owner/connections/{ann}/schedule",
        json={"enabled": True, "interval_seconds": 600, "jitter_seconds": 0},
    )
    assert body["origin"] == "owner" and body["enabled"] is True
    results = lab.worker(FakeClock()).tick()
    assert statuses(results[ann]) == ["succeeded"]
    assert [(r.connector_key, r.trigger) for r in lab.runs(ann)] == [("spotify-custom", "schedule")]


# -- due slots -------------------------------------------------------------------------------


def test_the_worker_runs_due_connections_once_per_slot(lab: Lab) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    assert Worker(lab.home.runtime()).tick() == {}  # nothing is due yet
    clock = FakeClock()
    worker = lab.worker(clock)
    results = worker.tick()
    assert set(results) == {ann, ben}
    assert statuses(results[ann]) == statuses(results[ben]) == ["succeeded"]
    assert worker.tick() == {}  # the slot was taken
    for connection_id in (ann, ben):
        [run] = lab.runs(connection_id)
        assert (run.trigger, run.status, run.collection_mode) == (
            "schedule",
            "succeeded",
            "full_refresh",
        )
        schedule = lab.store.schedule(connection_id)
        assert schedule is not None and schedule.last_run_at is not None
        assert schedule.next_due_at is not None and schedule.next_due_at > iso(clock.now)
        events = lab.audit(connection_id)
        [event] = [e for e in events if e["actor_kind"] == "scheduler"]
        assert (event["operation"], event["outcome"]) == ("scheduled_run", "succeeded")
        assert event["summary"]["runs"] == [run.run_id]
    clock.advance(AFTER_FIRST_SLOT)
    again = worker.tick()
    assert set(again) == {ann, ben}
    # each connection's own state
    assert all(r.collection_mode == "incremental" for r in lab.outcomes(again[ann]))


def test_siblings_run_concurrently(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    together = threading.Barrier(2, timeout=10)
    original = spotify_connector.collect

    def meet_then_collect(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
        together.wait()  # both runs are under way at once, or this times out
        yield from original(start, env)

    monkeypatch.setattr(spotify_connector, "collect", meet_then_collect)
    results = lab.worker(FakeClock()).tick()
    assert statuses(results[ann]) == statuses(results[ben]) == ["succeeded"]


def test_a_worker_takes_only_what_it_runs_at_once_and_leaves_the_rest_to_others(
    lab: Lab,
) -> None:
    conns = [lab.connect(user) for user in ("ann", "ben", "cy")]
    for connection_id in conns:
        owner_schedule(lab, connection_id, 60)
    clock = FakeClock()
    first = lab.worker(clock, max_parallel=2).tick()
    second = lab.worker(clock, home=lab.fresh_home(), max_parallel=2).tick()
    assert len(first) == 2 and len(second) == 1 and set(first) | set(second) == set(conns)
    assert all(statuses(result) == ["succeeded"] for result in [*first.values(), *second.values()])


def test_two_workers_racing_for_one_due_connection_run_it_once(lab: Lab) -> None:
    ann = lab.connect("ann")
    owner_schedule(lab, ann, 60)
    clock = FakeClock()
    workers = [lab.worker(clock, home=lab.fresh_home()) for _ in range(2)]

    def race(worker: Worker, start: threading.Barrier, results: list[Any]) -> None:
        start.wait()
        results.append(worker.tick())

    for round_ in range(3):
        start = threading.Barrier(len(workers))
        results: list[Any] = []
        threads = [threading.Thread(target=race, args=(w, start, results)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(results) == 2
        winners = [r for r in results if r]
        assert len(winners) == 1, results
        assert statuses(winners[0][ann]) == ["succeeded"]
        assert len(lab.runs(ann)) == round_ + 1
        clock.advance(61)
    events = [e for e in lab.audit(ann) if e["operation"] == "scheduled_run"]
    assert len(events) == 3
    assert len({e["summary"]["worker_id"] for e in events}) <= 2


def test_a_crashed_workers_lease_expires_and_another_takes_over(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = lab.connect("ann")
    owner_schedule(lab, ann, 60)
    # a worker with a short lease starts a run, then dies without ending it
    monkeypatch.setenv(LEASE_ENV, "1")
    crashed = lab.fresh_home().store
    monkeypatch.delenv(LEASE_ENV)
    stale = crashed.start_stage(
        Binding(ann),
        connector_key="spotify",
        acquisition_method="provider_api",
        trigger="schedule",
        collection_mode="full_refresh",
        holder="wrk_crashed",
        run_id="run_crashed",
    )
    crashed.close()
    lease = lab.store.active_lease(ann)
    assert lease is not None and lease.holder == "wrk_crashed"

    clock = FakeClock()
    worker = lab.worker(clock)
    # while the lease is live the slot is skipped: not run, and not counted as a failure
    busy = worker.tick()
    assert isinstance(busy[ann], ConnectionRunActive)
    assert [r.run_id for r in lab.runs(ann)] == [stale.run_id]
    schedule = lab.store.schedule(ann)
    assert schedule is not None
    assert (schedule.consecutive_failures, schedule.backoff_until) == (0, None)
    assert lab.audit(ann)[0]["outcome"] == "skipped"

    deadline = time.monotonic() + 5
    while (lease := lab.store.active_lease(ann)) is not None and not lease.stale(now_iso()):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)
    clock.advance(61)
    took_over = worker.tick()
    assert statuses(took_over[ann]) == ["succeeded"]
    runs = {r.run_id: r for r in lab.runs(ann)}
    assert runs[stale.run_id].status == "failed"
    assert runs[stale.run_id].error is not None
    assert runs[stale.run_id].error["code"] == "run_stalled"
    assert lab.store.active_lease(ann) is None


# -- failures --------------------------------------------------------------------------------


def test_failures_back_off_per_connection_while_a_sibling_keeps_running(lab: Lab) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    owner_schedule(lab, ann, 60)
    owner_schedule(lab, ben, 60)
    lab.double.expire_token(lab.tokens["ann"])  # ann's credential is now rejected (HTTP 401)
    clock = FakeClock()
    worker = lab.worker(clock)
    ran: list[set[str]] = []
    for _ in range(8):
        ran.append(set(worker.tick()))
        clock.advance(61)
    # ann runs at ticks 0 and 1, then waits 2, then 4 intervals; ben runs at every tick
    assert [ann in r for r in ran] == [True, True, False, True, False, False, False, True]
    assert all(ben in r for r in ran)
    ann_schedule, ben_schedule = lab.store.schedule(ann), lab.store.schedule(ben)
    assert ann_schedule is not None and ben_schedule is not None
    assert ann_schedule.consecutive_failures == 4
    assert ann_schedule.backoff_until is not None and ann_schedule.backoff_until > iso(clock.now)
    assert (ben_schedule.consecutive_failures, ben_schedule.backoff_until) == (0, None)
    assert {r.status for r in lab.runs(ann)} == {"failed"}
    assert {r.status for r in lab.runs(ben)} == {"succeeded"}
    assert lab.ops.health(lab.store.connection(ben)).state == "healthy"
    assert lab.ops.health(lab.store.connection(ann)).state == "blocked"

    # the owner repairs the credential: the next try succeeds and the back-off is cleared
    lab.connect("ann", connection_id=ann)
    clock.advance(600)
    assert statuses(worker.tick()[ann]) == ["succeeded"]
    repaired = lab.store.schedule(ann)
    assert repaired is not None
    assert (repaired.consecutive_failures, repaired.backoff_until) == (0, None)


def test_an_upstream_outage_backs_off_and_reads_degraded(lab: Lab) -> None:
    ann = lab.connect("ann")
    owner_schedule(lab, ann, 60)
    lab.double.inject_fault("/v1/me", 503, times=3)  # every retry of the identity request fails
    clock = FakeClock()
    result = lab.worker(clock).tick()
    assert statuses(result[ann]) == ["failed"]
    [run] = lab.runs(ann)
    assert run.error is not None and run.error["code"] == "upstream_unavailable"
    schedule = lab.store.schedule(ann)
    assert schedule is not None and schedule.consecutive_failures == 1
    health = lab.ops.health(lab.store.connection(ann))
    assert (health.state, health.reason) == ("degraded", "last_run_failed")
    assert health.remediation == "retry_by_runtime"


# -- pausing ----------------------------------------------------------------------------------


def test_pausing_one_connection_never_affects_another(lab: Lab) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    before = lab.store.schedule(ben)
    body = lab.ok("POST", f"/v1/owner/connections/{ann}/schedule/pause")
    assert body["paused"] is True
    assert lab.store.schedule(ben) == before
    clock = FakeClock()
    worker = lab.worker(clock)
    assert set(worker.tick()) == {ben}
    assert lab.runs(ann) == []
    clock.advance(AFTER_FIRST_SLOT)
    assert set(worker.tick()) == {ben}
    assert lab.ops.health(lab.store.connection(ann)).state == "unknown"

    lab.ok("POST", f"/v1/owner/connections/{ann}/schedule/resume")
    assert set(worker.tick()) == {ann}  # overdue: it runs at once
    paused_ben = lab.ops.pause_schedule(ben, True)
    assert paused_ben.paused and not lab.store.schedule(ann).paused  # type: ignore[union-attr]


def test_the_standalone_worker_command_runs_due_connections(lab: Lab) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    with lab.db() as db:
        db.execute(
            "UPDATE schedules SET next_due_at = '2000-01-01T00:00:00.000Z' WHERE connection_id = ?",
            (ann,),
        )
    payload = lab.cli_json("worker", "--once")
    assert list(payload) == [ann]
    assert [o["status"] for o in payload[ann]] == ["succeeded"]
    assert [o["trigger"] for o in payload[ann]] == ["schedule"]
    assert lab.runs(ben) == []
    assert lab.cli_json("worker", "--once") == {}
