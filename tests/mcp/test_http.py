"""`/mcp` over HTTP: who gets in, how a client finds out how to get in, the SDK's own OAuth
flow from nothing to a tool call, and the endpoint on a real `ownstream serve`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from ownstream.api.app import create_app
from ownstream.auth.console import mint_link
from ownstream.grants.tokens import token_hash
from tests.auth.test_serve import Served

from .conftest import BASE, GRANTED, McpWorld, build_mcp_world, mcp_over_http, run

MCP_METADATA = f"{BASE}/.well-known/oauth-protected-resource/mcp"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture
def http(mcp_world: McpWorld) -> Iterator[TestClient]:
    with TestClient(create_app(mcp_world.world.home, BASE), base_url=BASE) as client:
        yield client


def test_no_token_is_a_challenge_naming_the_mcp_metadata(http: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer osc_not-a-token"}):
        response = http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith(f'Bearer resource_metadata="{MCP_METADATA}"')
        assert ('error="invalid_token"' in challenge) == bool(headers)
        error = response.json()["error"]
        assert error["code"] == "authentication_error"
        assert error["resource_metadata"] == MCP_METADATA


def test_an_owner_token_is_refused(http: TestClient, mcp_world: McpWorld) -> None:
    owner = {"Authorization": f"Bearer {mcp_world.world.owner_token}"}
    response = http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **owner})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope" and "owner token" in error["message"]


def test_a_client_token_initializes(http: TestClient, mcp_world: McpWorld) -> None:
    client = {"Authorization": f"Bearer {mcp_world.token}"}
    response = http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **client})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["serverInfo"]["name"] == "ownstream"
    # stateless: no session to end and no stream for server-sent messages
    for method in ("GET", "DELETE"):
        assert http.request(method, "/mcp", headers=client).status_code == 405


def test_discovery_names_the_mcp_endpoint(http: TestClient) -> None:
    root = http.get("/.well-known/oauth-protected-resource").json()
    assert root["pdpp_core_query_base"] == f"{BASE}/v1"
    assert root["pdpp_agent_discovery"]["mcp"]["resource_metadata"] == MCP_METADATA
    mcp = http.get("/.well-known/oauth-protected-resource/mcp").json()
    assert mcp["resource"] == f"{BASE}/mcp"
    assert mcp["authorization_servers"] == [BASE]
    assert mcp["pdpp_token_kinds_supported"] == ["client"]
    assert mcp["pdpp_core_query_base"] == f"{BASE}/v1"
    assert mcp["pdpp_agent_discovery"]["mcp"] == root["pdpp_agent_discovery"]["mcp"]


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def test_an_assistant_gets_its_token_by_the_sdk_oauth_flow(tmp_path: Path) -> None:
    """From a bare URL: the 401 challenge, the MCP metadata, registration, a plain code + PKCE
    request for `…/mcp`, the owner's consent, the exchange; then the tools read as the grant
    the owner chose, and the token is refused by the REST surface."""
    mcp_world = build_mcp_world(tmp_path)
    world = mcp_world.world
    app = create_app(world.home, BASE)
    alice = world.conns["alice"]
    redirected: dict[str, str] = {}
    storage = MemoryStorage()

    async def owner_consents(authorization_url: str) -> None:
        """The owner's browser: sign in, open the consent page, approve notes of alice."""
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=BASE
        ) as browser:
            signed_in = await browser.get(mint_link(world.store, BASE).removeprefix(BASE))
            assert signed_in.status_code == 303
            consent = await browser.get(authorization_url.removeprefix(BASE))
            assert consent.status_code == 303
            path = urlsplit(consent.headers["location"]).path
            page = await browser.get(path)
            found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert found is not None
            decided = await browser.post(
                path,
                data={
                    "csrf_token": found.group(1),
                    "decision": "approve",
                    "stream": "notes",
                    "field:notes": GRANTED,
                    "connection:notes": [alice],
                },
            )
            assert decided.status_code == 303, decided.text
            redirected.update(
                {k: v[0] for k, v in parse_qs(urlsplit(decided.headers["location"]).query).items()}
            )

    async def callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=redirected["code"], state=redirected.get("state"))

    auth = OAuthClientProvider(
        f"{BASE}/mcp",
        OAuthClientMetadata(
            client_name="Desktop Assistant",
            redirect_uris=["http://127.0.0.1:4444/callback"],  # type: ignore[list-item]
            token_endpoint_auth_method="none",
        ),
        storage,
        redirect_handler=owner_consents,
        callback_handler=callback,
    )

    async def scenario() -> None:
        async with mcp_over_http(app, auth=auth) as client:
            result = await client.call_tool("list_streams", {})
            assert not result.is_error, result.content
            entries = result.structured_content["data"]["data"]
            assert [(e["name"], e["connection_id"]) for e in entries] == [("notes", alice)]

    run(scenario)
    assert storage.tokens is not None
    token = storage.tokens.access_token
    row = world.store.token(token_hash(token))
    assert row is not None
    family = world.store.token_family(row.token_id)
    assert family is not None and family.resource == f"{BASE}/mcp"
    assert world.get("/v1/streams", token).status_code == 401  # not a REST surface token


def test_mcp_on_a_real_server(served: Served) -> None:
    with httpx2.Client(base_url=served.url) as http:
        issued = http.post(
            "/v1/owner/grants",
            headers={"Authorization": f"Bearer {served.owner_token}"},
            json={"client_id": "desktop", "streams": [{"name": "notes"}]},
        )
        assert issued.status_code == 201, issued.text
        token = issued.json()["access_token"]
        owner = http.post(
            "/mcp", json=INITIALIZE,
            headers={**MCP_HEADERS, "Authorization": f"Bearer {served.owner_token}"},
        )
        assert owner.status_code == 403

    async def scenario() -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(f"{served.url}/mcp", http_client=http)) as client,
        ):
            assert len((await client.list_tools()).tools) == 7
            page = await client.call_tool("query_records", {"stream": "notes", "limit": 3})
            assert not page.is_error, page.content
            assert len(page.structured_content["data"]["data"]) == 3

    run(scenario)
