"""Two `ownstream serve` processes and two `ownstream worker` processes on one PostgreSQL
database, as a deployment behind a proxy runs them: scheduled connections run exactly once,
both servers answer alike, and what one server starts (a console sign-in, a pending
authorization) the other one finishes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ownstream.auth.console import SESSION_COOKIE
from ownstream.dev.spotify_data import generate_catalog, generate_user
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.grants.issue import issue_grant
from ownstream.home import DATABASE_URL_ENV, Home
from ownstream.owner import AccessOperations, ConnectionOperations
from tests.services import free_port

USERS = ("ann", "ben", "cy", "dee")
START_SECONDS = 60


class Processes:
    """Child processes of one test, stopped (by their own pid) when it ends."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "ownstream", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(processes: Processes, public_url: str) -> tuple[str, dict[str, Any]]:
    """A `serve --no-worker` on a free port, behind a proxy at `public_url`: its own URL and
    its banner."""
    port = free_port()
    process = processes.start(
        "serve", "--port", str(port), "--public-url", public_url, "--no-worker", "--json"
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.rstrip() == "}":
            break
    banner: dict[str, Any] = json.loads("".join(lines))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if httpx.get(f"{url}/.well-known/oauth-protected-resource").status_code == 200:
                return url, banner
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.1)


@pytest.fixture
def double() -> Iterator[SpotifyDouble]:
    catalog = generate_catalog(seed=5, artists=20)
    users = [generate_user(name, seed=i + 1, plays=120, catalog=catalog)
             for i, name in enumerate(USERS)]
    with SpotifyDouble(users) as running:
        yield running


@pytest.fixture
def processes(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Processes]:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("OWNSTREAM_SECRET_KEY", key)  # every process reads the same key
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)
    env = {**os.environ, "OWNSTREAM_HOME": str(tmp_path / "home")}
    running = Processes(env)
    yield running
    running.stop()


def test_two_servers_and_two_workers_share_one_database(
    processes: Processes, double: SpotifyDouble, tmp_path: Path
) -> None:
    home = Home(tmp_path / "home")
    ops = ConnectionOperations(home)
    base = double.base_url
    connections = {}
    for user in USERS:
        result = ops.connect(
            "spotify",
            secrets={"access_token": double.issue_token(user)},
            settings={"api_base_url": base, "token_url": base + "/api/token"},
        )
        connections[user] = result.connection.connection_id
    store = home.store
    for connection_id in connections.values():  # all due at once
        store.put_schedule(connection_id, enabled=True, interval_seconds=3600, jitter_seconds=0,
                           next_due_at="2000-01-01T00:00:00.000Z", origin="owner")

    for _ in range(2):
        processes.start("worker", "--poll", "0.2")
    proxy = f"http://127.0.0.1:{free_port()}"  # where clients would reach both servers
    (first, banner), (second, _) = serve(processes, proxy), serve(processes, proxy)
    assert banner["storage"].startswith("PostgreSQL 127.0.0.1:")

    # every due connection runs exactly once, whichever worker claimed it
    deadline = time.monotonic() + START_SECONDS
    while not all(store.runs(c) and store.runs(c)[0].status == "succeeded"
                  for c in connections.values()):
        assert time.monotonic() < deadline, {c: store.runs(c) for c in connections.values()}
        time.sleep(0.2)
    time.sleep(1)  # a second claim, were one possible, would have started by now
    for connection_id in connections.values():
        assert [(r.trigger, r.status) for r in store.runs(connection_id)] == [
            ("schedule", "succeeded")
        ]
    runs = store.audit_events(operation="scheduled_run")
    assert len(runs) == len(USERS) and all(e.summary.get("worker_id") for e in runs)

    # both servers answer the owner and a client alike
    owner_token, _ = AccessOperations(home).mint_owner_token()
    owner = {"Authorization": f"Bearer {owner_token}"}
    listed = [httpx.get(f"{url}/v1/owner/connections", headers=owner).json() for url in
              (first, second)]
    assert listed[0] == listed[1]
    assert {c["connection_id"] for c in listed[0]["data"]} == set(connections.values())
    _, client_token = issue_grant(
        store, home.catalog, "app.test", {"streams": [{"name": "listening_history"}]}
    )
    client = {"Authorization": f"Bearer {client_token}"}
    pages = [
        httpx.get(f"{url}/v1/streams/listening_history/records", headers=client,
                  params={"limit": 50}).json()
        for url in (first, second)
    ]
    assert pages[0]["data"] and pages[0]["data"] == pages[1]["data"]
    following = httpx.get(f"{second}/v1/streams/listening_history/records", headers=client,
                          params={"limit": 50, "cursor": pages[0]["next_cursor"]})
    assert following.status_code == 200  # a cursor from one server pages on the other

    # a console sign-in on one server is a session on the other; its link works once
    link = banner["console_login_url"].removeprefix(proxy)
    signed = httpx.get(f"{first}{link}", follow_redirects=False)
    assert signed.status_code == 303
    session = signed.cookies[SESSION_COOKIE]
    console = httpx.get(f"{second}/console/", params={"resume": "1"},
                        cookies={SESSION_COOKIE: session})
    assert console.status_code == 200
    assert httpx.get(f"{second}{link}", follow_redirects=False).status_code == 400

    # an authorization started on one server is polled, approved and redeemed on the other
    with httpx.Client(base_url=first, timeout=10) as one, httpx.Client(
        base_url=second, timeout=10
    ) as other:
        resource = one.get("/.well-known/oauth-protected-resource").json()
        issuer = resource["authorization_servers"][0].removeprefix(proxy)
        metadata = one.get(f"{issuer}/.well-known/oauth-authorization-server").json()
        client_id = one.post(
            metadata["registration_endpoint"].removeprefix(proxy),
            json={"client_name": "Agent", "token_endpoint_auth_method": "none"},
        ).json()["client_id"]
        started = one.post(
            metadata["agent_connect_endpoint"].removeprefix(proxy),
            json={"resource": resource["resource"], "scope": "pdpp:read",
                  "client_name": "Agent", "client_id": client_id},
        ).json()
        poll = started["poll_url"].removeprefix(proxy)
        polled = other.post(poll, json={"polling_code": started["polling_code"]})
        assert polled.json()["status"] == "pending"
        [pending] = other.get("/v1/owner/authorizations", params={"status": "pending"},
                              headers=owner).json()["data"]
        approved = other.post(
            f"/v1/owner/authorizations/{pending['id']}/approve",
            headers=owner,
            json={"streams": [{"name": "profile", "connection_ids": [connections["ann"]]}]},
        )
        assert approved.status_code == 200, approved.text
        time.sleep(started["interval_ms"] / 1000)
        granted = one.post(poll, json={"polling_code": started["polling_code"]}).json()
        assert granted["status"] == "approved", granted
        profile = other.get(
            "/v1/streams/profile/records",
            headers={"Authorization": f"Bearer {granted['credential']['access_token']}"},
        ).json()
        assert [r["connection_id"] for r in profile["data"]] == [connections["ann"]]
    home.store.close()
