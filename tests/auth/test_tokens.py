"""Tokens: refresh rotation and reuse detection, single-use grants, introspection, revocation."""

from __future__ import annotations

import json
from typing import Any

from .conftest import BASE, Flows, Registered, notes_details, pkce


def _refresh(flows: Flows, client: Registered, refresh_token: str) -> Any:
    return flows.token(client, grant_type="refresh_token", refresh_token=refresh_token)


def test_refresh_rotates_and_reuse_revokes_the_family(flows: Flows) -> None:
    client = flows.web_client()
    _, first = flows.code_flow(client)
    second = _refresh(flows, client, first["refresh_token"])
    assert second.status_code == 200, second.text
    assert second.headers["cache-control"] == "no-store" and second.headers["pragma"] == "no-cache"
    second_body = second.json()
    assert second_body["refresh_token"] != first["refresh_token"]
    assert second_body["grant_id"] == first["grant_id"]
    third = _refresh(flows, client, second_body["refresh_token"]).json()
    assert flows.read(third["access_token"], "/v1/schema").status_code == 200

    reuse = _refresh(flows, client, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    for body in (first, second_body, third):
        assert flows.read(body["access_token"], "/v1/schema").status_code == 403
    assert _refresh(flows, client, third["refresh_token"]).json()["error"] == "invalid_grant"
    introspected = flows.owner("POST", "/oauth/introspect", data={"token": third["access_token"]})
    assert introspected.json() == {"active": False}
    [event] = flows.audit("refresh_token_reuse")
    assert event["outcome"] == "refused" and event["summary"]["grant_id"] == first["grant_id"]


def test_a_refresh_token_belongs_to_its_client(flows: Flows) -> None:
    client, other = flows.web_client(), flows.web_client()
    _, tokens = flows.code_flow(client)
    stolen = _refresh(flows, other, tokens["refresh_token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


def test_single_use_grants_get_no_refresh_token(flows: Flows) -> None:
    client = flows.web_client()
    flows.sign_in()
    verifier, challenge = pkce()
    details = notes_details(access_mode="single_use", expires_in=600)
    request_uri = flows.par(client, challenge, authorization_details=json.dumps(details)).json()[
        "request_uri"
    ]
    code = flows.approve_in_browser(
        flows.consent_path(client, request_uri), **flows.notes_form(["title"], expires_in="600")
    )
    tokens = flows.exchange(client, code, verifier).json()
    assert "refresh_token" not in tokens and tokens["expires_in"] <= 600


def test_owner_revocation_is_seen_by_introspection_and_reads(flows: Flows) -> None:
    client = flows.web_client(confidential=True)
    _, tokens = flows.code_flow(client)
    active = flows.http.post("/oauth/introspect", data={"token": tokens["access_token"]},
                             auth=client.auth).json()
    assert active["active"] is True
    assert active["client_id"] == client.client_id and active["grant_id"] == tokens["grant_id"]
    assert active["scope"] == "pdpp:read" and active["pdpp_token_kind"] == "client"
    assert active["aud"] == BASE and isinstance(active["exp"], int)
    [detail] = active["authorization_details"]
    assert detail["streams"][0]["name"] == "notes"
    refresh = flows.http.post(
        "/oauth/introspect", data={"token": tokens["refresh_token"]}, auth=client.auth
    ).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"

    revoked = flows.owner("POST", f"/v1/owner/grants/{tokens['grant_id']}/revoke")
    assert revoked.status_code == 200
    for token in (tokens["access_token"], tokens["refresh_token"]):
        after = flows.http.post("/oauth/introspect", data={"token": token}, auth=client.auth)
        assert after.json() == {"active": False}
    assert flows.read(tokens["access_token"], "/v1/schema").status_code == 403
    assert _refresh(flows, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_introspection_needs_credentials_and_sees_only_own_tokens(flows: Flows) -> None:
    public = flows.web_client()
    _, tokens = flows.code_flow(public)
    anonymous = flows.http.post("/oauth/introspect", data={"token": tokens["access_token"]})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    other = flows.web_client(confidential=True)
    foreign = flows.http.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, auth=other.auth
    )
    assert foreign.json() == {"active": False}
    owner = flows.owner("POST", "/oauth/introspect", data={"token": flows.world.owner_token})
    assert owner.json()["active"] is True and owner.json()["pdpp_token_kind"] == "owner"


def test_revocation_of_an_access_token_and_of_a_refresh_token(flows: Flows) -> None:
    client = flows.web_client()
    _, tokens = flows.code_flow(client)
    gone = flows.http.post(
        "/oauth/revoke", data={"token": tokens["access_token"], "client_id": client.client_id}
    )
    assert gone.status_code == 200
    assert flows.read(tokens["access_token"], "/v1/schema").status_code == 401
    fresh = _refresh(flows, client, tokens["refresh_token"]).json()
    assert flows.read(fresh["access_token"], "/v1/schema").status_code == 200
    flows.http.post(
        "/oauth/revoke",
        data={"token": fresh["refresh_token"], "token_type_hint": "refresh_token",
              "client_id": client.client_id},
    )
    assert flows.read(fresh["access_token"], "/v1/schema").status_code == 403
    unknown = flows.http.post(
        "/oauth/revoke", data={"token": "osc_nothing", "client_id": client.client_id}
    )
    assert unknown.status_code == 200  # RFC 7009 §2.2: an unknown token is not an error
    events = flows.audit("token_revoke")
    assert [e["summary"]["token_type"] for e in events] == ["refresh_token", "access_token"]


def test_an_expired_access_token_is_rejected(flows: Flows) -> None:
    client = flows.web_client()
    _, tokens = flows.code_flow(client)
    with flows.world.db() as db:
        db.execute(
            "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE token_id IN "
            "(SELECT token_id FROM family_access_tokens)"
        )
    expired = flows.read(tokens["access_token"], "/v1/schema")
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource", '
        'error="invalid_token"'
    )
    assert _refresh(flows, client, tokens["refresh_token"]).status_code == 200
