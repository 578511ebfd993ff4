"""Discovery: RFC 9728 protected-resource and RFC 8414 authorization-server metadata, and the
401 challenge that points a client at them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.auth.discovery import normalize_public_url, url_for_bind
from ownstream.errors import InvalidArgument
from ownstream.reads.records import SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT

from .conftest import BASE, Flows


def test_protected_resource_metadata(flows: Flows) -> None:
    body = flows.http.get("/.well-known/oauth-protected-resource").json()
    assert body["resource"] == BASE and body["authorization_servers"] == [BASE]
    assert body["bearer_methods_supported"] == ["header"]
    assert body["scopes_supported"] == ["pdpp:read"]
    assert body["pdpp_core_query_base"] == f"{BASE}/v1"
    assert body["pdpp_token_kinds_supported"] == ["owner", "client"]
    assert body["pdpp_agent_discovery"] == {
        "agent_connect_endpoint": f"{BASE}/oauth/agent-connect",
        "cli": {"no_owner_token": True},
        "mcp": {
            "endpoint": f"{BASE}/mcp",
            "transport": "streamable_http",
            "resource_metadata": f"{BASE}/.well-known/oauth-protected-resource/mcp",
            "no_owner_token": True,
            "setup_intent": "grant_scoped_read",
        },
    }
    search = body["capabilities"]["lexical_retrieval"]
    assert search["supported"] is True
    # what it advertises is what /v1/search applies
    assert (search["default_limit"], search["max_limit"]) == (
        SEARCH_DEFAULT_LIMIT,
        SEARCH_MAX_LIMIT,
    )


def test_authorization_server_metadata(flows: Flows) -> None:
    body = flows.http.get("/.well-known/oauth-authorization-server").json()
    assert body["issuer"] == BASE
    for key, path in (
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("registration_endpoint", "/oauth/register"),
        ("pushed_authorization_request_endpoint", "/oauth/par"),
        ("device_authorization_endpoint", "/oauth/device_authorization"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("agent_connect_endpoint", "/oauth/agent-connect"),
    ):
        assert body[key] == BASE + path
        assert flows.http.request("POST" if key != "authorization_endpoint" else "GET",
                                  path).status_code != 404, key
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["authorization_details_types_supported"] == ["https://pdpp.dev/data-access"]
    assert body["pdpp_registration_modes_supported"] == ["dynamic"]
    assert set(body["grant_types_supported"]) == {
        "authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"
    }


def test_every_resource_server_401_names_the_metadata(flows: Flows) -> None:
    for headers in ({}, {"Authorization": "Bearer osc_unknown"}):
        response = flows.http.get("/v1/streams", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith(
            f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource"'
        )


def test_public_url_normalization(tmp_path: object) -> None:
    assert normalize_public_url("HTTP://LocalHost:80/") == "http://localhost"
    assert normalize_public_url("https://example.org:8443/owner/") == (
        "https://example.org:8443/owner"
    )
    assert url_for_bind("0.0.0.0", 9000) == "http://127.0.0.1:9000"
    assert url_for_bind("::1", 9000) == "http://[::1]:9000"
    for bad in ("ftp://x", "https://u:p@x", "https://x/?q=1", "not a url"):
        with pytest.raises(InvalidArgument):
            normalize_public_url(bad)


def test_without_a_public_url_the_request_url_is_the_resource(flows: Flows) -> None:
    with TestClient(create_app(flows.world.home), base_url="http://localhost:9999") as http:
        body = http.get("/.well-known/oauth-protected-resource").json()
    assert body["resource"] == "http://localhost:9999"
