"""The web-app flow: PAR with authorization_details, consent, code + PKCE S256, and its
failure modes (PKCE missing or wrong, code replay, redirect mismatch, open redirects)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from ownstream.auth import DATA_ACCESS_TYPE

from .conftest import BASE, REDIRECT, Flows, notes_details, pkce


def test_par_consent_and_code_exchange_issue_a_narrowed_grant(flows: Flows) -> None:
    client = flows.web_client()
    alice, bob, _ = flows.conns("alice", "bob", "carol")
    _, tokens = flows.code_flow(client, **flows.notes_form(["note_id", "title"], [alice, bob]))
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "pdpp:read"
    assert 0 < tokens["expires_in"] <= 3600 and tokens["refresh_token"]
    grant = flows.store.grant(tokens["grant_id"])
    assert grant.client_id == client.client_id and grant.client_display == "Notes App"
    [stream] = grant.streams
    assert stream.fields == ("note_id", "title") and stream.instance_ids == (alice, bob)
    records = flows.read(tokens["access_token"], "/v1/streams/notes/records", limit=100).json()
    assert {r["connection_id"] for r in records["data"]} == {alice, bob}
    assert all(set(r["data"]) == {"note_id", "title"} for r in records["data"])
    [event] = flows.audit("authorization_approve")
    assert event["summary"]["grant_id"] == grant.grant_id


def test_consent_page_shows_the_request_and_the_exact_connections(flows: Flows) -> None:
    client = flows.web_client()
    _, challenge = pkce()
    details = notes_details(client_claims={"commitments": ["Notes stay on your device"]})
    request_uri = flows.par(
        client,
        challenge,
        authorization_details=json.dumps(details),
        client_display=json.dumps({"name": "Notes App", "policy_uri": "https://n.example/p"}),
    ).json()["request_uri"]
    path = flows.consent_path(client, request_uri)
    flows.sign_in()
    page, _ = flows.consent_form(path)
    assert "Notes App" in page and "unverified" in page
    assert "Show your notes in Notes App" in page
    assert "Notes stay on your device" in page and "Notes App says" in page
    for connection_id in flows.conns("alice", "bob", "carol"):
        assert f'value="{connection_id}"' in page
    assert "Alice notebook" in page
    assert 'value="secret"' not in page  # a field the client did not ask for is not offered


def test_the_owner_cannot_widen_a_request(flows: Flows) -> None:
    client = flows.web_client()
    _, challenge = pkce()
    request_uri = flows.par(client, challenge).json()["request_uri"]
    path = flows.consent_path(client, request_uri)
    flows.sign_in()
    response = flows.decide(path, decision="approve", **flows.notes_form(["note_id", "secret"]))
    assert response.status_code == 400 and "beyond what the client asked for" in response.text
    assert flows.store.authorization(path.rsplit("/", 1)[1]).status == "pending"


def test_missing_pkce_is_refused_at_par(flows: Flows) -> None:
    client = flows.web_client()
    response = flows.par(client, "", code_challenge_method="")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "code_challenge" in response.json()["error_description"]
    plain = flows.par(client, "x" * 43, code_challenge_method="plain")
    assert plain.status_code == 400 and "S256" in plain.json()["error_description"]


def test_wrong_or_missing_code_verifier_is_invalid(flows: Flows) -> None:
    client = flows.web_client()
    verifier, challenge = pkce()
    path = flows.consent_path(client, flows.par(client, challenge).json()["request_uri"])
    flows.sign_in()
    code = flows.approve_in_browser(path, **flows.notes_form(["title"]))
    wrong = flows.exchange(client, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    missing = flows.token(client, grant_type="authorization_code", code=code,
                          redirect_uri=REDIRECT)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    # a failed verification does not consume the code: the rightful client still can
    assert flows.exchange(client, code, verifier).status_code == 200


def test_code_replay_is_invalid_and_revokes_what_was_issued(flows: Flows) -> None:
    client = flows.web_client(confidential=True)
    verifier, challenge = pkce()
    path = flows.consent_path(client, flows.par(client, challenge).json()["request_uri"])
    flows.sign_in()
    code = flows.approve_in_browser(path, **flows.notes_form(["title"]))
    first = flows.exchange(client, code, verifier).json()
    assert flows.read(first["access_token"], "/v1/schema").status_code == 200
    replay = flows.exchange(client, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert replay.headers["cache-control"] == "no-store"
    assert flows.read(first["access_token"], "/v1/schema").status_code == 403  # grant_revoked
    refreshed = flows.token(client, grant_type="refresh_token",
                            refresh_token=first["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert flows.store.grant(first["grant_id"]).revoked_at is not None
    assert flows.audit("authorization_code_replay")


def test_redirect_uri_must_match_at_authorization_and_token(flows: Flows) -> None:
    client = flows.web_client()
    verifier, challenge = pkce()
    elsewhere = flows.par(client, challenge, redirect_uri="https://evil.example/cb")
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_request"
    other_path = flows.par(client, challenge, redirect_uri="http://127.0.0.1:4444/other")
    assert other_path.status_code == 400
    # any loopback port is the registered loopback redirect (RFC 8252 §7.3)
    path = flows.consent_path(client, flows.par(client, challenge).json()["request_uri"])
    flows.sign_in()
    code = flows.approve_in_browser(path, **flows.notes_form(["title"]))
    mismatch = flows.token(client, grant_type="authorization_code", code=code,
                           redirect_uri="http://127.0.0.1:5555/callback", code_verifier=verifier)
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_grant"
    assert flows.exchange(client, code, verifier).status_code == 200


def test_errors_never_redirect_to_an_unregistered_uri(flows: Flows) -> None:
    client = flows.web_client()
    _, challenge = pkce()
    response = flows.authorize(client, challenge, redirect_uri="https://evil.example/cb")
    assert response.status_code == 400 and "evil.example" not in response.headers.get(
        "location", ""
    )
    assert response.headers["content-type"].startswith("text/html")
    # with a registered redirect URI, a bad parameter goes back to the client with its state
    bad_scope = flows.authorize(client, challenge, scope="admin", state="s9")
    assert bad_scope.status_code == 302
    query = parse_qs(urlsplit(bad_scope.headers["location"]).query)
    assert query["error"] == ["invalid_scope"] and query["state"] == ["s9"]


def test_denial_redirects_access_denied_and_is_audited(flows: Flows) -> None:
    client = flows.web_client()
    _, challenge = pkce()
    path = flows.consent_path(client, flows.par(client, challenge).json()["request_uri"])
    flows.sign_in()
    response = flows.decide(path, decision="deny")
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query == {"error": ["access_denied"], "state": ["st-1"]}
    assert flows.audit("authorization_deny")[0]["outcome"] == "succeeded"


def test_bad_authorization_details_are_invalid_authorization_details(flows: Flows) -> None:
    client = flows.web_client()
    _, challenge = pkce()
    for details in (
        [{"type": DATA_ACCESS_TYPE, "streams": [{"name": "nope"}]}],
        [{"type": DATA_ACCESS_TYPE, "streams": [{"name": "notes", "fields": ["bogus"]}]}],
        [{"type": "https://other.example/type", "streams": [{"name": "notes"}]}],
        [{"type": DATA_ACCESS_TYPE, "selection_preset": "x"}],
    ):
        response = flows.par(client, challenge, authorization_details=json.dumps(details))
        assert response.status_code == 400, details
        assert response.json()["error"] == "invalid_authorization_details"


def test_mcp_style_plain_request_binds_the_token_to_its_resource(flows: Flows) -> None:
    """No PAR, no details: the owner chooses at consent; the token serves only its resource."""
    client = flows.web_client()
    verifier, challenge = pkce()
    response = flows.authorize(client, challenge, scope="pdpp:read", resource=f"{BASE}/mcp")
    assert response.status_code == 303
    path = urlsplit(response.headers["location"]).path
    flows.sign_in()
    page, _ = flows.consent_form(path)
    assert "Choose what to share" in page
    alice = flows.conns("alice")[0]
    form = flows.notes_form(["title"], [alice], expires_in="86400")
    code = flows.approve_in_browser(path, **form)
    tokens = flows.exchange(client, code, verifier).json()
    grant = flows.store.grant(tokens["grant_id"])
    assert grant.streams[0].instance_ids == (alice,) and grant.expires_at is not None
    rest = flows.read(tokens["access_token"], "/v1/schema")
    assert rest.status_code == 401 and 'error="invalid_token"' in rest.headers["www-authenticate"]
    wrong = flows.authorize(client, challenge, resource="https://elsewhere.example")
    assert wrong.status_code == 302
    assert parse_qs(urlsplit(wrong.headers["location"]).query)["error"] == ["invalid_target"]


def test_a_request_uri_is_bound_to_its_client_and_expires(flows: Flows) -> None:
    client, other = flows.web_client(), flows.web_client()
    _, challenge = pkce()
    request_uri = flows.par(client, challenge).json()["request_uri"]
    stolen = flows.http.get(
        "/oauth/authorize",
        params={"client_id": other.client_id, "request_uri": request_uri},
        follow_redirects=False,
    )
    assert stolen.status_code == 400
    with flows.world.db() as db:
        db.execute("UPDATE oauth_authorizations SET expires_at = '2000-01-01T00:00:00.000Z'")
    late = flows.http.get(
        "/oauth/authorize",
        params={"client_id": client.client_id, "request_uri": request_uri},
        follow_redirects=False,
    )
    assert late.status_code == 400 and "expired" in late.text
