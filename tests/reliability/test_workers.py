"""Workers: two on one data directory never run one connection at once, and a worker keeps going
through database errors, logging them."""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import threading
import time
from typing import Any

import pytest

from ownstream.scheduler import Worker
from tests.conftest import Owner
from tests.runtime.messages import done, identity_msg, item

from .conftest import integrity, rows, start

pytestmark = pytest.mark.reliability
PAST = "2000-01-01T00:00:00.000Z"


def test_two_workers_on_one_home_never_overlap(journal_home: Owner) -> None:
    owner = journal_home
    connections = []
    for name in ("a", "b", "c"):
        cid = owner.connect_scripted(name, connector="scripted-bg", identity=f"acct-{name}")
        owner.script(
            name, [identity_msg(f"acct-{name}"), item("r1"), {"sleep": 0.3}, done(1)],
            identity=f"acct-{name}",
        )
        owner.json("connections", "schedule", cid, "--interval", "60")
        connections.append(cid)
    workers = [start(owner, "worker", "--poll", "0.05") for _ in range(2)]

    def enough() -> bool:
        """Every connection ran at least three times, by both workers between them."""
        counts = rows(
            owner,
            "SELECT connection_id, count(*) FROM runs WHERE trigger = 'schedule' "
            "AND status = 'succeeded' GROUP BY connection_id",
        )
        summaries = rows(
            owner, "SELECT summary FROM audit_events WHERE operation = 'scheduled_run'"
        )
        seen = {json.loads(summary)["worker_id"] for (summary,) in summaries}
        return len(counts) == 3 and min(n for _, n in counts) >= 3 and len(seen) == 2

    try:
        # the slots come due again and again, for both workers at once, until each connection
        # has run often enough (however slowly the workers start on a loaded machine)
        deadline = time.monotonic() + 90
        while not enough() and time.monotonic() < deadline:
            rows(owner, "UPDATE schedules SET next_due_at = ?", (PAST,))
            time.sleep(0.7)
        time.sleep(1.0)  # a run that started on the last round finishes
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
    integrity(owner)
    for cid in connections:
        runs = rows(
            owner,
            "SELECT started_at, ended_at, status FROM runs WHERE connection_id = ? "
            "AND trigger = 'schedule' ORDER BY started_at",
            (cid,),
        )
        assert len(runs) >= 3, runs  # both workers ran it, in turn
        assert all(status == "succeeded" for _, _, status in runs), runs
        for (_, ended, _), (started, _, _) in itertools.pairwise(runs):
            assert ended is not None and ended <= started, runs  # one at a time
    events = rows(owner, "SELECT summary FROM audit_events WHERE operation = 'scheduled_run'")
    workers_seen = {json.loads(summary)["worker_id"] for (summary,) in events}
    assert len(workers_seen) == 2


class Flaky:
    """A store whose schedule queries fail a few times, as a locked or broken database would."""

    def __init__(self, store: Any, failures: int) -> None:
        self._store = store
        self.failures = failures

    def due_schedules(self, now: str) -> Any:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return self._store.due_schedules(now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_worker_survives_database_errors_and_logs_them(
    journal_home: Owner, caplog: pytest.LogCaptureFixture
) -> None:
    owner = journal_home
    cid = owner.connect_scripted("a", connector="scripted-bg")
    owner.script("a", [identity_msg("acct-1"), item("r1"), done(1)])
    owner.json("connections", "schedule", cid, "--interval", "60")
    rows(owner, "UPDATE schedules SET next_due_at = ?", (PAST,))
    runtime = owner.runtime()
    worker = Worker(runtime)
    worker.store = Flaky(runtime.store, failures=3)
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="ownstream.scheduler"):
        thread = threading.Thread(target=worker.run_forever, args=(stop, 0.01), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not owner.runs(cid) or owner.runs(cid)[0].status == "running":
            assert time.monotonic() < deadline, "the worker never recovered"
            time.sleep(0.02)
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [r.status for r in owner.runs(cid)] == ["succeeded"]
    failures = [r for r in caplog.records if "pass failed" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)
