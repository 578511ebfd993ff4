"""kill -9 of an import, a run and `serve`: afterwards the database is sound, nothing half-done
is visible, the lease is reclaimed within its lifetime, and a clean re-run gives exact counts."""

from __future__ import annotations

import time

import httpx
import pytest

from ownstream.runtime.runner import BATCH_SIZE
from tests.conftest import Owner
from tests.runtime.messages import done, identity_msg, item, state_msg
from tests.services import free_port

from .conftest import (
    LEASE_SECONDS,
    finish,
    integrity,
    journal_lines,
    kill,
    rows,
    start,
    wait_until,
)

pytestmark = pytest.mark.reliability
ENTRIES = 4 * BATCH_SIZE + 500  # four batches and a bit


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/streams").status_code == 401
    except httpx.TransportError:
        return False


def staged(owner: Owner) -> int:
    return int(rows(owner, "SELECT count(*) FROM records")[0][0])


@pytest.mark.parametrize("point", ["started", "one_batch", "two_batches"])
def test_an_import_killed_at_any_point_leaves_nothing_and_reimports_exactly(
    journal_home: Owner, point: str
) -> None:
    owner = journal_home
    path = owner.import_file("big.jsonl", journal_lines(ENTRIES), header={"user": "u1"})
    process = start(owner, "import", "journal-export", str(path))
    threshold = {"started": 0, "one_batch": BATCH_SIZE, "two_batches": 2 * BATCH_SIZE}[point]
    wait_until(
        lambda: bool(rows(owner, "SELECT 1 FROM runs")) and staged(owner) >= threshold,
        what=f"the import to reach {point}",
    )
    kill(process)

    integrity(owner)
    assert owner.json("connections", "list") == []  # the import created no connection
    # its run is still marked running (the process could not say otherwise) until reclaimed
    assert [r["status"] for r in owner.json("runs", "list")] == ["running"]
    time.sleep(LEASE_SECONDS + 0.5)  # the dead import's lease lapses
    receipt = finish(owner, "import", "journal-export", str(path))
    assert receipt["status"] == "committed"
    assert (receipt["counts"]["new"], receipt["counts"]["parsed"]) == (ENTRIES, ENTRIES)
    integrity(owner)
    assert staged(owner) == ENTRIES  # the dead stage was cleared, not left beside the new one
    history = owner.json("runs", "list", "--connection", receipt["connection_id"])
    assert {(h["kind"], h["status"]) for h in history} == {
        ("run", "succeeded"),
        ("import_batch", "committed"),
    }


@pytest.mark.parametrize("point", ["before_any_batch", "after_a_batch"])
def test_a_run_killed_mid_way_is_reported_stalled_then_reclaimed(
    journal_home: Owner, point: str
) -> None:
    owner = journal_home
    cid = owner.connect_scripted("c")
    started, release = owner.scratch / "started", owner.scratch / "release"
    items = [item(f"r{i}") for i in range(6)]
    early = items[:3] if point == "after_a_batch" else []
    owner.script(
        "c",
        [identity_msg("acct-1"), *early, state_msg("items", "mid"), {"touch": str(started)},
         {"wait_for": str(release)}, *items[3:], done(len(early) + 3)],
    )
    process = start(owner, "run", cid)
    wait_until(started.exists, what="the run to start")
    kill(process)
    integrity(owner)
    assert owner.records(cid, "items") == {}  # a batch was staged, never published

    time.sleep(LEASE_SECONDS + 0.5)  # no heartbeat renews the dead run's lease
    health = owner.json("connections", "diagnostics", cid)["health"]
    assert (health["state"], health["reason_code"]) == ("degraded", "run_stalled")
    owner.script("c", [identity_msg("acct-1"), *items, state_msg("items", "r5"), done(6)])
    release.touch()  # lets the orphaned connector process end
    [rerun] = finish(owner, "run", cid)  # takes over the stale lease, clears the dead stage
    assert rerun["status"] == "succeeded" and rerun["collection_mode"] == "full_refresh"
    integrity(owner)
    assert [r.status for r in owner.runs(cid)] == ["succeeded", "failed"]
    assert sorted(owner.records(cid, "items")) == [f"r{i}" for i in range(6)]
    assert owner.json("connections", "diagnostics", cid)["health"]["state"] == "healthy"


def test_serve_killed_during_a_scheduled_run_frees_the_connection_within_its_lease(
    journal_home: Owner,
) -> None:
    owner = journal_home
    cid = owner.connect_scripted("c", connector="scripted-bg")
    started, release = owner.scratch / "started", owner.scratch / "release"
    owner.script(
        "c",
        [identity_msg("acct-1"), item("r1"), {"touch": str(started)},
         {"wait_for": str(release)}, item("r2"), done(2)],
    )
    owner.json("connections", "schedule", cid, "--interval", "60")
    rows(owner, "UPDATE schedules SET next_due_at = '2000-01-01T00:00:00.000Z'")
    port = free_port()
    server = start(owner, "serve", "--port", str(port))
    try:
        wait_until(started.exists, 60, "the scheduled run to start inside serve")
    finally:
        kill(server)
    integrity(owner)
    killed_at = time.monotonic()
    time.sleep(LEASE_SECONDS + 0.5)
    health = owner.json("connections", "diagnostics", cid)["health"]
    assert health["reason_code"] == "run_stalled"  # never "healthy" while it is stuck
    assert time.monotonic() - killed_at < 60  # reclaimable well within a minute

    owner.script("c", [identity_msg("acct-1"), item("r1"), item("r2"), done(2)])
    release.touch()
    server = start(owner, "serve", "--port", str(port))
    try:
        wait_until(lambda: answers(port), 30, "serve to answer")
        [again] = finish(owner, "run", cid)
    finally:
        server.terminate()
        server.wait(30)
    assert again["status"] == "succeeded"
    assert sorted(owner.records(cid, "items")) == ["r1", "r2"]
    integrity(owner)
