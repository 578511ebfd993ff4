"""The lifecycle through OwnerOperations and the CLI, and sibling isolation of each action."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ownstream.errors import (
    AmbiguousConnection,
    ConnectionInactive,
    ConnectionNotFound,
    ConnectionNotWritable,
    ConnectionRunActive,
    InvalidArgument,
)
from ownstream.store.base import Binding

from . import FakeClock, Lab


def wait_for_runs(lab: Lab, connection_id: str, run_ids: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        runs = {r.run_id: r for r in lab.runs(connection_id) if r.run_id in run_ids}
        if len(runs) == len(run_ids) and all(r.status != "running" for r in runs.values()):
            return runs
        assert time.monotonic() < deadline, runs
        time.sleep(0.02)


def last_event(lab: Lab, connection_id: str) -> tuple[str, str]:
    event = lab.audit(connection_id)[0]
    return event["operation"], event["outcome"]


def test_each_action_through_the_operations(lab: Lab) -> None:
    ops = lab.ops
    first = ops.connect(
        "spotify", secrets={"access_token": lab.issue("ann")}, settings=lab.settings()
    )
    ann = first.connection.connection_id
    assert first.created is True and first.identity is not None
    assert last_event(lab, ann) == ("connect", "succeeded")
    again = ops.connect(
        "spotify", secrets={"access_token": lab.issue("ann")}, settings=lab.settings()
    )
    assert again.created is False and again.connection.connection_id == ann

    renamed = ops.rename(ann, "Ann's account")
    assert renamed.display_name == "Ann's account" and not renamed.display_name_is_placeholder
    assert last_event(lab, ann) == ("rename", "succeeded")

    [outcome] = ops.run(ann)
    assert outcome.status == "succeeded" and outcome.trigger == "manual"
    assert last_event(lab, ann) == ("run", "succeeded")

    run_ids = ops.start_run(ann)
    assert last_event(lab, ann) == ("run", "started")
    assert wait_for_runs(lab, ann, run_ids)[run_ids[0]].status == "succeeded"
    deadline = time.monotonic() + 10  # the background run is audited once it has finished
    while last_event(lab, ann) != ("run_finished", "succeeded") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert last_event(lab, ann) == ("run_finished", "succeeded")

    revoked = ops.revoke(ann)
    assert revoked.status == "revoked" and revoked.revoked_at is not None
    with pytest.raises(ConnectionNotWritable):
        ops.run(ann)
    with pytest.raises(ConnectionNotWritable):
        ops.start_run(ann)
    assert last_event(lab, ann) == ("run", "refused")
    reactivated = ops.reactivate(ann)
    assert reactivated.status == "active" and reactivated.revoked_at is None

    schedule = ops.put_schedule(ann, enabled=True, interval_seconds=1800, jitter_seconds=60)
    assert (schedule.interval_seconds, schedule.jitter_seconds, schedule.origin) == (
        1800,
        60,
        "owner",
    )
    with pytest.raises(InvalidArgument):
        ops.put_schedule(ann, enabled=True, interval_seconds=600, jitter_seconds=601)
    assert ops.pause_schedule(ann, True).paused is True
    assert ops.pause_schedule(ann, False).paused is False

    diagnostics = ops.diagnostics(ann)
    assert diagnostics["health"]["state"] == "healthy"
    assert len(lab.runs(ann)) == 2 and diagnostics["last_run"]["status"] == "succeeded"
    entry = ops.connection_entry(lab.store.connection(ann))
    assert entry["schedule"]["interval_seconds"] == 1800
    assert ops.grouped_connections() == [
        {"source": "spotify", "connectors": [{"connector_key": "spotify", "connection_ids": [ann]}]}
    ]
    assert ops.connector_connection("spotify").connection_id == ann

    result = ops.delete(ann)
    assert result["deleted"] is True and result["records"] > 0
    with pytest.raises(ConnectionNotFound):
        ops.diagnostics(ann)
    operations = [e["operation"] for e in reversed(lab.audit(ann))]
    assert operations == [
        "connect",
        "connect",
        "rename",
        "run",
        "run",
        "run_finished",
        "revoke",
        "run",
        "run",
        "reactivate",
        "schedule",
        "schedule",
        "schedule_pause",
        "schedule_resume",
        "delete",
    ]


def test_start_run_refuses_while_a_run_is_active(lab: Lab) -> None:
    ann = lab.connect("ann")
    lab.store.start_stage(
        Binding(ann),
        connector_key="spotify",
        acquisition_method="provider_api",
        trigger="manual",
        collection_mode="full_refresh",
        holder="elsewhere",
        run_id="run_elsewhere",
    )
    with pytest.raises(ConnectionRunActive):
        lab.ops.start_run(ann)
    with pytest.raises(ConnectionRunActive):
        lab.ops.run(ann)
    assert len(lab.runs(ann)) == 1


def test_connector_connection_is_never_an_arbitrary_pick(lab: Lab) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    with pytest.raises(AmbiguousConnection) as raised:
        lab.ops.connector_connection("spotify")
    assert raised.value.extra["retry_with"] == "connection_id"
    assert {c["connection_id"] for c in raised.value.extra["available_connections"]} == {ann, ben}
    with pytest.raises(ConnectionNotFound):
        lab.ops.connector_connection("spotify-export")


def test_each_action_through_the_cli(lab: Lab) -> None:
    ann = lab.connect("ann")
    ben = lab.import_archive("ben").receipt.connection_id
    listed = {e["connection_id"]: e for e in lab.cli_json("connections", "list")}
    assert set(listed) == {ann, ben}
    api_listed = {e["connection_id"]: e for e in lab.ok("GET", "/v1/owner/connections")["data"]}
    assert listed == api_listed
    assert "unknown" in lab.cli("connections", "list").stdout

    assert lab.cli_json("connections", "rename", ann, "Ann")["display_name"] == "Ann"
    [outcome] = lab.cli_json("run", ann)
    assert outcome["status"] == "succeeded"
    assert lab.cli_json("connections", "revoke", ann)["status"] == "revoked"
    assert lab.cli_json("run", ann, code=1)["error"]["code"] == "connection_not_writable"
    assert lab.cli_json("connections", "reactivate", ann)["status"] == "active"

    shown = lab.cli_json("connections", "schedule", ann, "--interval", "900", "--jitter", "10")
    assert (shown["interval_seconds"], shown["jitter_seconds"], shown["enabled"]) == (900, 10, True)
    assert lab.cli_json("connections", "schedule", ann, "--pause")["paused"] is True
    assert lab.cli_json("connections", "schedule", ann, "--resume")["paused"] is False
    disabled = lab.cli_json("connections", "schedule", ann, "--disable")
    assert disabled["enabled"] is False and disabled["interval_seconds"] == 900
    error = lab.cli_json("connections", "schedule", ben, "--interval", "900", code=1)["error"]
    assert error["code"] == "schedule_not_allowed"

    diagnostics = lab.cli_json("connections", "diagnostics", ann)
    assert diagnostics["health"]["state"] == "healthy"
    runs = lab.cli_json("runs", "list", "--connection", ann)
    assert [r["status"] for r in runs] == ["succeeded"]
    assert lab.cli_json("connections", "show", "cin_nope", code=1)["error"]["code"] == (
        "connection_not_found"
    )

    deleted = lab.cli_json("connections", "delete", ann)
    assert deleted["deleted"] is True and deleted["connection_id"] == ann
    audit = lab.cli_json("audit", "--connection", ann)
    assert [e["operation"] for e in audit][:3] == ["delete", "schedule", "schedule_resume"]
    assert {e["actor_kind"] for e in audit} == {"owner"}


# -- sibling isolation ---------------------------------------------------------------------------


def two_collected(lab: Lab) -> tuple[str, str]:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    lab.ops.run(ann)
    lab.ops.run(ben)
    return ann, ben


def test_revoking_one_connection_leaves_its_sibling_collecting(lab: Lab) -> None:
    ann, ben = two_collected(lab)
    before = lab.counts(ben)
    lab.ops.revoke(ann)
    assert lab.store.connection(ben).status == "active"
    assert lab.counts(ben) == before
    assert [o.status for o in lab.ops.run(ben)] == ["succeeded"]
    results = lab.worker(FakeClock()).tick()
    assert results[ann] == [] and [o.status for o in lab.outcomes(results[ben])] == ["succeeded"]
    assert len(lab.runs(ann)) == 1 and len(lab.runs(ben)) == 3
    assert lab.counts(ann)["records"] > 0  # revoked, not erased


def test_schedules_are_per_connection(lab: Lab) -> None:
    ann, ben = two_collected(lab)
    ben_before = lab.store.schedule(ben)
    lab.ops.put_schedule(ann, enabled=True, interval_seconds=120, jitter_seconds=0)
    lab.ops.pause_schedule(ann, True)
    lab.ops.put_schedule(ann, enabled=False, interval_seconds=300)
    assert lab.store.schedule(ben) == ben_before
    with pytest.raises(InvalidArgument):
        lab.ops.put_schedule(ann, enabled=True, interval_seconds=1)
    assert lab.store.schedule(ben) == ben_before
    lab.ops.pause_schedule(ben, True)
    ann_schedule = lab.store.schedule(ann)
    assert ann_schedule is not None
    assert (ann_schedule.enabled, ann_schedule.paused, ann_schedule.interval_seconds) == (
        False,
        True,
        300,
    )


def test_deleting_one_connection_leaves_its_sibling_whole(lab: Lab) -> None:
    ann, ben = two_collected(lab)
    before = lab.counts(ben)
    ben_credentials = lab.store.credential_metadata(ben)
    lab.ops.delete(ann)
    assert lab.counts(ben) == before
    assert lab.store.credential_metadata(ben) == ben_credentials
    assert [o.status for o in lab.ops.run(ben)] == ["succeeded"]


def test_a_repeated_revoke_is_refused_and_keeps_when_it_was_revoked(lab: Lab) -> None:
    ann = lab.connect("ann")
    first = lab.ops.revoke(ann)
    time.sleep(0.002)  # timestamps have millisecond precision
    with pytest.raises(ConnectionInactive):
        lab.ops.revoke(ann)
    again = lab.store.connection(ann)
    assert again.status == "revoked" and again.revoked_at == first.revoked_at
    assert lab.ops.reactivate(ann).revoked_at is None
    assert lab.ops.revoke(ann).revoked_at != first.revoked_at  # a new revocation, a new time
