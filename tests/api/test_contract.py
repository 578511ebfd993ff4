"""Every read response, for a client and for the owner, has the PDPP contract's shape; every
response names the PDPP version; and nothing a grant withholds reaches a client in any of them."""

from __future__ import annotations

from typing import Any

import pytest

from ownstream.clock import iso

from .conftest import SECRET_WORDS, World, assert_error
from .contract import assert_shape

LH = "listening_history"
VERSION = "2026-04-06"


@pytest.fixture(scope="module")
def client_token(shared_world: World) -> str:
    w = shared_world
    _, token = w.grant(
        [
            {"name": LH},
            {"name": "notes", "fields": ["note_id", "title", "tag", "updated_at"],
             "connection_ids": [w.conns["alice"], w.conns["carol"]]},
        ]
    )
    return token


def reads(w: World) -> list[tuple[str, str, dict[str, Any]]]:
    """(shape, path, params) of one request of every kind that answers 200 for both bearers."""
    alice = w.conns["alice"]
    lh_key = next(r["record_key"] for r in w.rows(LH) if r["connection_id"] == w.conns["bo.ek"])
    return [
        ("schema", "/v1/schema", {}),
        ("schema", "/v1/schema", {"view": "compact"}),
        ("schema", "/v1/schema", {"view": "compact", "stream": "notes"}),
        ("schema", "/v1/schema", {"detail": "full", "connection_id": alice}),
        ("stream_metadata", "/v1/streams/notes", {}),
        ("stream_metadata", f"/v1/streams/{LH}", {"connector_instance_id": w.conns["bo.ek"]}),
        ("streams", "/v1/streams", {}),
        ("records", "/v1/streams/notes/records", {"limit": 5, "fields": "title"}),
        ("records", f"/v1/streams/{LH}/records", {"limit": 500, "order": "asc"}),
        ("records", "/v1/streams/notes/records", {"changes_since": "beginning", "limit": 100}),
        ("record", f"/v1/streams/{LH}/records/{lh_key}", {}),
        ("record", "/v1/streams/notes/records/n02", {"connection_id": alice}),
        ("search", "/v1/search", {"q": "garden"}),
        ("search", "/v1/search", {"q": "and", "limit": 3, "streams": "notes"}),
        ("aggregation", f"/v1/streams/{LH}/aggregate", {"metric": "sum", "field": "ms_played"}),
        ("aggregation", f"/v1/streams/{LH}/aggregate", {"metric": "max", "field": "played_at"}),
        ("aggregation", "/v1/streams/notes/aggregate", {"metric": "count"}),
        ("aggregation", "/v1/streams/notes/aggregate",
         {"metric": "count", "group_by": "tag", "limit": 1}),
        ("aggregation", "/v1/streams/notes/aggregate",
         {"metric": "count", "group_by_time": "updated_at", "granularity": "week",
          "time_zone": "Europe/Paris", "connection_id": alice}),
        ("field_window", "/v1/streams/notes/records/n05/field-window",
         {"field": "title", "connection_id": alice, "limit_chars": 4}),
        ("field_window", "/v1/streams/notes/records/n05/field-window",
         {"field": "title", "connection_id": alice, "q": "ALICE", "after_chars": 2}),
    ]


def errors(w: World) -> list[tuple[str, int, str, str, dict[str, Any]]]:
    """(shape, status, code, path, params) of failures both bearers meet."""
    return [
        ("error", 400, "unknown_field", "/v1/streams/notes/records", {"fields": "nope"}),
        ("error", 400, "invalid_request", "/v1/streams/notes/records", {"bogus": "1"}),
        ("error", 400, "invalid_cursor", "/v1/streams/notes/records", {"cursor": "pg1.x"}),
        ("error", 400, "invalid_request", "/v1/streams/notes/aggregate", {"metric": "median"}),
        ("error", 400, "invalid_window", "/v1/streams/notes/records/n01/field-window",
         {"field": "title", "q": "x", "offset_chars": 3}),
        ("error", 404, "not_found", "/v1/streams/notes/records/n99", {}),
        ("error", 404, "connection_not_found", "/v1/streams", {"connection_id": "cin_none"}),
        ("error", 404, "query_not_found", "/v1/streams/notes/records/n01/field-window",
         {"field": "title", "connection_id": w.conns["alice"], "q": "zzzz"}),
        ("ambiguous", 409, "ambiguous_connection", "/v1/streams/notes/records/n01", {}),
        ("error", 410, "cursor_expired", "/v1/streams/notes/records",
         {"changes_since": "cs1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    ]


@pytest.mark.parametrize("bearer", ["client", "owner"])
def test_every_read_has_the_contract_shape(
    shared_world: World, client_token: str, bearer: str
) -> None:
    w = shared_world
    token = client_token if bearer == "client" else w.owner_token
    for shape, path, params in reads(w):
        response = w.cget(path, token, params) if bearer == "client" else w.get(path, token, params)
        assert response.status_code == 200, (path, params, response.text)
        assert response.headers["PDPP-Version"] == VERSION
        assert_shape(shape, response.json())
        if shape == "records":
            for record in response.json()["data"]:
                assert_shape("record", record)
        if bearer == "client":
            leaked = [word for word in SECRET_WORDS if word in response.text]
            assert not leaked, (path, params, leaked)


@pytest.mark.parametrize("bearer", ["client", "owner"])
def test_every_error_has_the_contract_shape(
    shared_world: World, client_token: str, bearer: str
) -> None:
    w = shared_world
    token = client_token if bearer == "client" else w.owner_token
    for shape, status, code, path, params in errors(w):
        if code == "ambiguous_connection" and bearer == "owner":
            params = {}  # the owner reads n01 under every notes connection
        response = w.get(path, token, params)
        assert_error(response, status, code)
        assert response.headers["PDPP-Version"] == VERSION
        assert_shape(shape, response.json())
    unauthenticated = w.get("/v1/schema")
    assert_error(unauthenticated, 401, "authentication_error")
    assert_shape("error", unauthenticated.json())


def test_client_only_refusals_have_the_contract_shape(
    shared_world: World, client_token: str
) -> None:
    w = shared_world
    refusals = [
        (403, "grant_stream_not_allowed", "/v1/streams/profile/aggregate", {"metric": "count"}),
        (403, "field_not_granted", "/v1/streams/notes/records", {"fields": "secret"}),
        (403, "field_not_granted", "/v1/streams/notes/aggregate",
         {"metric": "count", "group_by": "secret"}),
        (403, "field_not_granted", "/v1/streams/notes/aggregate",
         {"metric": "count_distinct", "field": "secret"}),
        (403, "field_not_granted", "/v1/streams/notes/records/n01/field-window",
         {"field": "secret", "connection_id": w.conns["alice"]}),
        (400, "invalid_request", "/v1/streams/notes/records", {"filter[tag]": "odd"}),
    ]
    for status, code, path, params in refusals:
        response = w.cget(path, client_token, params)
        error = assert_error(response, status, code)
        assert_shape("error", response.json())
        assert not [word for word in SECRET_WORDS if word in response.text]
        if code == "field_not_granted":
            assert error["param"] in ("fields", "group_by", "field")


def test_pdpp_version_negotiation(shared_world: World, client_token: str) -> None:
    w = shared_world
    headers = {"Authorization": f"Bearer {client_token}"}
    same = w.http.get("/v1/streams", headers={**headers, "PDPP-Version": VERSION})
    assert same.status_code == 200 and same.headers["PDPP-Version"] == VERSION
    other = w.http.get("/v1/streams", headers={**headers, "PDPP-Version": "2025-01-01"})
    error = assert_error(other, 400, "unsupported_version")
    assert error["param"] == "PDPP-Version"
    assert other.headers["PDPP-Version"] == VERSION
    # before authentication, on unknown routes and on the OpenAPI document too
    for path in ("/v1/streams", "/nowhere", "/openapi.json"):
        response = w.http.get(path)
        assert response.headers["PDPP-Version"] == VERSION, path
    refused = w.http.get("/openapi.json", headers={"PDPP-Version": "1999-12-31"})
    assert_error(refused, 400, "unsupported_version")


def test_freshness_follows_collection_runs(world: World) -> None:
    w = world
    alice, carol = w.conns["alice"], w.conns["carol"]
    body = w.get("/v1/streams/notes", w.owner_token).json()
    by_connection = {f["connection_id"]: f for f in body["freshness_by_connection"]}
    assert by_connection[alice]["status"] == "current"
    assert by_connection[alice]["captured_at"] <= iso(w.store.clock())
    assert body["freshness"]["status"] == "current"
    assert body["freshness"]["captured_at"] == min(f["captured_at"] for f in by_connection.values())
    # a failed run after the last success makes that connection (and so the stream) stale
    settings = w.store.connection_config(alice, "notes-api").settings
    with open(settings["data"], "w", encoding="utf-8") as handle:
        handle.write("not json")
    w.home.runtime().run_connection(alice)
    again = w.get("/v1/streams/notes", w.owner_token).json()
    stale = {f["connection_id"]: f for f in again["freshness_by_connection"]}
    assert stale[alice]["status"] == "stale"
    assert stale[alice]["captured_at"] == by_connection[alice]["captured_at"]
    assert stale[alice]["last_attempted_at"] > by_connection[alice]["last_attempted_at"]
    assert stale[carol]["status"] == "current"
    assert again["freshness"]["status"] == "stale"
