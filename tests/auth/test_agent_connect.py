"""The agent-connect flow (what `pdpp connect` does) and the RFC 8628 device flow: polling,
pacing, expiry, denial, and the owner's decision through the owner API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import BASE, Flows, Registered

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def start(flows: Flows, client: Registered, **extra: Any) -> dict[str, Any]:
    body = {"resource": BASE, "scope": "pdpp:read", "client_name": "PDPP CLI",
            "client_id": client.client_id, **extra}
    response = flows.http.post("/oauth/agent-connect", json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def poll(flows: Flows, started: dict[str, Any]) -> dict[str, Any]:
    response = flows.http.post(started["poll_url"].removeprefix(BASE),
                               json={"polling_code": started["polling_code"]})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_agent_connect_start_poll_approve_and_read(flows: Flows) -> None:
    cli = flows.register(client_name="PDPP CLI")
    started = start(flows, cli)
    assert set(started) >= {"approval_url", "poll_url", "user_code", "interval_ms",
                            "polling_code", "expires_in"}
    assert started["approval_url"].startswith(f"{BASE}/console/authorizations/")
    assert poll(flows, started) == {"status": "pending", "interval_ms": 2000}
    listed = flows.owner("GET", "/v1/owner/authorizations", params={"status": "pending"})
    [item] = listed.json()["data"]
    assert item["client_name"] == "PDPP CLI" and item["user_code"] == started["user_code"]
    assert item["requested"] is None and item["flow"] == "agent"
    alice = flows.conns("alice")[0]
    approved = flows.owner(
        "POST", f"/v1/owner/authorizations/{item['id']}/approve",
        json={"streams": [{"name": "notes", "fields": ["note_id", "title"],
                           "connection_ids": [alice]}]},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    result = poll(flows, started)
    assert result["status"] == "approved"
    credential = result["credential"]
    assert credential["token_type"] == "Bearer" and credential["scope"] == "pdpp:read"
    assert credential["grant_id"] == approved.json()["grant"]["grant_id"]
    assert credential["expires_at"] and credential["refresh_token"]
    assert flows.read(credential["access_token"], "/v1/schema").status_code == 200
    records = flows.read(credential["access_token"], "/v1/streams/notes/records").json()
    assert {r["connection_id"] for r in records["data"]} == {alice}
    assert poll(flows, started)["status"] == "expired"  # delivered once


def test_polling_too_fast_gets_pending_with_a_longer_interval(flows: Flows) -> None:
    started = start(flows, flows.register())
    intervals = [poll(flows, started)["interval_ms"] for _ in range(4)]
    assert intervals == [2000, 4000, 8000, 16000]
    assert all(poll(flows, started)["status"] == "pending" for _ in range(3))


def test_expired_and_denied_requests(flows: Flows) -> None:
    cli = flows.register()
    late, refused = start(flows, cli), start(flows, cli)
    with flows.world.db() as db:
        db.execute(
            "UPDATE oauth_authorizations SET expires_at = '2000-01-01T00:00:00.000Z' "
            "WHERE authorization_id = ?",
            (late["authorization_id"],),
        )
    assert poll(flows, late) == {"status": "expired"}
    too_late = flows.owner("POST", f"/v1/owner/authorizations/{late['authorization_id']}/deny")
    assert too_late.status_code == 409
    assert too_late.json()["error"]["code"] == "authorization_not_pending"
    denied = flows.owner("POST", f"/v1/owner/authorizations/{refused['authorization_id']}/deny")
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    assert poll(flows, refused) == {"status": "denied"}
    unknown = flows.http.post("/oauth/agent-connect/poll", json={"polling_code": "osp_nope"})
    assert unknown.json() == {"status": "expired"}
    missing = flows.http.post("/oauth/agent-connect/poll", json={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_agent_connect_checks_resource_scope_and_client(flows: Flows) -> None:
    cli = flows.register()
    cases = [
        ({"resource": "http://elsewhere.example"}, "invalid_target"),
        ({"scope": "pdpp:write"}, "invalid_scope"),
        ({"client_id": "cli_unknown"}, "invalid_client"),
    ]
    for extra, error in cases:
        body = {"resource": BASE, "scope": "pdpp:read", "client_id": cli.client_id, **extra}
        response = flows.http.post("/oauth/agent-connect", json=body)
        assert response.status_code in (400, 401) and response.json()["error"] == error
    web = flows.web_client()
    refused = flows.http.post("/oauth/agent-connect", json={"client_id": web.client_id})
    assert refused.json()["error"] == "unauthorized_client"


def test_owner_api_approval_narrows_and_never_widens(flows: Flows) -> None:
    started = start(flows, flows.register())
    path = f"/v1/owner/authorizations/{started['authorization_id']}/approve"
    no_choice = flows.owner("POST", path)
    assert no_choice.status_code == 400 and no_choice.json()["error"]["param"] == "streams"
    stale = flows.owner("POST", path, json={"streams": [{"name": "notes",
                                                         "connection_ids": ["cin_gone"]}]})
    assert stale.status_code == 400
    events = flows.audit("authorization_approve")
    assert [e["outcome"] for e in events] == ["refused", "refused"]


def test_cli_lists_approves_and_denies(flows: Flows, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ownstream.cli.main import app

    runner = CliRunner()
    home = str(flows.world.home.path)
    cli = flows.register(client_name="Agent Smith")
    first, second = start(flows, cli), start(flows, cli)
    listed = runner.invoke(app, ["--home", home, "authorizations", "list", "--json"])
    assert {a["id"] for a in json.loads(listed.stdout)} == {
        first["authorization_id"], second["authorization_id"]
    }
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"streams": [{"name": "notes", "fields": ["title"]}],
                                  "expires_in": 3600}))
    approved = runner.invoke(app, ["--home", home, "authorizations", "approve",
                                   first["authorization_id"], "--request", str(choice), "--json"])
    assert approved.exit_code == 0, approved.stdout
    assert json.loads(approved.stdout)["grant"]["streams"][0]["fields"] == ["title"]
    denied = runner.invoke(app, ["--home", home, "authorizations", "deny",
                                 second["authorization_id"], "--json"])
    assert json.loads(denied.stdout)["status"] == "denied"
    again = runner.invoke(app, ["--home", home, "authorizations", "deny",
                                second["authorization_id"], "--json"])
    assert again.exit_code == 1
    assert json.loads(again.stdout)["error"]["code"] == "authorization_not_pending"
    assert poll(flows, first)["status"] == "approved"


# -- RFC 8628 ----------------------------------------------------------------------------------
def _device_token(flows: Flows, client: Registered, device_code: str) -> Any:
    return flows.token(client, grant_type=DEVICE, device_code=device_code)


def test_device_flow_pending_slow_down_approval_and_single_delivery(flows: Flows) -> None:
    client = flows.register(client_name="TV app")
    started = flows.http.post("/oauth/device_authorization", data={"client_id": client.client_id})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["verification_uri"] == f"{BASE}/oauth/device" and body["interval"] == 5
    first = _device_token(flows, client, body["device_code"])
    assert first.status_code == 400 and first.json()["error"] == "authorization_pending"
    second = _device_token(flows, client, body["device_code"])
    assert second.json()["error"] == "slow_down"

    flows.sign_in()
    entry = flows.http.get("/oauth/device", params={"user_code": body["user_code"].lower()},
                           follow_redirects=False)
    assert entry.status_code == 303
    path = entry.headers["location"]
    response = flows.decide(path, decision="approve", **flows.notes_form(["title"]))
    assert response.status_code == 200 and "Access approved" in response.text
    issued = _device_token(flows, client, body["device_code"])
    assert issued.status_code == 200 and issued.json()["token_type"] == "Bearer"
    again = _device_token(flows, client, body["device_code"])
    assert again.json()["error"] == "invalid_grant"


def test_device_flow_denied_and_expired(flows: Flows) -> None:
    client = flows.register()
    refused = flows.http.post("/oauth/device_authorization",
                              data={"client_id": client.client_id}).json()
    late = flows.http.post("/oauth/device_authorization",
                           data={"client_id": client.client_id}).json()
    flows.owner("POST", f"/v1/owner/authorizations/{_id_for(flows, refused['user_code'])}/deny")
    assert _device_token(flows, client, refused["device_code"]).json()["error"] == "access_denied"
    with flows.world.db() as db:
        db.execute("UPDATE oauth_authorizations SET expires_at = '2000-01-01T00:00:00.000Z' "
                   "WHERE status = 'pending'")
    assert _device_token(flows, client, late["device_code"]).json()["error"] == "expired_token"


def _id_for(flows: Flows, user_code: str) -> str:
    listed = flows.owner("GET", "/v1/owner/authorizations").json()["data"]
    found: str = next(a["id"] for a in listed if a["user_code"] == user_code)
    return found
