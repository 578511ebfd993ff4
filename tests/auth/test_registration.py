"""Client registration (RFC 7591) and the owner's view of clients: list, show, delete."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from ownstream.cli.main import app

from .conftest import Flows


def test_the_pdpp_cli_registration_is_a_public_device_client(flows: Flows) -> None:
    response = flows.http.post(
        "/oauth/register", json={"client_name": "PDPP CLI", "token_endpoint_auth_method": "none"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["client_id"].startswith("cli_") and "client_secret" not in body
    assert body["grant_types"] == ["urn:ietf:params:oauth:grant-type:device_code",
                                   "refresh_token"]
    assert body["client_name"] == "PDPP CLI"
    [event] = flows.audit("client_register")
    assert event["summary"]["client_id"] == body["client_id"] and event["actor_kind"] == "client"


def test_confidential_clients_get_a_secret_stored_only_hashed(flows: Flows) -> None:
    response = flows.http.post(
        "/oauth/register",
        json={"client_name": "Server App", "redirect_uris": ["https://app.example/cb"]},
    )
    body = response.json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["client_secret"] and body["client_secret_expires_at"] == 0
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    with flows.world.db() as db:
        dump = "\n".join(str(row) for row in db.execute("SELECT * FROM oauth_clients"))
    assert body["client_secret"] not in dump


def test_registration_refuses_what_it_cannot_honour(flows: Flows) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_client_metadata"),
        ({"grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"},
         "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    ]
    for metadata, error in cases:
        response = flows.http.post("/oauth/register", json={"client_name": "x", **metadata})
        assert response.status_code == 400, metadata
        assert response.json()["error"] == error, metadata


def test_owner_lists_shows_and_deletes_clients_and_deleting_revokes(flows: Flows) -> None:
    client = flows.web_client()
    _, tokens = flows.code_flow(client)
    listed = flows.owner("GET", "/v1/owner/clients").json()["data"]
    [view] = [c for c in listed if c["client_id"] == client.client_id]
    assert view["registration"] == "self_registered_unverified"
    assert view["active_grants"] == [tokens["grant_id"]]
    shown = flows.owner("GET", f"/v1/owner/clients/{client.client_id}").json()
    assert shown["redirect_uris"] == ["http://127.0.0.1/callback"]
    deleted = flows.owner("DELETE", f"/v1/owner/clients/{client.client_id}")
    assert deleted.json() == {"deleted": True, "client_id": client.client_id,
                              "revoked_grants": [tokens["grant_id"]]}
    assert flows.read(tokens["access_token"], "/v1/schema").status_code == 403
    refresh = flows.token(client, grant_type="refresh_token",
                          refresh_token=tokens["refresh_token"])
    assert refresh.json()["error"] == "invalid_client"
    assert flows.owner("GET", f"/v1/owner/clients/{client.client_id}").status_code == 404
    assert flows.audit("client_delete")[0]["summary"]["revoked_grants"] == [tokens["grant_id"]]


def test_clients_need_the_owner_token(flows: Flows) -> None:
    client = flows.web_client()
    _, tokens = flows.code_flow(client)
    as_client = flows.read(tokens["access_token"], "/v1/owner/clients")
    assert as_client.status_code == 403


def test_cli_lists_shows_and_deletes_clients(flows: Flows) -> None:
    runner = CliRunner()
    home = str(flows.world.home.path)
    client = flows.register(client_name="Script")
    listed = json.loads(runner.invoke(app, ["--home", home, "clients", "list", "--json"]).stdout)
    assert [c["client_id"] for c in listed] == [client.client_id]
    shown = runner.invoke(app, ["--home", home, "clients", "show", client.client_id, "--json"])
    assert json.loads(shown.stdout)["client_name"] == "Script"
    deleted = runner.invoke(app, ["--home", home, "clients", "delete", client.client_id,
                                  "--json"])
    assert json.loads(deleted.stdout)["deleted"] is True
    missing = runner.invoke(app, ["--home", home, "clients", "show", client.client_id, "--json"])
    assert missing.exit_code == 1 and json.loads(missing.stdout)["error"]["code"] == "not_found"
