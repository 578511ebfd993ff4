"""Grants and tokens: issuance, owner endpoints, revocation, expiry, and what a grant enforces."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx2
import pytest

from ownstream.clock import utc_now

from .conftest import World, assert_error, make_notes

LH = "listening_history"


def _strip_request_id(response: httpx2.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body["error"].pop("request_id")
    return body


# --- issuing ----------------------------------------------------------------------------------
def test_owner_creates_a_grant_over_http(world: World) -> None:
    w = world
    response = w.post(
        "/v1/owner/grants",
        w.owner_token,
        json={
            "client_id": "listening.app",
            "purpose_code": "https://example.test/purposes/stats",
            "access_mode": "continuous",
            "streams": [{"name": LH, "fields": ["play_id", "played_at", "track_name"]}],
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    grant = body["grant"]
    assert body["grant_id"] == grant["grant_id"] and body["access_token"].startswith("osc_")
    assert grant["client"]["client_id"] == "listening.app"
    assert grant["purpose_code"] == "https://example.test/purposes/stats"
    assert grant["access_mode"] == "continuous"
    assert grant["issued_at"] and grant["expires_at"] is None
    # omitted connection_ids resolve now, explicitly, to every connection with the stream
    assert grant["streams"] == [
        {
            "name": LH,
            "instance_ids": [w.conns["ada.lind"], w.conns["bo.ek"], w.conns["cy.rask"]],
            "fields": ["play_id", "played_at", "track_name"],
        }
    ]
    records = w.cget(f"/v1/streams/{LH}/records", body["access_token"], {"limit": 5}).json()
    assert all(set(r["data"]) <= {"play_id", "played_at", "track_name"} for r in records["data"])
    # the token is stored only hashed
    with w.db() as db:
        stored = [row[0] for row in db.execute("SELECT token_hash FROM tokens")]
    assert body["access_token"] not in stored and len(stored) >= 2


@pytest.mark.parametrize(
    ("request_body", "code", "param"),
    [
        ({"streams": [{"name": LH}]}, "invalid_request", "client_id"),
        ({"client_id": "x", "streams": []}, "invalid_request", "streams"),
        ({"client_id": "x", "streams": [{"name": "nope"}]}, "unknown_stream", "stream"),
        ({"client_id": "x", "streams": [{"name": LH, "fields": ["nope"]}]}, "unknown_field",
         "streams[0].fields"),
        ({"client_id": "x", "streams": [{"name": "playlists", "time_range": {"since": "2025"}}]},
         "invalid_request", "streams[0].time_range"),
        ({"client_id": "x", "streams": [{"name": LH, "time_range": "last year"}]},
         "invalid_request", "streams[0].time_range"),
        ({"client_id": "x", "streams": [{"name": LH, "time_range": {"since": "soon"}}]},
         "invalid_request", "streams[0].time_range"),
        ({"client_id": "x", "streams": [{"name": LH, "connection_ids": ["cin_nope"]}]},
         "invalid_request", "streams[0].connection_ids"),
        ({"client_id": "x", "access_mode": "forever", "streams": [{"name": LH}]},
         "invalid_request", "access_mode"),
        ({"client_id": "x", "expires_in": -5, "streams": [{"name": LH}]},
         "invalid_request", "expires_in"),
        ({"client_id": "x", "streams": [{"name": LH, "resources": "all"}]},
         "invalid_request", "streams[0]"),
    ],
)
def test_invalid_grant_requests(
    shared_world: World, request_body: dict[str, Any], code: str, param: str
) -> None:
    w = shared_world
    response = w.post("/v1/owner/grants", w.owner_token, json=request_body)
    status = 404 if code == "unknown_stream" else 400
    assert assert_error(response, status, code).get("param") == param


def test_a_grant_cannot_name_a_connection_without_the_stream(shared_world: World) -> None:
    w = shared_world
    response = w.post(
        "/v1/owner/grants", w.owner_token,
        json={"client_id": "x", "streams": [{"name": "notes",
                                             "connection_ids": [w.conns["ada.lind"]]}]},
    )
    assert_error(response, 400, "invalid_request")


def test_a_grant_spans_connectors_that_emit_one_definition(shared_world: World) -> None:
    """alice and bob come through notes-api, carol through notes-export: one grant, all three."""
    w = shared_world
    grant, token = w.grant([{"name": "notes"}])
    assert set(grant.streams[0].instance_ids) == {
        w.conns["alice"], w.conns["bob"], w.conns["carol"]
    }
    body = w.cget("/v1/streams/notes/records", token, {"limit": 100}).json()
    assert {r["connection_id"] for r in body["data"]} == set(grant.streams[0].instance_ids)


def test_a_connection_created_later_is_not_in_the_grant(world: World) -> None:
    w = world
    grant, token = w.grant([{"name": LH}])
    late = w.add_spotify("dee.vik", 4, label="Dee's tablet")
    assert late not in grant.streams[0].instance_ids
    listed = w.cget("/v1/streams", token).json()["data"]
    assert late not in {e["connection_id"] for e in listed}
    everything = [
        r
        for page in w.page_all(f"/v1/streams/{LH}/records", token, {"limit": 100})
        for r in page["data"]
    ]
    assert late not in {r["connection_id"] for r in everything}
    assert_error(
        w.cget(f"/v1/streams/{LH}/records", token, {"connection_id": late}),
        404, "connection_not_found",
    )
    # a grant issued now includes it
    newer, newer_token = w.grant([{"name": LH}])
    assert late in newer.streams[0].instance_ids
    assert any(
        e["connection_id"] == late and e.get("display_name") == "Dee's tablet"
        for e in w.cget("/v1/streams", newer_token).json()["data"]
    )


# --- owner endpoints ----------------------------------------------------------------------------
def test_owner_lists_shows_and_revokes_grants(world: World) -> None:
    w = world
    first, first_token = w.grant([{"name": LH}], client_id="one.app")
    second, _ = w.grant([{"name": "notes"}], client_id="two.app")
    listed = w.get("/v1/owner/grants", w.owner_token).json()
    assert listed["object"] == "list"
    by_id = {g["grant_id"]: g for g in listed["data"]}
    assert {first.grant_id, second.grant_id} <= set(by_id)
    assert by_id[first.grant_id]["object"] == "grant"
    assert by_id[first.grant_id]["client"]["client_id"] == "one.app"
    assert by_id[first.grant_id]["revoked_at"] is None
    shown = w.get(f"/v1/owner/grants/{first.grant_id}", w.owner_token).json()
    assert shown == by_id[first.grant_id]
    assert shown["streams"][0]["instance_ids"] == list(first.streams[0].instance_ids)
    assert_error(w.get("/v1/owner/grants/grt_nope", w.owner_token), 404, "not_found")

    assert w.cget("/v1/streams", first_token).status_code == 200
    revoked = w.post(f"/v1/owner/grants/{first.grant_id}/revoke", w.owner_token)
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True and revoked.json()["revoked_at"]
    # revocation takes effect on the very next request, on every endpoint
    for path in ("/v1/streams", f"/v1/streams/{LH}/records", "/v1/schema", "/v1/search?q=a"):
        error = assert_error(w.get(path, first_token), 403, "grant_revoked")
        assert error["grant_id"] == first.grant_id
    after = w.get(f"/v1/owner/grants/{first.grant_id}", w.owner_token).json()
    assert after["revoked_at"] == revoked.json()["revoked_at"]
    # revoking twice keeps the first revocation time
    again = w.post(f"/v1/owner/grants/{first.grant_id}/revoke", w.owner_token).json()
    assert again["revoked_at"] == after["revoked_at"]
    assert_error(w.post("/v1/owner/grants/grt_nope/revoke", w.owner_token), 404, "not_found")


def test_pdpp_revoke_by_the_grants_own_client(world: World) -> None:
    w = world
    mine, my_token = w.grant([{"name": LH}], client_id="mine.app")
    other, other_token = w.grant([{"name": LH}], client_id="other.app")
    error = assert_error(w.post(f"/grants/{other.grant_id}/revoke", my_token), 403,
                         "insufficient_scope")
    assert "own grant" in error["message"]
    assert w.cget("/v1/streams", other_token).status_code == 200
    response = w.post(f"/grants/{mine.grant_id}/revoke", my_token)
    assert response.status_code == 200 and response.json() == {"revoked": True}
    assert_error(w.get("/v1/streams", my_token), 403, "grant_revoked")
    # the owner may revoke any grant through the PDPP route too
    assert w.post(f"/grants/{other.grant_id}/revoke", w.owner_token).json() == {"revoked": True}
    assert_error(w.get("/v1/streams", other_token), 403, "grant_revoked")
    assert_error(w.post(f"/grants/{mine.grant_id}/revoke", None), 401, "authentication_error")


def test_a_revoked_client_token_stops_working(world: World) -> None:
    """Revoking one token (not its grant) must also take effect on the next request."""
    w = world
    grant, token = w.grant([{"name": LH}])
    _, sibling = w.grant([{"name": LH}])
    with w.db() as db:
        (token_id,) = db.execute(
            "SELECT token_id FROM tokens WHERE grant_id = ?", (grant.grant_id,)
        ).fetchone()
    assert w.cget("/v1/streams", token).status_code == 200
    w.store.revoke_token(token_id)
    assert_error(w.get("/v1/streams", token), 401, "authentication_error")
    assert w.cget("/v1/streams", sibling).status_code == 200
    assert w.get(f"/v1/owner/grants/{grant.grant_id}", w.owner_token).json()["revoked_at"] is None


def test_client_tokens_cannot_use_owner_endpoints(shared_world: World) -> None:
    w = shared_world
    grant, token = w.grant([{"name": LH}])
    alice = w.conns["alice"]
    for method, path in (
        ("get", "/v1/owner/grants"),
        ("get", f"/v1/owner/grants/{grant.grant_id}"),
        ("post", f"/v1/owner/grants/{grant.grant_id}/revoke"),
        ("post", "/v1/owner/grants"),
        ("get", "/v1/owner/connections"),
        ("get", f"/v1/owner/connections/{alice}"),
        ("get", f"/v1/owner/connections/{alice}/provenance/notes/n01"),
    ):
        response = getattr(w, method)(path, token)
        assert_error(response, 403, "insufficient_scope")
        assert_error(getattr(w, method)(path, None), 401, "authentication_error")
    assert w.cget("/v1/streams", token).status_code == 200  # still not revoked


def test_owner_connection_endpoints_show_provenance(shared_world: World) -> None:
    w = shared_world
    listed = w.get("/v1/owner/connections", w.owner_token).json()
    assert listed["object"] == "list"
    by_id = {c["connection_id"]: c for c in listed["data"]}
    assert set(by_id) == set(w.conns.values())
    bo = by_id[w.conns["bo.ek"]]
    assert bo["object"] == "owner_connection"
    assert bo["display_name_is_placeholder"] is True
    assert bo["acquisition_paths"][0]["connector_key"] == "spotify-export"
    assert bo["acquisition_paths"][0]["acquisition_method"] == "owner_artifact"
    assert by_id[w.conns["alice"]]["acquisition_paths"][0]["connector_key"] == "notes-api"

    detail = w.get(f"/v1/owner/connections/{w.conns['bo.ek']}", w.owner_token).json()
    assert detail["connection_id"] == w.conns["bo.ek"]
    batch = detail["import_batches"][0]
    assert batch["artifact"]["name"] == "my_spotify_data.zip"
    assert len(batch["artifact"]["sha256"]) == 64
    assert detail["recent_runs"][0]["run_id"] == batch["run_id"]
    assert {s["stream"] for s in detail["streams"]} == {
        "listening_history", "podcast_listening", "saved_tracks", "playlists", "profile"
    }
    assert_error(w.get("/v1/owner/connections/cin_nope", w.owner_token), 404,
                 "connection_not_found")

    key = next(r["record_key"] for r in w.rows(LH) if r["connection_id"] == w.conns["bo.ek"])
    provenance = w.get(
        f"/v1/owner/connections/{w.conns['bo.ek']}/provenance/{LH}/{key}", w.owner_token
    ).json()
    assert provenance["object"] == "provenance"
    assert provenance["id"] == key and provenance["stream"] == LH
    assert provenance["evidence"] == [
        {
            "run_id": batch["run_id"],
            "batch_id": batch["batch_id"],
            "connector_key": "spotify-export",
            "acquisition_method": "owner_artifact",
            "at": provenance["evidence"][0]["at"],
        }
    ]
    api = w.get(
        f"/v1/owner/connections/{w.conns['alice']}/provenance/notes/n01", w.owner_token
    ).json()
    assert [(e["connector_key"], e["batch_id"]) for e in api["evidence"]] == [("notes-api", None)]
    assert_error(
        w.get(f"/v1/owner/connections/cin_nope/provenance/{LH}/{key}", w.owner_token),
        404, "connection_not_found",
    )


# --- authentication ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer osc_not-a-real-token",
     "Bearer oso_not-a-real-token", "bearer  "],
)
def test_missing_or_bad_tokens_are_401(shared_world: World, authorization: str | None) -> None:
    w = shared_world
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in ("/v1/streams", f"/v1/streams/{LH}/records", "/v1/search?q=a",
                 "/v1/owner/grants"):
        response = w.http.get(path, headers=headers)
        assert_error(response, 401, "authentication_error")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_owner_token_cli_equivalent_is_accepted_and_case_insensitive_scheme(
    shared_world: World,
) -> None:
    w = shared_world
    response = w.http.get("/v1/streams", headers={"Authorization": f"bearer {w.owner_token}"})
    assert response.status_code == 200


def test_grant_expiry_is_403_grant_expired(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    grant, token = w.grant([{"name": LH}], expires_in=60)
    assert grant.expires_at is not None
    assert w.cget("/v1/streams", token).status_code == 200
    monkeypatch.setattr(w.store, "clock", lambda: utc_now() + timedelta(seconds=61))
    for path in ("/v1/streams", f"/v1/streams/{LH}/records", "/v1/search?q=a", "/v1/schema"):
        assert_error(w.get(path, token), 403, "grant_expired")
    # the owner token lives 30 days
    assert w.get("/v1/streams", w.owner_token).status_code == 200
    shown = w.get(f"/v1/owner/grants/{grant.grant_id}", w.owner_token).json()
    assert shown["expires_at"] == grant.expires_at


def test_grant_expiry_in_real_time(world: World) -> None:
    w = world
    _, token = w.grant([{"name": LH}], expires_in=1)
    assert w.cget("/v1/streams", token).status_code == 200
    time.sleep(1.1)
    assert_error(w.get("/v1/streams", token), 403, "grant_expired")


# --- 403 / 404 -----------------------------------------------------------------------------------
def test_stream_outside_the_grant_is_403(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}])
    for path, params in (
        ("/v1/streams/notes", {}),
        ("/v1/streams/notes/records", {}),
        ("/v1/streams/notes/records", {"changes_since": "beginning"}),
        ("/v1/streams/notes/records/n01", {}),
        ("/v1/search", {"q": "garden", "streams": "notes"}),
        ("/v1/search", {"q": "garden", "streams[]": ["listening_history", "notes"]}),
    ):
        error = assert_error(w.cget(path, token, params), 403, "grant_stream_not_allowed")
        assert "notes" in error["message"]


def test_connection_not_found_is_identical_for_ungranted_and_nonexistent(
    shared_world: World,
) -> None:
    w = shared_world
    _, token = w.grant(
        [{"name": LH, "connection_ids": [w.conns["ada.lind"], w.conns["bo.ek"]]},
         {"name": "notes", "connection_ids": [w.conns["alice"]]}]
    )
    existing = w.conns["cy.rask"]  # has listening_history, not granted
    # a syntactically identical id that does not exist
    missing = "cin_" + "0" * 24
    assert len(missing) == len(existing)
    record_key = next(r["record_key"] for r in w.rows(LH) if r["connection_id"] == existing)
    for path, params in (
        ("/v1/streams", {}),
        (f"/v1/streams/{LH}", {}),
        (f"/v1/streams/{LH}/records", {}),
        (f"/v1/streams/{LH}/records", {"changes_since": "beginning"}),
        (f"/v1/streams/{LH}/records/{record_key}", {}),
        ("/v1/search", {"q": "a"}),
        ("/v1/schema", {}),
    ):
        answers = []
        for connection_id in (existing, missing):
            response = w.cget(path, token, {**params, "connection_id": connection_id})
            assert_error(response, 404, "connection_not_found")
            body = _strip_request_id(response)
            body["error"]["message"] = body["error"]["message"].replace(connection_id, "ID")
            answers.append(body)
        assert answers[0] == answers[1], path


# --- time_constraint and resources --------------------------------------------------------------
def _window(w: World) -> tuple[str, str, set[tuple[str, str]], set[tuple[str, str]]]:
    times = sorted(r["consent_time"] for r in w.rows(LH))
    since, until = times[len(times) // 4], times[len(times) // 2]
    inside = {
        (r["connection_id"], r["record_key"])
        for r in w.rows(LH)
        if since <= r["consent_time"] < until
    }
    outside = {(r["connection_id"], r["record_key"]) for r in w.rows(LH)} - inside
    return since, until, inside, outside


def test_time_constraint_is_enforced_everywhere(shared_world: World) -> None:
    w = shared_world
    since, until, inside, outside = _window(w)
    assert inside and outside
    grant, token = w.grant([{"name": LH, "time_range": {"since": since, "until": until}}])
    constraint = grant.to_dict()["streams"][0]["time_constraint"]
    assert constraint == {"field": "played_at", "since": since, "until": until}
    # lists
    listed = {
        (r["connection_id"], r["id"])
        for page in w.page_all(f"/v1/streams/{LH}/records", token, {"limit": 100})
        for r in page["data"]
    }
    assert listed == inside
    # counts
    counts = {e["connection_id"]: e["record_count"] for e in w.cget("/v1/streams", token).json()[
        "data"]}
    for connection_id in {c for c, _ in inside | outside}:
        assert counts.get(connection_id, 0) == sum(1 for c, _ in inside if c == connection_id)
    # detail
    connection_id, key = sorted(outside)[0]
    assert_error(
        w.cget(f"/v1/streams/{LH}/records/{key}", token, {"connection_id": connection_id}),
        404, "not_found",
    )
    connection_id, key = sorted(inside)[0]
    assert w.cget(f"/v1/streams/{LH}/records/{key}", token,
                  {"connection_id": connection_id}).status_code == 200
    # changes
    changed = {
        (r["connection_id"], r["id"])
        for page in w.page_all(f"/v1/streams/{LH}/records", token,
                               {"changes_since": "beginning", "limit": 100})
        for r in page["data"]
    }
    assert changed == inside
    # search: every hit is inside the window; an outside record's title finds nothing of it
    rows = {(r["connection_id"], r["record_key"]): r for r in w.rows(LH)}
    out_row = rows[sorted(outside)[0]]
    word = out_row["data"]["track_name"].split()[0]
    hits = [
        h
        for page in w.page_all("/v1/search", token, {"q": word, "streams": LH, "limit": 50})
        for h in page["data"]
    ]
    assert all((h["connection_id"], h["record_key"]) in inside for h in hits)
    owner_hits = [
        h
        for page in w.page_all("/v1/search", w.owner_token, {"q": word, "streams": LH,
                                                              "limit": 50})
        for h in page["data"]
    ]
    assert (out_row["connection_id"], out_row["record_key"]) in {
        (h["connection_id"], h["record_key"]) for h in owner_hits
    }


def test_resources_are_enforced_everywhere(shared_world: World) -> None:
    w = shared_world
    alice, bob = w.conns["alice"], w.conns["bob"]
    grant, token = w.grant(
        [{"name": "notes", "resources": ["n02", "n05", "n99"], "connection_ids": [alice, bob],
          "fields": ["note_id", "title", "updated_at"]}]
    )
    assert grant.to_dict()["streams"][0]["resources"] == ["n02", "n05", "n99"]
    allowed = {(c, k) for c in (alice, bob) for k in ("n02", "n05")}
    listed = {
        (r["connection_id"], r["id"])
        for r in w.cget("/v1/streams/notes/records", token, {"limit": 100}).json()["data"]
    }
    assert listed == allowed
    counts = {e["connection_id"]: e["record_count"] for e in w.cget("/v1/streams", token).json()[
        "data"]}
    assert counts == {alice: 2, bob: 2}
    assert_error(w.cget("/v1/streams/notes/records/n03", token, {"connection_id": alice}),
                 404, "not_found")
    assert w.cget("/v1/streams/notes/records/n02", token,
                  {"connection_id": alice}).json()["id"] == "n02"
    changes = {
        (r["connection_id"], r["id"])
        for r in w.cget("/v1/streams/notes/records", token,
                        {"changes_since": "beginning", "limit": 100}).json()["data"]
    }
    assert changes == allowed
    # every note title has a title word; only resources can hit
    hits = w.cget("/v1/search", token, {"q": "alice", "limit": 50}).json()["data"]
    assert {(h["connection_id"], h["record_key"]) for h in hits} == {
        (alice, "n02"), (alice, "n05")
    }
    assert len(make_notes("alice")) == 12

