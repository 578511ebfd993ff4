"""MCP test fixtures: a notes world with a long-text connection, a client grant that withholds
`secret`, and the SDK's own client over both transports.

- `http`: the app in process (`create_app`, its lifespan running) behind httpx2's ASGI
  transport, so the client speaks streamable HTTP to the real `/mcp` route and gate;
- `stdio`: `python -m ownstream mcp` as a subprocess, on the same data directory, with the
  token in `OWNSTREAM_TOKEN`.

Tests are plain functions that run one async scenario with `anyio.run`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from ownstream.api.app import create_app
from ownstream.reads import cursors
from tests.api.conftest import World, make_notes
from tests.auth.conftest import notes_world
from tests.auth.test_serve import served  # noqa: F401  (a real `ownstream serve`, for test_http)

BASE = "http://127.0.0.1:8765"
GRANTED = ["note_id", "title", "body", "tag", "updated_at"]  # `secret` is withheld
LONG_BODY = "".join(f"line {i:04d} of the long note about harbours.\n" for i in range(160))

Connect = Callable[[str], AbstractAsyncContextManager[Client]]
CURSOR_KINDS = {"next_cursor": ("page", "changes", "search"), "next_changes_since": ("since",)}


@dataclass
class McpWorld:
    world: World
    token: str  # a client token of a grant for `notes` without `secret`
    grant_id: str

    @property
    def home_path(self) -> Path:
        return self.world.home.path

    def rest(self, path: str, token: str | None = None, **params: Any) -> Any:
        response = self.world.get(path, token or self.token, params)
        assert response.status_code == 200, response.text
        return response.json()

    def unsealed(self, value: Any) -> Any:
        """`value` with every cursor opened: sealing draws a fresh nonce each time, so two
        reads of one position differ as text and agree only once unsealed."""
        if isinstance(value, list):
            return [self.unsealed(v) for v in value]
        if not isinstance(value, dict):
            return value
        found = {}
        for key, item in value.items():
            if key in CURSOR_KINDS and isinstance(item, str):
                prefix = item.partition(".")[0]
                kind = next(k for k in CURSOR_KINDS[key] if cursors.PREFIXES[k] == prefix)
                found[key] = cursors.decode(self.world.home.vault, kind, item)
            else:
                found[key] = self.unsealed(item)
        return found

    def grant(self, client_id: str = "app.test") -> tuple[str, str]:
        """A fresh grant on `notes` without `secret` (for tests that revoke it or count its
        reads): its id and token."""
        grant, token = self.world.grant(
            [{"name": "notes", "fields": GRANTED}], client_id=client_id
        )
        return grant.grant_id, token


def build_mcp_world(root: Path) -> McpWorld:
    world = notes_world(root)
    long_notes = make_notes("dora", count=3)
    long_notes[0]["body"] = LONG_BODY
    world.import_notes("dora", long_notes)
    grant, token = world.grant([{"name": "notes", "fields": GRANTED}])
    return McpWorld(world, token, grant.grant_id)


@pytest.fixture(scope="module")
def mcp_world(tmp_path_factory: pytest.TempPathFactory) -> McpWorld:
    """Read-only for the tests: those that revoke revoke a grant of their own."""
    return build_mcp_world(tmp_path_factory.mktemp("mcp-world"))


@asynccontextmanager
async def mcp_over_http(app: FastAPI, **options: Any) -> AsyncIterator[Client]:
    """An SDK client session on the app's `/mcp`, with the app's lifespan running; `options`
    (headers, auth) go to the HTTP client."""
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=BASE, **options
        ) as http,
        Client(streamable_http_client(f"{BASE}/mcp", http_client=http)) as client,
    ):
        yield client


def stdio_parameters(home: Path, token: str, *args: str) -> StdioServerParameters:
    env = {**os.environ, "OWNSTREAM_HOME": str(home), "OWNSTREAM_TOKEN": token}
    env.pop("OWNSTREAM_SECRET_KEY", None)
    return StdioServerParameters(
        command=sys.executable, args=["-m", "ownstream", "mcp", *args], env=env
    )


@asynccontextmanager
async def stdio_client(home: Path, token: str) -> AsyncIterator[Client]:
    async with Client(stdio_parameters(home, token)) as client:
        yield client


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest, mcp_world: McpWorld) -> Connect:
    """Opens an SDK client session as a token, over the transport of the parameter."""
    if request.param == "http":
        return lambda token: mcp_over_http(
            create_app(mcp_world.world.home, BASE), headers={"Authorization": f"Bearer {token}"}
        )
    return lambda token: stdio_client(mcp_world.home_path, token)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    anyio.run(scenario)
