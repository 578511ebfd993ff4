"""`pdpp connect` against a real `ownstream serve` on a loopback port, step by step as the PDPP
CLI's connect flow does it: discover, register, start, owner approves, poll, verify, read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import free_port

from .conftest import notes_world


@dataclass
class Served:
    url: str
    banner: dict[str, Any]
    owner_token: str
    connections: dict[str, str]


def _banner(process: subprocess.Popen[str]) -> dict[str, Any]:
    """`serve --json` prints one JSON object before it starts serving."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.rstrip() == "}":
            break
    found: dict[str, Any] = json.loads("".join(lines))
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    world = notes_world(tmp_path)
    world.store.close()
    port = free_port()
    env = {**os.environ, "OWNSTREAM_HOME": str(world.home.path)}
    env.pop("OWNSTREAM_SECRET_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "ownstream.cli.main", "serve", "--port", str(port),
         "--no-worker", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = _banner(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/.well-known/oauth-protected-resource").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)
        yield Served(url, banner, world.owner_token, dict(world.conns))
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_pdpp_cli_connect_flow_against_a_real_server(served: Served) -> None:
    base = served.url
    assert served.banner["url"] == base and "SQLite" in served.banner["storage"]
    with httpx.Client(base_url=base, timeout=10) as http:
        # discover: the resource must be the normalized URL, byte for byte
        resource = http.get("/.well-known/oauth-protected-resource").json()
        assert resource["resource"] == base
        assert resource["pdpp_agent_discovery"]["cli"]["no_owner_token"] is True
        issuer = resource["authorization_servers"][0]
        metadata = http.get(f"{issuer}/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == issuer
        assert "dynamic" in metadata["pdpp_registration_modes_supported"]
        # register a public client, exactly as the CLI posts it
        registered = http.post(
            metadata["registration_endpoint"],
            json={"client_name": "PDPP CLI", "token_endpoint_auth_method": "none"},
        )
        assert registered.status_code == 201
        client_id = registered.json()["client_id"]
        # start
        started = http.post(
            metadata["agent_connect_endpoint"],
            json={"resource": base, "scope": "pdpp:read", "client_name": "PDPP CLI",
                  "client_id": client_id},
        ).json()
        # the CLI polls right after starting, then every interval_ms
        first = http.post(started["poll_url"], json={"polling_code": started["polling_code"]})
        assert first.status_code == 200 and first.json()["status"] == "pending"
        # the owner approves through the owner API
        owner = {"Authorization": f"Bearer {served.owner_token}"}
        [pending] = http.get("/v1/owner/authorizations", params={"status": "pending"},
                             headers=owner).json()["data"]
        assert pending["user_code"] == started["user_code"]
        alice, carol = served.connections["alice"], served.connections["carol"]
        approved = http.post(
            f"/v1/owner/authorizations/{pending['id']}/approve",
            headers=owner,
            json={"streams": [{"name": "notes", "fields": ["note_id", "title", "updated_at"],
                               "connection_ids": [alice, carol]}]},
        )
        assert approved.status_code == 200, approved.text
        time.sleep(started["interval_ms"] / 1000)
        result = http.post(started["poll_url"], json={"polling_code": started["polling_code"]})
        assert result.status_code == 200 and result.json()["status"] == "approved"
        credential = result.json()["credential"]
        bearer = {"Authorization": f"Bearer {credential['access_token']}"}
        # verify, then read
        assert http.get("/v1/schema", headers=bearer).status_code == 200
        records = http.get("/v1/streams/notes/records", params={"limit": 100},
                           headers=bearer).json()
        assert {r["connection_id"] for r in records["data"]} == {alice, carol}
        assert all(set(r["data"]) == {"note_id", "title", "updated_at"} for r in records["data"])
        # the sign-in link the banner printed opens a session, once
        login = served.banner["console_login_url"]
        assert http.get(login).status_code == 303
        assert http.get(login).status_code == 400
