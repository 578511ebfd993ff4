"""A large import never freezes the server: while it runs, owner writes wait at most about a
second for the writer, and client reads never wait on it."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Owner
from tests.services import free_port

from .conftest import finish, integrity, journal_lines, kill, start, wait_until

pytestmark = pytest.mark.reliability
LARGE = 60_000


def test_owner_writes_and_client_reads_stay_fast_during_a_large_import(
    journal_home: Owner,
) -> None:
    owner = journal_home
    small = owner.import_file("small.jsonl", journal_lines(50, "u1"), header={"user": "u1"})
    cid = finish(owner, "import", "journal-export", str(small))["connection_id"]
    request = owner.scratch / "grant.json"
    request.write_text('{"streams": [{"name": "journal_entries"}]}')
    client = owner.json("grants", "create", "--client-id", "reader", "--request", request)
    owner_token = owner.json("token", "owner", "--ttl", "3600")["access_token"]
    large = owner.import_file("large.jsonl", journal_lines(LARGE, "u2"), header={"user": "u2"})

    port = free_port()
    server = start(owner, "serve", "--port", str(port), "--no-worker")
    base = f"http://127.0.0.1:{port}"
    latencies: dict[str, list[float]] = {"owner_write": [], "client_read": []}
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            wait_until(lambda: _up(http), 30, "serve")
            importer = start(owner, "import", "journal-export", str(large))
            try:
                deadline = time.monotonic() + 240
                turn = 0
                while importer.poll() is None and time.monotonic() < deadline:
                    turn += 1
                    began = time.perf_counter()
                    if turn % 2:
                        response = http.patch(
                            f"/v1/owner/connections/{cid}",
                            json={"display_name": f"Journal {turn}"},
                            headers={"Authorization": f"Bearer {owner_token}"},
                        )
                        kind = "owner_write"
                    else:
                        response = http.get(
                            "/v1/streams/journal_entries/records",
                            params={"limit": 25},
                            headers={"Authorization": f"Bearer {client['access_token']}"},
                        )
                        kind = "client_read"
                    assert response.status_code == 200, response.text
                    latencies[kind].append(time.perf_counter() - began)
                    time.sleep(0.05)
                assert importer.wait(240) == 0, importer.stderr.read() if importer.stderr else ""
            finally:
                if importer.poll() is None:
                    kill(importer)
    finally:
        server.terminate()
        server.wait(30)
    # the requests overlapped the import, and none of them waited long
    assert len(latencies["owner_write"]) >= 10 and len(latencies["client_read"]) >= 10
    worst = {kind: max(values) for kind, values in latencies.items()}
    assert worst["owner_write"] < 1.0, worst
    assert worst["client_read"] < 1.0, worst
    integrity(owner)


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/v1/streams").status_code == 401
    except httpx.TransportError:
        return False
