"""The owner API (/v1/owner/...): every connection action over HTTP, with its audit event."""

from __future__ import annotations

import json
import time
from typing import Any

from ownstream.grants.issue import issue_grant
from ownstream.store.base import Binding

from . import FakeClock, Lab

ENTRY_FIELDS = {
    "connection_id",
    "source",
    "acquisition_paths",
    "display_name",
    "display_name_is_placeholder",
    "status",
    "identity_claim",
    "schedule",
    "health",
    "created_at",
    "updated_at",
    "revoked_at",
    "supported_actions",
}


def conn_path(connection_id: str, tail: str = "") -> str:
    return f"/v1/owner/connections/{connection_id}{tail}"


def start_run(lab: Lab, connection_id: str) -> dict[str, Any]:
    body: dict[str, Any] = lab.ok("POST", conn_path(connection_id, "/run"), 202)
    assert body["connection_id"] == connection_id and body["status"] == "running"
    assert body["run_id"] == body["run_ids"][0]
    finished = lab.wait_runs(connection_id, body["run_ids"])[body["run_id"]]
    # the background run audits its end just after its runs end
    deadline = time.monotonic() + 30
    while not any(
        e["operation"] == "run_finished" and e["summary"]["runs"] == body["run_ids"]
        for e in lab.audit(connection_id)
    ):
        assert time.monotonic() < deadline, "the run's end was never audited"
        time.sleep(0.02)
    return finished


def test_list_groups_connections_by_source_and_connector(lab: Lab) -> None:
    ann = lab.connect("ann")
    cy = lab.connect("cy")
    ben = lab.import_archive("ben").receipt.connection_id
    # ann's archive joins ann's Web API connection (the spotify-account rule links the paths)
    assert lab.import_archive("ann").receipt.connection_id == ann

    body = lab.ok("GET", "/v1/owner/connections")
    entries = {e["connection_id"]: e for e in body["data"]}
    assert set(entries) == {ann, ben, cy}
    [group] = body["groups"]
    assert group["source"] == "spotify"
    assert [c["connector_key"] for c in group["connectors"]] == ["spotify", "spotify-export"]
    assert set(entries_order(body, "spotify")) == {ann, cy}
    assert set(entries_order(body, "spotify-export")) == {ann, ben}

    for entry in entries.values():
        assert set(entry) >= ENTRY_FIELDS, entry
        assert entry["source"] == "spotify"
        assert entry["status"] == "active"
        assert entry["display_name_is_placeholder"] is True
        assert entry["identity_claim"] == "spotify_user_id"
        assert entry["created_at"] and entry["updated_at"] and entry["revoked_at"] is None
        assert entry["health"]["state"] in {"healthy", "unknown"}
        assert set(entry["supported_actions"]) >= {
            "rename", "run", "revoke", "reactivate", "schedule", "delete", "diagnostics"
        }
    assert [p["connector_key"] for p in entries[ann]["acquisition_paths"]] == [
        "spotify",
        "spotify-export",
    ]
    assert [p["acquisition_method"] for p in entries[ben]["acquisition_paths"]] == [
        "owner_artifact"
    ]
    # an automatic, background-safe path is enrolled at connect; an archive-only one is not
    assert entries[ann]["schedule"]["origin"] == "refresh_policy"
    assert entries[ann]["schedule"]["enabled"] is True
    assert entries[ben]["schedule"] is None
    # never the credential itself, only what the identity claim is
    for user in ("ann", "cy"):
        assert lab.tokens[user] not in json.dumps(body)


def entries_order(body: dict[str, Any], connector_key: str) -> list[str]:
    for group in body["groups"]:
        for connector in group["connectors"]:
            if connector["connector_key"] == connector_key:
                return list(connector["connection_ids"])
    return []


def test_get_one_connection_and_unknown_is_404(lab: Lab) -> None:
    ann = lab.connect("ann")
    lab.ops.run(ann)
    body = lab.ok("GET", conn_path(ann))
    assert set(body) >= ENTRY_FIELDS
    assert body["connection_id"] == ann
    assert body["health"]["state"] == "healthy"
    streams = {s["stream"]: s["record_count"] for s in body["streams"]}
    assert streams["listening_history"] == 50  # the Web API's recently-played window
    assert {c["connector_key"] for c in body["coverage"]} == {"spotify"}
    assert [r["status"] for r in body["recent_runs"]] == ["succeeded"]
    lab.error("GET", conn_path("cin_nope"), 404, "connection_not_found")


def test_rename_by_patch(lab: Lab) -> None:
    ann = lab.connect("ann")
    before = lab.ok("GET", conn_path(ann))
    body = lab.ok("PATCH", conn_path(ann), json={"display_name": "  Ann's phone "})
    assert body["display_name"] == "Ann's phone"
    assert body["display_name_is_placeholder"] is False
    assert body["updated_at"] >= before["updated_at"]
    assert lab.ok("GET", conn_path(ann))["display_name"] == "Ann's phone"
    lab.error("PATCH", conn_path(ann), 400, "invalid_argument", json={"display_name": " "})
    lab.error("PATCH", conn_path(ann), 400, "invalid_request", content=b"not json")
    lab.error("PATCH", conn_path("cin_nope"), 404, "connection_not_found",
              json={"display_name": "x"})
    # the refused attempts are in the audit trail too; the one that took effect succeeded
    events = [(e["operation"], e["outcome"]) for e in lab.audit(ann)]
    assert events[:2] == [("rename", "refused"), ("rename", "succeeded")]


def test_run_answers_202_and_the_run_finishes(lab: Lab) -> None:
    ann = lab.connect("ann")
    run = start_run(lab, ann)
    assert run["status"] == "succeeded"
    assert run["trigger"] == "manual" and run["connector_key"] == "spotify"
    assert run["counts"]["new"] > 0
    runs = lab.ok("GET", conn_path(ann, "/runs"))["data"]
    assert [r["run_id"] for r in runs] == [run["run_id"]]
    lab.error("GET", conn_path(ann, "/runs"), 400, "invalid_argument", params={"limit": 0})
    event = next(e for e in lab.audit(ann) if e["operation"] == "run")
    assert event["outcome"] == "started" and event["summary"]["runs"] == [run["run_id"]]
    lab.error("POST", conn_path("cin_nope", "/run"), 404, "connection_not_found")
    lab.error("GET", conn_path("cin_nope", "/runs"), 404, "connection_not_found")


def test_run_refused_while_another_run_holds_the_lease(lab: Lab) -> None:
    ann = lab.connect("ann")
    held = lab.store.start_stage(
        Binding(ann),
        connector_key="spotify",
        acquisition_method="provider_api",
        trigger="manual",
        collection_mode="full_refresh",
        holder="elsewhere",
        run_id="run_elsewhere",
    )
    error = lab.error("POST", conn_path(ann, "/run"), 409, "connection_run_active")
    assert error["run_id"] == held.run_id
    assert [r.run_id for r in lab.runs(ann)] == [held.run_id]
    assert lab.audit(ann)[0]["outcome"] == "refused"


def test_connector_level_run_with_several_connections_is_ambiguous(lab: Lab) -> None:
    ann = lab.connect("ann", display_name="Ann")
    ben = lab.connect("ben")
    error = lab.error("POST", "/v1/owner/connectors/spotify/run", 409, "ambiguous_connection")
    assert error["retry_with"] == "connection_id"
    available = {c["connection_id"]: c["display_name"] for c in error["available_connections"]}
    assert available == {ann: "Ann", ben: "Spotify (Web API) · ben"}
    assert lab.runs(ann) == [] and lab.runs(ben) == []  # never an arbitrary pick

    # the CLI answers the same
    cli_error = lab.cli_json("run", "--connector", "spotify", code=1)["error"]
    assert cli_error["code"] == "ambiguous_connection"
    assert cli_error["retry_with"] == "connection_id"
    assert {c["connection_id"] for c in cli_error["available_connections"]} == {ann, ben}

    # with one left to collect from, the connector names it
    lab.ops.revoke(ben)
    body = lab.ok("POST", "/v1/owner/connectors/spotify/run", 202)
    assert body["connection_id"] == ann
    assert lab.wait_runs(ann, body["run_ids"])[body["run_id"]]["status"] == "succeeded"
    assert lab.runs(ben) == []
    lab.error("POST", "/v1/owner/connectors/nope/run", 404, "unknown_connector")
    lab.error("POST", "/v1/owner/connectors/spotify-export/run", 404, "connection_not_found")


def test_revoke_stops_collection_and_keeps_records_then_reactivate(lab: Lab) -> None:
    ann = lab.connect("ann")
    ben = lab.connect("ben")
    start_run(lab, ann)
    grant, client_token = issue_grant(
        lab.store, lab.home.catalog, "app.test", {"streams": [{"name": "listening_history"}]}
    )
    body = lab.ok("POST", conn_path(ann, "/revoke"))
    assert body["status"] == "revoked" and body["revoked_at"]
    assert body["health"]["state"] == "idle"
    lab.error("POST", conn_path(ann, "/run"), 409, "connection_not_writable")
    # a due schedule does not run a revoked connection, its sibling runs
    clock = FakeClock()
    results = lab.worker(clock).tick()
    assert results[ann] == [] and [o.status for o in lab.outcomes(results[ben])] == ["succeeded"]
    assert len(lab.runs(ann)) == 1

    # records stay readable: by the owner and through the grant issued before the revoke
    owner_read = lab.ok(
        "GET", "/v1/streams/listening_history/records", params={"connection_id": ann}
    )
    assert len(owner_read["data"]) == 25
    client_read = lab.http.get(
        "/v1/streams/listening_history/records",
        params={"connection_id": ann, "limit": 100},
        headers={"Authorization": f"Bearer {client_token}"},
    )
    assert client_read.status_code == 200, client_read.text
    assert len(client_read.json()["data"]) == 50
    assert ann in grant.streams[0].instance_ids

    body = lab.ok("POST", conn_path(ann, "/reactivate"))
    assert body["status"] == "active" and body["revoked_at"] is None
    assert start_run(lab, ann)["status"] == "succeeded"
    operations = [(e["operation"], e["outcome"]) for e in lab.audit(ann)]
    assert ("revoke", "succeeded") in operations and ("reactivate", "succeeded") in operations
    assert ("run", "refused") in operations


def test_schedule_put_pause_resume(lab: Lab) -> None:
    ann = lab.connect("ann")
    ben = lab.import_archive("ben").receipt.connection_id
    body = lab.ok(
        "PUT",
        conn_path(ann, "/schedule"),
        json={"enabled": True, "interval_seconds": 7200, "jitter_seconds": 60},
    )
    assert body["object"] == "schedule" and body["connection_id"] == ann
    assert (body["enabled"], body["paused"], body["interval_seconds"], body["jitter_seconds"]) == (
        True,
        False,
        7200,
        60,
    )
    assert body["origin"] == "owner" and body["next_due_at"]
    assert lab.ok("GET", conn_path(ann))["schedule"]["interval_seconds"] == 7200

    assert lab.ok("POST", conn_path(ann, "/schedule/pause"))["paused"] is True
    entry = lab.ok("GET", conn_path(ann))
    assert entry["schedule"]["paused"] is True
    assert lab.ok("POST", conn_path(ann, "/schedule/resume"))["paused"] is False

    disabled = lab.ok(
        "PUT", conn_path(ann, "/schedule"), json={"enabled": False, "interval_seconds": 3600}
    )
    assert disabled["enabled"] is False and disabled["next_due_at"] is None

    lab.error("PUT", conn_path(ann, "/schedule"), 400, "invalid_argument",
              json={"interval_seconds": "hourly"})
    lab.error("PUT", conn_path(ann, "/schedule"), 400, "invalid_argument",
              json={"interval_seconds": 3600, "jitter_seconds": 7200})
    lab.error("PUT", conn_path(ann, "/schedule"), 400, "invalid_argument",
              json={"interval_seconds": 5})
    # an archive-only connection cannot run in the background
    lab.error("PUT", conn_path(ben, "/schedule"), 409, "schedule_not_allowed",
              json={"enabled": True, "interval_seconds": 3600})
    lab.error("POST", conn_path(ben, "/schedule/pause"), 404, "not_found")
    lab.error("PUT", conn_path("cin_nope", "/schedule"), 404, "connection_not_found",
              json={"interval_seconds": 3600})
    operations = [e["operation"] for e in lab.audit(ann)]
    # 2 applied, 2 refused by the operation (a malformed body is refused before it)
    assert operations.count("schedule") == 4
    assert "schedule_pause" in operations and "schedule_resume" in operations


def test_diagnostics(lab: Lab) -> None:
    ann = lab.connect("ann")
    run = start_run(lab, ann)
    body = lab.ok("GET", conn_path(ann, "/diagnostics"))
    assert body["object"] == "diagnostics" and body["connection_id"] == ann
    assert body["health"]["state"] == "healthy"
    assert body["last_run"]["run_id"] == run["run_id"]
    assert body["last_successful_run"]["run_id"] == run["run_id"]
    assert body["known_gaps"] == []
    assert {c["stream"] for c in body["coverage"]} >= {"listening_history", "profile"}
    assert body["schedule"]["origin"] == "refresh_policy"
    assert body["schedulable_paths"] == ["spotify"]
    assert body["active_lease"] is None
    [credential] = body["credentials"]
    assert set(credential) == {
        "connector_key",
        "name",
        "present",
        "fingerprint",
        "created_at",
        "rotated_at",
    }
    assert credential["name"] == "access_token" and credential["present"] is True
    assert credential["fingerprint"].startswith("sha256:")
    lab.error("GET", conn_path("cin_nope", "/diagnostics"), 404, "connection_not_found")


def test_delete_by_http(lab: Lab) -> None:
    ann = lab.connect("ann")
    start_run(lab, ann)
    body = lab.ok("DELETE", conn_path(ann))
    assert body["deleted"] is True and body["connection_id"] == ann
    assert body["records"] == sum(body["records_per_stream"].values()) > 0
    lab.error("GET", conn_path(ann), 404, "connection_not_found")
    lab.error("DELETE", conn_path(ann), 404, "connection_not_found")
    lab.error("DELETE", conn_path("cin_nope"), 404, "connection_not_found")
    assert lab.ok("GET", "/v1/owner/connections")["data"] == []


def test_every_action_appends_one_audit_event_without_secrets_or_records(lab: Lab) -> None:
    ann = lab.connect("ann")
    ben = lab.import_archive("ben").receipt.connection_id
    start_run(lab, ann)
    contents = lab.record_strings(ann) | lab.record_strings(ben)
    assert contents
    actions: list[tuple[str, str, dict[str, Any], str, str]] = [
        ("PATCH", "", {"json": {"display_name": "Ann"}}, "rename", "succeeded"),
        ("PUT", "/schedule", {"json": {"interval_seconds": 600}}, "schedule", "succeeded"),
        ("POST", "/schedule/pause", {}, "schedule_pause", "succeeded"),
        ("POST", "/schedule/resume", {}, "schedule_resume", "succeeded"),
        ("POST", "/revoke", {}, "revoke", "succeeded"),
        ("POST", "/run", {}, "run", "refused"),
        ("POST", "/reactivate", {}, "reactivate", "succeeded"),
        ("DELETE", "", {}, "delete", "succeeded"),
        ("DELETE", "", {}, "delete", "refused"),
    ]
    for method, tail, kwargs, operation, outcome in actions:
        before = lab.audit()
        lab.api(method, conn_path(ann, tail), **kwargs)
        after = lab.audit()
        assert len(after) == len(before) + 1, (operation, after[0])
        event = after[0]
        assert event["actor_kind"] == "owner"
        assert event["connection_id"] == ann
        assert (event["operation"], event["outcome"]) == (operation, outcome)
        assert event["at"] and isinstance(event["summary"], dict)

    events = lab.audit()
    text = json.dumps(events)
    lab.assert_no_secret(text)
    leaked = [s for s in contents if s in text]
    assert not leaked, leaked
    ops = {(e["operation"], e["connection_id"]) for e in events}
    assert ("connect", ann) in ops and ("import", ben) in ops
    connect = next(e for e in events if e["operation"] == "connect")
    assert connect["summary"]["identity_claim"] == "spotify_user_id"
    assert connect["summary"]["credentials"] == ["access_token"]  # names, never values
    deleted = next(e for e in events if e["operation"] == "delete" and e["outcome"] == "succeeded")
    assert deleted["summary"]["records_per_stream"]["listening_history"] == 50
    # filtered by connection; the deleted connection's trail survives
    assert {e["connection_id"] for e in lab.audit(ben)} == {ben}
    assert len(lab.audit(ann)) == len([e for e in events if e["connection_id"] == ann])


def test_owner_routes_need_the_owner_token(lab: Lab) -> None:
    ann = lab.connect("ann")
    lab.ops.run(ann)
    _, client_token = issue_grant(
        lab.store, lab.home.catalog, "app.test", {"streams": [{"name": "profile"}]}
    )
    for method, path in [
        ("GET", "/v1/owner/connections"),
        ("GET", conn_path(ann)),
        ("POST", conn_path(ann, "/run")),
        ("DELETE", conn_path(ann)),
        ("GET", "/v1/owner/audit"),
    ]:
        headers = {"Authorization": f"Bearer {client_token}"}
        response = lab.http.request(method, path, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "insufficient_scope"
        assert lab.http.request(method, path).status_code == 401
    assert lab.ok("GET", conn_path(ann))["status"] == "active"
