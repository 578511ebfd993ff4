"""The console over HTTP: actions leave the audit events the owner API leaves, delete needs its
typed confirmation, uploads stream into a private file (console form and owner API alike),
live progress comes from this process or from the database, records page with cursors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import pytest

from ownstream.owner import ConnectionOperations

from .conftest import Console, notes_file


def audit_trail(console: Console, connection_id: str) -> list[tuple[str, str, str]]:
    events = console.world.store.audit_events(connection_id=connection_id, limit=100)
    return [(e.actor_kind, e.operation, e.outcome) for e in reversed(events)]


def test_console_actions_leave_the_audit_events_the_owner_api_leaves(
    owner_console: Console,
) -> None:
    alice, bob = (owner_console.world.conns[n] for n in ("alice", "bob"))
    api_calls = [
        ("PATCH", f"/v1/owner/connections/{bob}", {"display_name": "Bob's notes"}),
        ("PATCH", f"/v1/owner/connections/{bob}", {"display_name": " "}),
        ("POST", f"/v1/owner/connections/{bob}/revoke", None),
        ("POST", f"/v1/owner/connections/{bob}/reactivate", None),
        ("POST", f"/v1/owner/connections/{bob}/schedule/pause", None),
    ]
    for method, path, body in api_calls:
        owner_console.owner(method, path, json=body)
    console_posts = [
        (f"/console/connections/{alice}/rename", {"display_name": "Alice's notes"}),
        (f"/console/connections/{alice}/rename", {"display_name": " "}),
        (f"/console/connections/{alice}/revoke", {}),
        (f"/console/connections/{alice}/reactivate", {}),
        (f"/console/connections/{alice}/schedule/pause", {}),
    ]
    statuses = [owner_console.post(path, **form).status_code for path, form in console_posts]
    assert statuses == [303, 400, 303, 303, 404]
    assert audit_trail(owner_console, alice)[-5:] == audit_trail(owner_console, bob)[-5:]
    assert [op for _, op, _ in audit_trail(owner_console, alice)[-5:]] == [
        "rename", "rename", "revoke", "reactivate", "schedule_pause"]
    assert owner_console.world.store.connection(alice).display_name == "Alice's notes"


def test_delete_shows_what_goes_and_what_stays_and_needs_the_typed_name(
    owner_console: Console,
) -> None:
    world = owner_console.world
    alice = world.conns["alice"]
    grant, _ = world.grant([{"name": "notes", "connection_ids": [alice]}])
    page = owner_console.http.get(f"/console/connections/{alice}/delete")
    assert page.status_code == 200
    assert "<strong>12</strong> records" in page.text and "notes: 12" in page.text
    assert grant.grant_id in page.text and "audit trail" in page.text
    path = f"/console/connections/{alice}/delete"
    for typed in (None, "alice", "Alice notebook x"):
        refused = owner_console.post(path, **({"confirm": typed} if typed else {}))
        assert refused.status_code == 400 and "Type the connection" in refused.text
    assert world.store.connection(alice).display_name == "Alice notebook"
    deleted = owner_console.post(path, confirm="Alice notebook")
    assert deleted.status_code == 200 and "12 records" in deleted.text
    assert alice not in {c.connection_id for c in world.store.connections()}
    assert audit_trail(owner_console, alice)[-1] == ("owner", "delete", "succeeded")


def test_a_post_without_the_csrf_token_is_refused(owner_console: Console) -> None:
    alice = owner_console.world.conns["alice"]
    forged = owner_console.http.post(f"/console/connections/{alice}/rename",
                                     data={"display_name": "forged"})
    assert forged.status_code == 400 and "form expired" in forged.text
    assert owner_console.world.store.connection(alice).display_name == "Alice notebook"


def upload_form(console: Console, path: Path, *, csrf: bool = True) -> httpx2.Response:
    data = {"connector": "notes-export"}
    if csrf:
        data = {"csrf_token": console.csrf("/console/import"), **data}
    response: httpx2.Response = console.http.post(
        "/console/import", data=data,
        files={"archive": (path.name, path.read_bytes(), "application/json")},
    )
    return response


def test_an_uploaded_archive_joins_by_rule_or_becomes_its_own_connection(
    owner_console: Console, tmp_path: Path
) -> None:
    world = owner_console.world
    joined = upload_form(owner_console, notes_file(tmp_path, "alice"))
    assert joined.status_code == 201, joined.text
    assert "Joined Alice notebook" in joined.text and "notes-account" in joined.text
    assert "notes_account=alice" in joined.text
    fresh = upload_form(owner_console, notes_file(tmp_path, "dora"))
    assert fresh.status_code == 201 and "A new connection" in fresh.text
    again = upload_form(owner_console, notes_file(tmp_path, "dora", name="dora-again.json"))
    assert again.status_code == 200 and "Already imported" in again.text
    assert not list((world.home.path / "uploads").iterdir())  # every upload's file is gone
    [event] = world.store.audit_events(operation="import", limit=1)
    assert event.actor_kind == "owner" and event.summary["status"] == "duplicate"


def test_a_forged_upload_writes_nothing(owner_console: Console, tmp_path: Path) -> None:
    refused = upload_form(owner_console, notes_file(tmp_path, "alice"), csrf=False)
    assert refused.status_code == 400 and "form expired" in refused.text
    uploads = owner_console.world.home.path / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def test_the_owner_api_imports_a_streamed_body(
    owner_console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = owner_console.world
    body = notes_file(tmp_path, "bob").read_bytes()
    created = owner_console.owner(
        "POST", "/v1/owner/imports?connector=notes-export&filename=bob.json", content=iter([body])
    )
    assert created.status_code == 201, created.text
    receipt = created.json()
    assert receipt["connection_id"] == world.conns["bob"]
    assert receipt["connection"] == {
        "action": "joined", "reason": "identity rule notes-account proves the same account",
        "rule_id": "notes-account", "evidence": {"claim": "notes_account", "value": "bob"}}
    assert receipt["artifact"]["name"] == "bob.json" and receipt["counts"]["new"] == 3
    duplicate = owner_console.owner("POST", "/v1/owner/imports?connector=notes-export",
                                    content=body)
    assert duplicate.status_code == 200 and duplicate.json()["status"] == "duplicate"
    uploads = world.home.path / "uploads"
    assert uploads.stat().st_mode & 0o777 == 0o700 and not list(uploads.iterdir())
    monkeypatch.setenv("OWNSTREAM_MAX_UPLOAD_BYTES", "100")
    declared = owner_console.owner("POST", "/v1/owner/imports?connector=notes-export",
                                   content=body)
    streamed = owner_console.owner("POST", "/v1/owner/imports?connector=notes-export",
                                   content=iter([body[:60], body[60:]]))
    for too_large in (declared, streamed):
        assert too_large.status_code == 413
        assert too_large.json()["error"]["code"] == "upload_too_large"
    assert not list(uploads.iterdir())
    unknown = owner_console.owner("POST", "/v1/owner/imports?connector=nope", content=body)
    assert unknown.status_code == 404
    assert owner_console.http.post("/v1/owner/imports?connector=notes-export",
                                   content=body).status_code == 401


def events(console: Console, path: str) -> list[tuple[str, dict[str, object]]]:
    with console.http.stream("GET", path) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    found = re.findall(r"event: (\w+)\ndata: (.*)\n\n", text)
    return [(kind, json.loads(data)) for kind, data in found]


def test_live_progress_of_a_run_from_this_process(owner_console: Console) -> None:
    ticker = owner_console.world.conns["ticker"]
    started = owner_console.post(f"/console/connections/{ticker}/run")
    assert started.status_code == 303
    page = started.headers["location"]
    stream = events(owner_console, f"{page}/events")
    kinds = [kind for kind, _ in stream]
    assert kinds[-1] == "finished" and "progress" in kinds
    assert stream[-1][1]["status"] == "succeeded"
    assert any(data.get("message") == "step 5 of 5" for kind, data in stream if kind == "progress")
    finished = owner_console.http.get(page)
    assert "Finished: <strong>succeeded</strong>" in finished.text and "5 new" in finished.text


def test_a_run_of_another_process_is_followed_in_the_database(owner_console: Console) -> None:
    """No progress hub knows a run the worker (or another serve process) started."""
    world = owner_console.world
    ticker = world.conns["ticker"]
    [outcome] = ConnectionOperations(world.home).run(ticker)  # not through this app's hub
    assert world.home.progress.snapshot(str(outcome.run_id)) is None
    page = f"/console/connections/{ticker}/runs/{outcome.run_id}"
    [(kind, data)] = events(owner_console, f"{page}/events")
    assert kind == "finished" and data["status"] == "succeeded"
    assert data["run_id"] == outcome.run_id


def test_records_page_with_cursors_and_search_with_provenance(
    owner_console: Console, tmp_path: Path
) -> None:
    upload_form(owner_console, notes_file(tmp_path, "alice"))  # a second path for alice
    first = owner_console.http.get("/console/records", params={"stream": "notes"})
    assert first.status_code == 200 and first.text.count('<tr>\n    <td>') == 25
    assert "notes-export</code> (owner artifact)" in first.text
    next_url = re.search(r'<a href="([^"]+)" rel="next"', first.text)
    assert next_url is not None
    second = owner_console.http.get(next_url.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and "First page" in second.text
    found = owner_console.http.get("/console/records", params={"stream": "notes", "q": "imported"})
    assert found.text.count("imported alice") == 3
    forged = owner_console.http.get("/console/records", params={"stream": "notes",
                                                                "cursor": "pg1.nope"})
    assert forged.status_code == 400 and "cursor" in forged.text
