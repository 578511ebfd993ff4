"""Deleting one connection: one transaction, refused during a run, siblings and grants intact."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.clock import now_iso
from ownstream.connectors.spotify import connector as spotify_connector
from ownstream.errors import ConnectionNotFound, ConnectionRunActive, ConnectionTombstoned
from ownstream.grants.issue import issue_grant
from ownstream.home import LEASE_ENV
from ownstream.runtime.runner import Runtime
from ownstream.runtime.sdk import Message, Start
from ownstream.store.base import Binding, Publication
from ownstream.store.postgres import connections as postgres_connections
from ownstream.store.sqlite import connections as sqlite_connections

from . import Lab


def live_per_stream(lab: Lab, connection_id: str) -> dict[str, int]:
    with lab.db() as db:
        return dict(
            db.execute(
                "SELECT stream, count(*) FROM records WHERE connection_id = ? AND NOT deleted "
                "GROUP BY stream",
                (connection_id,),
            ).fetchall()
        )


def populated(lab: Lab) -> dict[str, str]:
    """ann: Web API runs and an archive (two paths); ben: Web API; cy: archive only."""
    ann = lab.connect("ann")
    lab.ops.run(ann)
    assert lab.import_archive("ann").receipt.connection_id == ann
    lab.ops.put_schedule(ann, enabled=True, interval_seconds=900)
    ben = lab.connect("ben")
    lab.ops.run(ben)
    cy = lab.import_archive("cy").receipt.connection_id
    return {"ann": ann, "ben": ben, "cy": cy}


def test_delete_erases_one_connection_and_nothing_else(lab: Lab) -> None:
    conns = populated(lab)
    ann, ben, cy = conns["ann"], conns["ben"], conns["cy"]
    before = {name: lab.counts(cid) for name, cid in conns.items()}
    assert all(before["ann"][t] > 0 for t in before["ann"] if t != "run_leases"), before["ann"]
    per_stream = live_per_stream(lab, ann)
    ann_audit = lab.audit(ann)

    result = lab.ops.delete(ann)

    assert result == {
        "deleted": True,
        "connection_id": ann,
        "records_per_stream": per_stream,
        "records": sum(per_stream.values()),
        "blobs_deleted": 0,
    }
    assert set(lab.counts(ann).values()) == {0}
    assert lab.counts(ben) == before["ben"] and lab.counts(cy) == before["cy"]
    with lab.db() as db:
        tombstones = db.execute(
            "SELECT DISTINCT source, claim, value, connection_id FROM identity_tombstones"
        ).fetchall()
    assert tombstones == [("spotify", "spotify_user_id", "ann", ann)]
    with pytest.raises(ConnectionNotFound):
        lab.store.connection(ann)
    assert [c.connection_id for c in lab.store.connections()] == [ben, cy]

    # the audit trail survives and records the deletion with counts per stream
    events = lab.audit(ann)
    assert events[1:] == ann_audit
    assert events[0]["operation"] == "delete" and events[0]["outcome"] == "succeeded"
    assert events[0]["summary"]["records_per_stream"] == per_stream

    # the sibling keeps collecting and keeps its schedule
    assert [o.status for o in lab.ops.run(ben)] == ["succeeded"]
    ben_schedule = lab.store.schedule(ben)
    assert ben_schedule is not None and ben_schedule.enabled


def test_a_failure_mid_cascade_deletes_nothing(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    conns = populated(lab)
    ann = conns["ann"]
    before = {name: lab.counts(cid) for name, cid in conns.items()}
    backend = sqlite_connections if lab.store.capabilities.backend == "sqlite" else (
        postgres_connections
    )
    tables = list(backend.CONNECTION_TABLES)
    tables.insert(tables.index("schedules") + 1, "no_such_table")
    monkeypatch.setattr(backend, "CONNECTION_TABLES", tuple(tables))

    with pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedTable)):
        lab.ops.delete(ann)
    after_ops = {name: lab.counts(cid) for name, cid in conns.items()}
    assert after_ops == before

    http = TestClient(create_app(lab.home), raise_server_exceptions=False)
    response = http.delete(
        f"/v1/owner/connections/{ann}", headers={"Authorization": f"Bearer {lab.owner_token}"}
    )
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "api_error"
    assert {name: lab.counts(cid) for name, cid in conns.items()} == before
    assert lab.store.connection(ann).status == "active"
    with lab.db() as db:
        assert db.execute("SELECT count(*) FROM identity_tombstones").fetchone()[0] == 0
    failed = [e for e in lab.audit(ann) if e["operation"] == "delete"]
    assert [e["outcome"] for e in failed] == ["failed", "failed"]

    # the identity was not tombstoned: the account's archive still imports into it
    assert lab.import_archive("ann").receipt.connection_id == ann

    monkeypatch.undo()
    lab.ops.delete(ann)
    assert set(lab.counts(ann).values()) == {0}


def test_a_crash_mid_purge_leaves_nothing_readable_and_the_purge_resumes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    conns = populated(lab)
    ann = conns["ann"]
    before = {name: lab.counts(cid) for name, cid in conns.items() if name != "ann"}
    real_purge = lab.store._purge  # type: ignore[attr-defined]

    def crash(connection_id: str, **how: Any) -> int:
        raise KeyboardInterrupt("the process died mid-purge")

    monkeypatch.setattr(lab.store, "_purge", crash)
    with pytest.raises(KeyboardInterrupt):
        lab.ops.delete(ann)
    # the connection is gone at once: nothing of it is readable, its records still on disk
    with pytest.raises(ConnectionNotFound):
        lab.store.connection(ann)
    assert lab.counts(ann)["records"] > 0
    monkeypatch.setattr(lab.store, "_purge", real_purge)
    assert lab.store.purge_deleted() > 0  # what a restarted worker does
    assert set(lab.counts(ann).values()) == {0}
    assert {name: lab.counts(cid) for name, cid in conns.items() if name != "ann"} == before


def test_delete_is_refused_while_a_run_holds_the_lease(lab: Lab) -> None:
    ann = lab.connect("ann")
    lab.ops.run(ann)
    before = lab.counts(ann)
    acquisition = lab.store.start_stage(
        Binding(ann),
        connector_key="spotify",
        acquisition_method="provider_api",
        trigger="manual",
        collection_mode="incremental",
        holder="another-worker",
        run_id="run_other",
    )
    error = lab.error("DELETE", f"/v1/owner/connections/{ann}", 409, "connection_run_active")
    assert error["run_id"] == acquisition.run_id
    with pytest.raises(ConnectionRunActive):
        lab.ops.delete(ann)
    assert lab.counts(ann) == {**before, "runs": before["runs"] + 1, "run_leases": 1}
    outcomes = [e["outcome"] for e in lab.audit(ann) if e["operation"] == "delete"]
    assert outcomes == ["refused", "refused"]

    # once the run ends, the delete goes through
    lab.store.publish(
        acquisition,
        Publication(
            status="succeeded", counts={}, known_gaps=[], checkpoint={}, error=None, states=None
        ),
    )
    assert lab.ok("DELETE", f"/v1/owner/connections/{ann}")["deleted"] is True
    assert set(lab.counts(ann).values()) == {0}


def test_unknown_or_already_deleted_connection_is_not_found(lab: Lab) -> None:
    ann = lab.connect("ann")
    lab.ops.delete(ann)
    for connection_id in (ann, "cin_unknown"):
        with pytest.raises(ConnectionNotFound):
            lab.ops.delete(connection_id)
        lab.error("DELETE", f"/v1/owner/connections/{connection_id}", 404, "connection_not_found")
        lab.cli_json("connections", "delete", connection_id, code=1)
    outcomes = [e["outcome"] for e in lab.audit(ann) if e["operation"] == "delete"]
    assert outcomes == ["refused", "refused", "refused", "succeeded"]


def test_grants_are_not_rewritten_and_read_nothing_from_a_deleted_connection(lab: Lab) -> None:
    ann = lab.import_archive("ann").receipt.connection_id
    ben = lab.import_archive("ben").receipt.connection_id
    grant, token = issue_grant(
        lab.store,
        lab.home.catalog,
        "app.test",
        {"streams": [{"name": "listening_history", "connection_ids": [ann, ben]}]},
    )
    headers = {"Authorization": f"Bearer {token}"}

    def read(**params: Any) -> Any:
        found: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 100, **params}
        while True:
            response = lab.http.get(
                "/v1/streams/listening_history/records", params=query, headers=headers
            )
            assert response.status_code == 200, response.text
            body = response.json()
            found += body["data"]
            if not body["has_more"]:
                return found
            query["cursor"] = body["next_cursor"]

    ben_records = live_per_stream(lab, ben)["listening_history"]
    assert {r["connection_id"] for r in read()} == {ann, ben}
    document = lab.ok("GET", f"/v1/owner/grants/{grant.grant_id}")

    lab.ops.delete(ann)

    assert lab.ok("GET", f"/v1/owner/grants/{grant.grant_id}") == document  # not rewritten
    assert document["streams"][0]["instance_ids"] == [ann, ben]
    remaining = read()
    assert {r["connection_id"] for r in remaining} == {ben}
    assert len(remaining) == ben_records
    assert read(connection_id=ann) == []


def test_a_deleted_identity_is_not_silently_recreated(lab: Lab) -> None:
    ann = lab.connect("ann")
    assert lab.import_archive("ann").receipt.connection_id == ann
    lab.ops.delete(ann)

    with pytest.raises(ConnectionTombstoned):
        lab.import_archive("ann")
    with pytest.raises(ConnectionTombstoned):
        lab.connect("ann")
    error = lab.cli_json("import", "spotify-export", str(lab.archive("ann")), code=1)["error"]
    assert error["code"] == "connection_tombstoned"
    assert lab.store.connections() == []
    refusals = [e for e in lab.audit() if e["outcome"] == "refused"]
    assert {e["operation"] for e in refusals} == {"import", "connect"}
    assert {e["summary"]["error"] for e in refusals} == {"connection_tombstoned"}

    # the owner's explicit action re-creates it
    result = lab.import_archive("ann", allow_recreate=True)
    assert result.status == "committed" and result.outcome is not None
    assert result.outcome.created_connection is True
    again = result.receipt.connection_id
    assert lab.connect("ann") == again  # the live connection now matches the account
    created = [e for e in lab.audit(again) if e["operation"] == "import"]
    assert created[0]["outcome"] == "succeeded"


def test_a_grant_issued_before_a_delete_does_not_read_a_recreated_identity(lab: Lab) -> None:
    ann = lab.import_archive("ann").receipt.connection_id
    _, token = issue_grant(
        lab.store,
        lab.home.catalog,
        "app.test",
        {"streams": [{"name": "profile", "connection_ids": [ann]}]},
    )
    lab.ops.delete(ann)
    lab.import_archive("ann", allow_recreate=True)
    response = lab.http.get(
        "/v1/streams/profile/records", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []


def test_a_run_that_lost_its_lease_cannot_write_a_deleted_connection_back(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = lab.connect("ann")
    monkeypatch.setenv(LEASE_ENV, "1")
    slow = lab.fresh_home()
    assert slow.store.lease_seconds == 1
    monkeypatch.delenv(LEASE_ENV)
    started, release = threading.Event(), threading.Event()
    original = spotify_connector.collect

    def stalls_after_identity(start: Start, env: Mapping[str, str]) -> Iterator[Message]:
        messages = original(start, env)
        yield next(messages)
        started.set()
        release.wait(10)  # a stalled upstream, and a heartbeat that never beats in time
        yield from messages

    monkeypatch.setattr(spotify_connector, "collect", stalls_after_identity)
    box: dict[str, Any] = {}
    runtime = Runtime(slow.store, slow.catalog, slow.vault, slow.blobs, heartbeat_seconds=600)
    worker = threading.Thread(
        target=lambda: box.setdefault("outcomes", runtime.run_connection(ann))
    )
    worker.start()
    assert started.wait(10)
    deadline = time.monotonic() + 5
    while (lease := lab.store.active_lease(ann)) is not None and not lease.stale(now_iso()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lab.ops.delete(ann)  # the lease expired: the owner's delete goes through
    release.set()
    worker.join(30)
    assert set(lab.counts(ann).values()) == {0}, lab.counts(ann)
