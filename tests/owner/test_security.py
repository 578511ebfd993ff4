"""Tokens that end, who got access (audit and access log), data only the owner can read,
bounded inputs, and what the server logs."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ownstream.home import Home, loose_permissions
from ownstream.logs import JsonFormatter
from ownstream.owner import AccessOperations

from . import Lab

LH = "listening_history"


def grant_for(lab: Lab, connection_id: str, client_id: str = "app") -> tuple[str, str]:
    body = lab.ok(
        "POST",
        "/v1/owner/grants",
        201,
        json={
            "client_id": client_id,
            "streams": [{"name": LH, "fields": ["played_at", "track_name"],
                         "connection_ids": [connection_id]}],
        },
    )
    return body["grant_id"], body["access_token"]


def test_owner_tokens_expire_list_and_revoke(lab: Lab) -> None:
    minted = lab.cli_json("token", "owner", "--label", "laptop")
    assert minted["access_token"].startswith("oso_") and minted["label"] == "laptop"
    assert minted["expires_at"] is not None  # 30 days unless asked otherwise
    listed = lab.ok("GET", "/v1/owner/tokens")["data"]
    mine = next(t for t in listed if t["token_id"] == minted["token_id"])
    assert "access_token" not in mine and "token_hash" not in mine  # shown once, never again
    headers = {"Authorization": f"Bearer {minted['access_token']}"}
    assert lab.http.get("/v1/owner/connections", headers=headers).status_code == 200

    revoked = lab.ok("POST", f"/v1/owner/tokens/{minted['token_id']}/revoke")
    assert revoked["revoked"] is True and revoked["revoked_at"]
    assert lab.http.get("/v1/owner/connections", headers=headers).status_code == 401
    lab.error("POST", "/v1/owner/tokens/tok_nope/revoke", 404, "not_found")
    assert lab.cli_json("token", "revoke", "tok_nope", code=1)["error"]["code"] == "not_found"

    with pytest.raises(Exception, match="between 60 seconds"):
        AccessOperations(lab.home).mint_owner_token(ttl_seconds=5)
    _, forever = AccessOperations(lab.home).mint_owner_token(ttl_seconds=None)
    assert forever.expires_at is None  # only when asked for explicitly


def test_an_expired_owner_token_is_refused(lab: Lab) -> None:
    secret, token = AccessOperations(lab.home).mint_owner_token(ttl_seconds=60)
    with lab.db() as db:
        db.execute(
            "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE token_id = ?",
            (token.token_id,),
        )
    response = lab.http.get(
        "/v1/owner/connections", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_who_got_access_is_in_the_audit_trail(lab: Lab) -> None:
    ann = lab.connect("ann")
    grant_id, _ = grant_for(lab, ann)
    lab.ok("POST", f"/v1/owner/grants/{grant_id}/revoke")
    minted = lab.cli_json("token", "owner")
    lab.cli_json("token", "revoke", minted["token_id"])
    events = [(e["operation"], e["outcome"]) for e in lab.audit()]
    for operation in ("grant_create", "grant_revoke", "token_mint", "token_revoke"):
        assert (operation, "succeeded") in events, operation
    created = next(e for e in lab.audit() if e["operation"] == "grant_create")
    assert created["summary"]["grant_id"] == grant_id
    assert created["summary"]["streams"] == [
        {"name": LH, "connections": [ann], "fields": ["played_at", "track_name"]}
    ]
    text = json.dumps(lab.audit())
    assert minted["access_token"] not in text and "osc_" not in text  # never a secret


def test_the_access_log_counts_reads_in_memory_and_never_their_contents(lab: Lab) -> None:
    ann = lab.connect("ann")
    lab.ops.run(ann)
    _, token = grant_for(lab, ann, "reader")
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        page = lab.http.get(f"/v1/streams/{LH}/records", params={"limit": 5}, headers=headers)
        assert page.status_code == 200
    with lab.db() as db:  # counted in memory: no write per read
        assert db.execute("SELECT count(*) FROM access_counts").fetchone() == (0,)
    [entry] = lab.ok("GET", "/v1/owner/access-log", params={"client_id": "reader"})["data"]
    assert (entry["stream"], entry["connection_id"], entry["reads"], entry["records"]) == (
        LH, ann, 3, 15,
    )
    assert set(entry) == {
        "day", "client_id", "grant_id", "stream", "connection_id", "reads", "records",
    }
    assert lab.cli_json("access-log", "--client-id", "reader")[0]["reads"] == 3
    lab.error("GET", "/v1/owner/access-log", 400, "invalid_argument", params={"since": "soon"})
    token_row = next(
        t for t in lab.ok("GET", "/v1/owner/tokens")["data"] if t["kind"] == "client"
    )
    assert token_row["last_used_at"] is not None


def test_the_data_directory_is_the_owners_alone(tmp_path: Path) -> None:
    home = Home(tmp_path / "data")
    store = home.store
    home.vault  # noqa: B018 - creates secret.key
    on_sqlite = store.capabilities.backend == "sqlite"
    # while the store is open (it has written its schema), the WAL and its index exist too;
    # PostgreSQL's database is a server's, not a file here: the key is the home's secret
    names = ["secret.key"]
    if on_sqlite:
        names += ["ownstream.db", "ownstream.db-wal", "ownstream.db-shm"]
    assert stat.S_IMODE(os.stat(home.path).st_mode) == 0o700
    for name in names:
        assert stat.S_IMODE((home.path / name).stat().st_mode) == 0o600, name
    assert loose_permissions(home.path) == []
    store.close()
    if not on_sqlite:
        assert sorted(p.name for p in home.path.iterdir()) == ["secret.key"]
        return
    (home.path / "ownstream.db").chmod(0o644)
    assert loose_permissions(home.path) == [str(home.path / "ownstream.db")]
    Home(home.path).store  # noqa: B018 - opening the store tightens its files again
    assert loose_permissions(home.path) == []


def test_responses_are_never_cached_and_inputs_are_bounded(lab: Lab) -> None:
    ann = lab.connect("ann")
    response = lab.http.get("/v1/owner/connections",
                            headers={"Authorization": f"Bearer {lab.owner_token}"})
    assert response.headers["cache-control"] == "no-store"
    assert lab.http.get("/v1/streams").headers["cache-control"] == "no-store"  # errors too
    for limit in ("1e30", "99999999999999999999", "-1", "0"):
        lab.error("GET", f"/v1/owner/connections/{ann}/runs", 400, "invalid_argument",
                  params={"limit": limit})
    lab.error("PATCH", f"/v1/owner/connections/{ann}", 400, "invalid_argument",
              json={"display_name": "x" * 121})


def test_the_audit_trail_pages_by_event_number(lab: Lab) -> None:
    ann = lab.connect("ann")
    for turn in range(5):
        lab.ok("PATCH", f"/v1/owner/connections/{ann}", json={"display_name": f"Ann {turn}"})
    whole = lab.ok("GET", "/v1/owner/audit", params={"connection_id": ann})
    assert whole["has_more"] is False and whole["next_before"] is None
    walked: list[int] = []
    params: dict[str, Any] = {"connection_id": ann, "limit": 2}
    while True:
        page = lab.ok("GET", "/v1/owner/audit", params=params)
        walked += [event["seq"] for event in page["data"]]
        if not page["has_more"]:
            break
        assert page["next_before"] == page["data"][-1]["seq"]
        params["before"] = page["next_before"]
    assert walked == [event["seq"] for event in whole["data"]] and len(walked) >= 6
    lab.error("GET", "/v1/owner/audit", 400, "invalid_argument", params={"before": "x"})


def test_requests_are_logged_without_tokens_or_queries(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ownstream.http"):
        lab.http.get(
            "/v1/owner/audit", params={"limit": 3},
            headers={"Authorization": f"Bearer {lab.owner_token}"},
        )
    [line] = [r for r in caplog.records if r.name == "ownstream.http"]
    assert line.getMessage().startswith("GET /v1/owner/audit 200 ")
    assert lab.owner_token not in line.getMessage() and "limit" not in line.getMessage()
    rendered = json.loads(JsonFormatter().format(line))
    assert (rendered["method"], rendered["path"], rendered["status"]) == (
        "GET", "/v1/owner/audit", 200,
    )
    assert rendered["request_id"].startswith("req_") and rendered["at"].endswith("Z")
