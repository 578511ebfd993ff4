"""The owner's writes over HTTP: deleting a record (a tombstone with provenance `owner`), and
the connection-scoped push of NDJSON records with its sync state."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from ownstream.owner import ConnectionOperations
from ownstream.runtime.protocol import MAX_LINE_BYTES
from tests.api.conftest import assert_error

from .conftest import TaskWorld

NDJSON = {"Content-Type": "application/x-ndjson"}


def push(
    world: TaskWorld, connection_id: str, lines: list[Any], stream: str = "tasks",
    token: str | None = None, headers: dict[str, str] = NDJSON,
) -> httpx2.Response:
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    return world.request(
        "POST", f"/v1/owner/connections/{connection_id}/streams/{stream}/records", token,
        content=body, headers=headers,
    )


def live(world: TaskWorld, connection_id: str, stream: str = "tasks") -> dict[str, Any]:
    found = world.listed(stream, {"connection_id": connection_id})
    return {r["id"]: r["data"] for r in found}


# -- delete ---------------------------------------------------------------------------------


def test_the_owner_deletes_a_record_as_a_tombstone_with_provenance(task_world: TaskWorld) -> None:
    w = task_world
    ana = w.conns["ana"]
    token = w.grant([{"name": "tasks", "connection_ids": [ana]}])
    before = w.get("/v1/streams/tasks/records", token, {"changes_since": "beginning",
                                                          "limit": 100}).json()
    deleted = w.request("DELETE", "/v1/streams/tasks/records/t2", params={"connection_id": ana})
    assert deleted.status_code == 204 and deleted.content == b""
    assert "t2" not in live(w, ana) and "t2" in live(w, w.conns["ben"])  # only that connection
    changes = w.get("/v1/streams/tasks/records", token,
                    {"changes_since": before["next_changes_since"]}).json()
    [tombstone] = changes["data"]
    assert (tombstone["id"], tombstone["deleted"]) == ("t2", True)
    evidence = w.get(f"/v1/owner/connections/{ana}/provenance/tasks/t2").json()["evidence"]
    assert [(e["connector_key"], e["acquisition_method"]) for e in evidence] == [
        ("tasks-export", "owner_artifact"), ("owner", "owner_edit")
    ]
    [event] = w.home.store.audit_events(operation="record_delete")
    assert (event.connection_id, event.outcome, event.summary["stream"]) == (
        ana, "succeeded", "tasks"
    )
    assert "t2" not in json.dumps(event.summary)  # the audit keeps no record contents
    assert_error(w.request("DELETE", "/v1/streams/tasks/records/t2",
                           params={"connection_id": ana}), 404, "not_found")


def test_a_key_held_by_several_connections_needs_one_named(task_world: TaskWorld) -> None:
    w = task_world
    error = assert_error(w.request("DELETE", "/v1/streams/tasks/records/t1"), 409,
                         "ambiguous_connection")
    assert {c["connection_id"] for c in error["available_connections"]} == set(w.conns.values())
    only_ana = w.request("DELETE", "/v1/streams/tasks/records/t9")  # ben has no t9
    assert only_ana.status_code == 204
    assert_error(w.request("DELETE", "/v1/streams/tasks/records/t1",
                           params={"connection_id": "cin_nope"}), 404, "connection_not_found")
    assert_error(w.request("DELETE", "/v1/streams/nothing/records/t1"), 404, "unknown_stream")


def test_a_client_cannot_delete(task_world: TaskWorld) -> None:
    token = task_world.grant([{"name": "tasks"}])
    response = task_world.request("DELETE", "/v1/streams/tasks/records/t9", token)
    assert_error(response, 403, "insufficient_scope")
    assert "t9" in live(task_world, task_world.conns["ana"])


# -- push -----------------------------------------------------------------------------------


def test_a_push_counts_what_it_accepted_and_why_it_rejected_the_rest(
    task_world: TaskWorld,
) -> None:
    w = task_world
    ana, ben = w.conns["ana"], w.conns["ben"]
    lines: list[Any] = [
        {"key": "t1", "data": {"task_id": "t1", "title": "renamed", "points": 4},
         "emitted_at": "2025-03-01T10:00:00+01:00"},
        {"key": "p1", "data": {"task_id": "p1", "title": "pushed", "done": False}},
        b"",  # blank lines are skipped
        b"not json",
        [1, 2],
        {"key": "p2"},
        {"key": "p3", "data": {"task_id": "p3"}, "op": "delete"},
        {"key": "p4", "data": {"task_id": "p4"}, "emitted_at": "yesterday"},
        {"key": "other", "data": {"task_id": "p5"}},
        {"key": "p6", "data": {"task_id": "p6", "points": "many"}},
        b"x" * (MAX_LINE_BYTES + 10),
        {"key": "p7", "data": {"task_id": "p7", "title": "after a huge line"}},
    ]
    response = push(w, ana, lines)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["stream"], body["connection_id"]) == ("push_receipt", "tasks", ana)
    assert (body["records_accepted"], body["records_rejected"]) == (3, 8)
    reasons = {r["reason"]: r["count"] for r in body["rejections"]}
    assert reasons == {"invalid_line": 6, "key_mismatch": 1, "schema_mismatch": 1}
    line_keys = [e["key"] for r in body["rejections"] if r["reason"] == "invalid_line"
                 for e in r["examples"]]
    assert line_keys == ["line 4", "line 5", "line 6"]  # the first few, by line number
    assert (body["counts"]["new"], body["counts"]["updated"]) == (2, 1)
    records = live(w, ana)
    assert records["t1"]["title"] == "renamed" and records["p1"]["title"] == "pushed"
    assert records["p7"]["title"] == "after a huge line" and "p6" not in records
    assert "p1" not in live(w, ben) and live(w, ben)["t1"]["title"] == "ben task 1"
    evidence = w.get(f"/v1/owner/connections/{ana}/provenance/tasks/p1").json()["evidence"]
    assert [(e["connector_key"], e["acquisition_method"]) for e in evidence] == [
        ("owner-push", "owner_push")
    ]
    [run] = [r for r in w.home.store.runs(ana) if r.run_id == body["run_id"]]
    assert (run.connector_key, run.acquisition_method, run.trigger) == (
        "owner-push", "owner_push", "owner"
    )
    assert run.counts == body["counts"]
    single = w.get("/v1/streams/tasks/records/t1", params={"connection_id": ana}).json()
    assert single["emitted_at"] != "2025-03-01T09:00:00.000Z"  # first collected: kept
    pushed = w.get("/v1/streams/tasks/records/p1", params={"connection_id": ana}).json()
    assert pushed["data"] == {"task_id": "p1", "title": "pushed", "done": False}
    [event] = w.home.store.audit_events(operation="push")
    assert event.summary["counts"]["accepted"] == 3 and event.connection_id == ana
    health = w.get(f"/v1/owner/connections/{ana}").json()["health"]
    assert health["state"] == "healthy"  # a push is not a collection path


def test_a_push_reaches_only_an_existing_connection_that_holds_the_stream(
    task_world: TaskWorld,
) -> None:
    w = task_world
    ana, ben = w.conns["ana"], w.conns["ben"]
    line = [{"key": "x1", "data": {"task_id": "x1"}}]
    assert_error(push(w, "cin_nope", line), 404, "connection_not_found")
    assert_error(push(w, ana, line, stream="nothing"), 404, "unknown_stream")
    assert_error(push(w, ana, line, stream="messages"), 400, "invalid_request")  # no such path
    assert_error(push(w, ana, line, headers={"Content-Type": "application/json"}), 400,
                 "invalid_request")
    token = w.grant([{"name": "tasks"}])
    assert_error(push(w, ana, line, token=token), 403, "insufficient_scope")
    ConnectionOperations(w.home).revoke(ben)
    assert_error(push(w, ben, line), 409, "connection_not_writable")
    ConnectionOperations(w.home).delete(ana)
    assert_error(push(w, ana, line), 404, "connection_not_found")
    assert w.home.store.connection_state(ana, "owner-push") == {}
    rows = w.home.store.runs(ana)
    assert rows == []  # nothing was staged for a connection that is gone


def test_the_push_state_round_trips(task_world: TaskWorld) -> None:
    w = task_world
    ana = w.conns["ana"]
    url = f"/v1/owner/connections/{ana}/state"
    empty = w.get(url).json()
    assert empty == {"object": "connection_state", "connection_id": ana,
                     "connector_key": "owner-push", "state": {}}
    saved = w.request("PUT", url, json={"state": {"tasks": {"after": "p9", "n": 3}}}).json()
    assert saved["state"] == {"tasks": {"after": "p9", "n": 3}}
    assert w.get(url).json()["state"] == {"tasks": {"after": "p9", "n": 3}}
    w.request("PUT", url, json={"state": {"steps": [1, 2]}})
    assert w.get(url).json()["state"] == {"steps": [1, 2]}  # replaced, not merged
    assert_error(w.request("PUT", url, json={"state": {"nothing": 1}}), 404, "unknown_stream")
    assert_error(w.request("PUT", url, json={"state": [1]}), 400, "invalid_argument")
    assert_error(w.request("PUT", url, json={}), 400, "invalid_argument")
    big = {"tasks": "x" * (70 * 1024)}
    assert_error(w.request("PUT", url, json={"state": big}), 400, "invalid_argument")
    assert_error(w.get("/v1/owner/connections/cin_nope/state"), 404, "connection_not_found")
    token = w.grant([{"name": "tasks"}])
    assert_error(w.get(url, token), 403, "insufficient_scope")
    assert [e.outcome for e in w.home.store.audit_events(operation="push_state")] == [
        "refused", "refused", "refused", "succeeded", "succeeded"
    ]  # newest first: each refusal of a body it read is audited too
