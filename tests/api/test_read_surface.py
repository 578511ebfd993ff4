"""Every client read endpoint, its shape, its parameters and its PDPP errors."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.reads import cursors

from .conftest import World, assert_error, assert_no_provenance, make_notes, schema_streams

LH = "listening_history"
RECORD_KEYS = {"object", "id", "stream", "data", "emitted_at", "connection_id",
               "connector_instance_id"}


def labels(world: World) -> dict[str, str | None]:
    return {c.connection_id: c.client_display_name for c in world.store.connections()}


def check_attribution(world: World, entry: dict[str, Any]) -> None:
    """`display_name` appears exactly when the owner gave a meaningful label."""
    expected = labels(world)[entry["connection_id"]]
    if expected is None:
        assert "display_name" not in entry, entry
    else:
        assert entry["display_name"] == expected


@pytest.fixture(scope="module")
def grant_lh_notes(shared_world: World) -> tuple[Any, str]:
    w = shared_world
    return w.grant(
        [
            {"name": LH},
            {"name": "notes", "fields": ["note_id", "title", "updated_at"],
             "connection_ids": [w.conns["alice"], w.conns["carol"]]},
        ]
    )


# --- /v1/streams -------------------------------------------------------------------------------
def test_streams_list_one_entry_per_granted_stream_and_connection(
    shared_world: World, grant_lh_notes: tuple[Any, str]
) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    body = w.cget("/v1/streams", token).json()
    assert body["object"] == "list" and body["has_more"] is False
    got = {(e["name"], e["connection_id"]): e for e in body["data"]}
    expected = {(LH, w.conns[u]) for u in ("ada.lind", "bo.ek", "cy.rask")} | {
        ("notes", w.conns["alice"]), ("notes", w.conns["carol"])
    }
    assert set(got) == expected
    assert len(body["data"]) == len(expected)
    for (stream, connection_id), entry in got.items():
        assert entry["object"] == "stream"
        live = [r for r in w.rows(stream) if r["connection_id"] == connection_id]
        assert entry["record_count"] == len(live) > 0
        assert entry["last_updated"]
        assert entry["connector_instance_id"] == connection_id
        check_attribution(w, entry)
    assert got[(LH, w.conns["ada.lind"])]["display_name"] == "Ada's phone"
    assert got[("notes", w.conns["alice"])]["display_name"] == "Alice notebook"
    assert "display_name" not in got[(LH, w.conns["bo.ek"])]


def test_streams_list_owner_reads_every_connection(shared_world: World) -> None:
    w = shared_world
    body = w.get("/v1/streams", w.owner_token).json()
    got = {(e["name"], e["connection_id"]): e["record_count"] for e in body["data"]}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for stream in {name for name, _ in got}:
        for row in w.rows(stream):
            counts[(stream, row["connection_id"])] += 1
    # every stream a connection's paths emit is listed, the ones it holds nothing of with 0
    assert got == {**dict.fromkeys(got, 0), **counts}
    assert got[("audiobook_listening", w.conns["bo.ek"])] == 0


def test_streams_list_narrowed_by_connection(
    shared_world: World, grant_lh_notes: tuple[Any, str]
) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    body = w.cget("/v1/streams", token, {"connection_id": w.conns["alice"]}).json()
    assert [(e["name"], e["connection_id"]) for e in body["data"]] == [
        ("notes", w.conns["alice"])
    ]


# --- /v1/streams/{stream} ---------------------------------------------------------------------
def test_stream_metadata(shared_world: World, grant_lh_notes: tuple[Any, str]) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    body = w.cget("/v1/streams/notes", token).json()
    assert body["object"] == "stream_metadata"
    assert body["name"] == "notes"
    assert body["primary_key"] == ["note_id"]
    assert body["cursor_field"] == body["consent_time_field"] == "updated_at"
    assert body["semantics"] == "mutable_state"
    assert "properties" in body["schema"]
    assert body["granted_fields"] == ["note_id", "title", "updated_at"]
    # metadata is not grant-projected: every declared field, with what this grant may use
    assert body["query"]["search"]["lexical_fields"] == ["title", "body", "secret"]
    assert set(body["field_capabilities"]) == set(body["schema"]["properties"])
    title, secret = body["field_capabilities"]["title"], body["field_capabilities"]["secret"]
    assert title["granted"] and title["lexical_search"] == {"declared": True, "usable": True}
    assert secret["granted"] is False
    assert secret["lexical_search"] == {
        "declared": True, "usable": False, "reason": "field_not_granted"
    }
    assert body["expand_capabilities"] == []
    assert body["granted_connections"] == [
        {"connection_id": w.conns["alice"], "display_name": "Alice notebook"},
        {"connection_id": w.conns["carol"]},
    ]
    narrowed = w.cget("/v1/streams/notes", token, {"connection_id": w.conns["carol"]}).json()
    assert narrowed["granted_connections"] == [{"connection_id": w.conns["carol"]}]


def test_stream_metadata_unknown_stream(shared_world: World) -> None:
    w = shared_world
    assert_error(w.get("/v1/streams/nope", w.owner_token), 404, "unknown_stream")


# --- /v1/streams/{stream}/records -------------------------------------------------------------
def test_records_list_shape_and_projection(
    shared_world: World, grant_lh_notes: tuple[Any, str]
) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    body = w.cget("/v1/streams/notes/records", token, {"limit": 5}).json()
    assert body["object"] == "list"
    assert body["url"] == "/v1/streams/notes/records"
    assert body["has_more"] is True and isinstance(body["next_cursor"], str)
    assert "next_changes_since" not in body
    assert body["meta"]["warnings"] == []
    assert len(body["data"]) == 5
    truth = {(r["connection_id"], r["record_key"]): r["data"] for r in w.rows("notes")}
    for record in body["data"]:
        assert RECORD_KEYS <= set(record) <= RECORD_KEYS | {"display_name"}
        assert record["object"] == "record" and record["stream"] == "notes"
        assert record["connection_id"] in (w.conns["alice"], w.conns["carol"])
        stored = truth[(record["connection_id"], record["id"])]
        assert record["data"] == {
            k: stored[k] for k in ("note_id", "title", "updated_at") if k in stored
        }
        check_attribution(w, record)


def test_records_fields_parameter_narrows_the_grant(
    shared_world: World, grant_lh_notes: tuple[Any, str]
) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    for params in ({"fields": "title"}, {"fields": ["title", "note_id"]}, {"fields[]": "title"}):
        body = w.cget("/v1/streams/notes/records", token, {**params, "limit": 50}).json()
        assert body["data"]
        # the schema's required note_id is always included
        assert all(set(r["data"]) == {"note_id", "title"} for r in body["data"]), params
    assert_error(
        w.cget("/v1/streams/notes/records", token, {"fields": "title,nope"}), 400, "unknown_field"
    )
    # `body` is not granted: asking for it is refused, never silently dropped
    error = assert_error(
        w.cget("/v1/streams/notes/records", token, {"fields": ["title", "body"]}),
        403,
        "field_not_granted",
    )
    assert error["param"] == "fields"


def test_limit_is_clamped_with_a_warning(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}])
    body = w.cget(f"/v1/streams/{LH}/records", token, {"limit": 500}).json()
    assert len(body["data"]) == 100
    assert body["has_more"] is True
    assert body["meta"]["warnings"] == [
        {
            "code": "limit_clamped",
            "message": "limit was clamped to 100",
            "param": "limit",
            "detail": {"max_limit": 100, "requested_limit": 500},
        }
    ]
    default = w.cget(f"/v1/streams/{LH}/records", token).json()
    assert len(default["data"]) == 25 and default["meta"]["warnings"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "invalid_argument"),
        ({"limit": "many"}, "invalid_argument"),
        ({"order": "sideways"}, "invalid_argument"),
        ({"cursor": "not a cursor!"}, "invalid_cursor"),
    ],
)
def test_bad_list_parameters(shared_world: World, params: dict[str, Any], code: str) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}])
    error = assert_error(w.cget(f"/v1/streams/{LH}/records", token, params), 400, code)
    assert error["param"] == next(iter(params))


def test_cursor_is_tied_to_its_stream_and_order(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}, {"name": "saved_tracks"}])
    page = w.cget(f"/v1/streams/{LH}/records", token, {"limit": 3}).json()
    cursor = page["next_cursor"]
    assert_error(
        w.cget(f"/v1/streams/{LH}/records", token, {"cursor": cursor, "order": "asc"}),
        400, "invalid_cursor",
    )
    assert_error(
        w.cget("/v1/streams/saved_tracks/records", token, {"cursor": cursor}),
        400, "invalid_cursor",
    )


def test_forged_cursor_is_rejected_not_a_server_error(shared_world: World) -> None:
    """A cursor is opaque but decodable; one we did not issue must be a 400, not a 500."""
    w = shared_world
    _, token = w.grant([{"name": LH}])
    vault = w.home.vault
    issued = w.cget(f"/v1/streams/{LH}/records", token, {"limit": 1}).json()["next_cursor"]
    forged = [
        cursors.encode(vault, "page", {"s": LH, "o": "desc"}),
        cursors.encode(vault, "page", {"s": LH, "o": "desc", "v": 1, "c": None, "r": ["x"]}),
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        # a readable position a client wrote itself (it could probe a hidden cursor field)
        base64.urlsafe_b64encode(
            b'{"s":"listening_history","o":"asc","v":"2025-06","c":"cin_x","r":""}'
        ).decode(),
        # an issued cursor with one byte changed
        issued[:-2] + ("A" if issued[-2] != "A" else "B") + issued[-1],
        # a search cursor where a page cursor belongs
        cursors.encode(vault, "search", {"q": "garden", "before": 5}),
    ]
    for cursor in forged:
        assert_error(
            w.cget(f"/v1/streams/{LH}/records", token, {"cursor": cursor}), 400, "invalid_cursor"
        )
    search_forged = cursors.encode(vault, "search", {"q": "garden"})
    _, notes_token = w.grant([{"name": "notes"}])
    assert_error(
        w.cget("/v1/search", notes_token, {"q": "garden", "cursor": search_forged}),
        400, "invalid_cursor",
    )


# --- /v1/streams/{stream}/records/{id} ---------------------------------------------------------
def test_record_detail(shared_world: World, grant_lh_notes: tuple[Any, str]) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    row = next(r for r in w.rows(LH) if r["connection_id"] == w.conns["bo.ek"])
    body = w.cget(f"/v1/streams/{LH}/records/{row['record_key']}", token).json()
    assert body["object"] == "record"
    assert body["id"] == row["record_key"] and body["connection_id"] == w.conns["bo.ek"]
    assert body["data"] == row["data"]
    assert "display_name" not in body  # bo.ek's label is a placeholder
    assert body["meta"] == {"warnings": []}
    narrowed = w.cget(
        "/v1/streams/notes/records/n03", token, {"connection_id": w.conns["alice"]}
    ).json()
    assert narrowed["display_name"] == "Alice notebook"
    assert set(narrowed["data"]) == {"note_id", "title", "updated_at"}
    projected = w.cget(
        "/v1/streams/notes/records/n03", token,
        {"connection_id": w.conns["alice"], "fields": "title"},
    ).json()
    assert projected["data"] == {k: narrowed["data"][k] for k in ("note_id", "title")}


def test_record_detail_not_found(shared_world: World, grant_lh_notes: tuple[Any, str]) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    assert_error(w.cget(f"/v1/streams/{LH}/records/ffffffffffffffffffff", token), 404, "not_found")
    # n03 exists under bob, but the grant covers only alice and carol for notes
    assert_error(
        w.cget("/v1/streams/notes/records/n03", token, {"connection_id": w.conns["bob"]}),
        404, "connection_not_found",
    )


def test_record_detail_ambiguous_lists_only_readable_connections(
    shared_world: World, grant_lh_notes: tuple[Any, str]
) -> None:
    w, (_, token) = shared_world, grant_lh_notes
    error = assert_error(
        w.cget("/v1/streams/notes/records/n01", token), 409, "ambiguous_connection"
    )
    assert error["retry_with"]["field"] == "connection_id"
    assert sorted(error["available_connections"], key=lambda c: c["connection_id"]) == sorted(
        [
            {"connection_id": w.conns["alice"], "display_name": "Alice notebook"},
            {"connection_id": w.conns["carol"]},
        ],
        key=lambda c: c["connection_id"],
    )
    # one connection granted: the same id is not ambiguous
    _, single = w.grant([{"name": "notes", "connection_ids": [w.conns["bob"]]}])
    assert w.cget("/v1/streams/notes/records/n01", single).json()["connection_id"] == w.conns[
        "bob"
    ]


def test_record_detail_ambiguous_spotify_saved_track(shared_world: World) -> None:
    """Listeners share a catalog, so one track URI is a saved track under several accounts."""
    w = shared_world
    by_key: dict[str, set[str]] = defaultdict(set)
    for row in w.rows("saved_tracks"):
        by_key[row["record_key"]].add(row["connection_id"])
    key, owners = next((k, c) for k, c in sorted(by_key.items()) if len(c) >= 2)
    _, token = w.grant([{"name": "saved_tracks"}])
    error = assert_error(
        w.cget(f"/v1/streams/saved_tracks/records/{key}", token), 409, "ambiguous_connection"
    )
    assert {c["connection_id"] for c in error["available_connections"]} == owners
    for connection_id in owners:
        body = w.cget(
            f"/v1/streams/saved_tracks/records/{key}", token, {"connection_id": connection_id}
        ).json()
        assert body["connection_id"] == connection_id and body["id"] == key
    owner_error = assert_error(
        w.get(f"/v1/streams/saved_tracks/records/{key}", w.owner_token), 409,
        "ambiguous_connection",
    )
    assert len(owner_error["available_connections"]) == len(owners)


# --- /v1/schema ---------------------------------------------------------------------------------
def test_schema_for_a_client_and_for_the_owner(
    shared_world: World, grant_lh_notes: tuple[Any, str]
) -> None:
    w, (grant, token) = shared_world, grant_lh_notes
    body = w.cget("/v1/schema", token).json()
    assert body["object"] == "schema"
    assert body["bearer"] == {
        "token_kind": "client", "scope": "grant", "client_id": "app.test",
        "grant_id": grant.grant_id,
    }
    # a client sees one connector entry: the shared definitions, never connector types
    [shared] = body["connectors"]
    assert shared["connector_id"] == "shared-definitions"
    assert shared["stream_count"] == 2
    assert [s["name"] for s in shared["streams"]] == ["listening_history", "notes"]
    notes = shared["streams"][1]
    assert {c["connection_id"] for c in notes["granted_connections"]} == {
        w.conns["alice"], w.conns["carol"]
    }
    one = w.cget("/v1/schema", token, {"stream": "notes"}).json()
    assert [s["name"] for s in schema_streams(one)] == ["notes"]
    owner = w.get("/v1/schema", w.owner_token).json()
    assert owner["bearer"] == {"token_kind": "owner", "scope": "owner"}
    assert {s["name"] for s in schema_streams(owner)} == {
        "listening_history", "podcast_listening", "audiobook_listening", "saved_tracks",
        "playlists", "profile", "notes",
    }
    by_connector = {c["connector_id"]: c for c in owner["connectors"]}
    assert {"spotify-export", "notes-api", "notes-export"} <= set(by_connector)
    # the owner's entries list each stream with the connections that connector feeds
    [api_notes] = by_connector["notes-api"]["streams"]
    assert {c["connection_id"] for c in api_notes["granted_connections"]} == {
        w.conns["alice"], w.conns["bob"]
    }
    only = w.get("/v1/schema", w.owner_token, {"connector_id": "notes-export"}).json()
    assert [c["connector_id"] for c in only["connectors"]] == ["notes-export"]
    assert_error(w.cget("/v1/schema", token, {"connector_id": "notes-api"}), 404, "not_found")


# --- parameters every endpoint shares --------------------------------------------------------
ENDPOINTS = [
    "/v1/streams",
    f"/v1/streams/{LH}",
    f"/v1/streams/{LH}/records",
    "/v1/schema",
]


@pytest.mark.parametrize("path", [*ENDPOINTS, "/v1/search?q=a", "RECORD"])
def test_unknown_query_parameter_is_rejected(shared_world: World, path: str) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}])
    if path == "RECORD":
        path = f"/v1/streams/{LH}/records/{w.rows(LH)[0]['record_key']}"
    sep = "&" if "?" in path else "?"
    for who in (token, w.owner_token):
        error = assert_error(w.get(f"{path}{sep}colour=blue", who), 400, "invalid_request")
        assert error["param"] == "colour"


@pytest.mark.parametrize("param", ["filter[track_name]", "filter[played_at][gte]", "view",
                                   "expand[]", "expand_limit[x]"])
def test_owner_only_parameters_are_refused_to_clients(shared_world: World, param: str) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}])
    for path in (f"/v1/streams/{LH}/records", "/v1/search?q=a", "/v1/streams"):
        sep = "&" if "?" in path else "?"
        error = assert_error(w.cget(f"{path}{sep}{param}=x", token), 400, "invalid_request")
        assert "owner" in error["message"] and error["param"] == param
    # decided before any grant lookup: a stream outside the grant still gets the 400
    assert_error(
        w.cget(f"/v1/streams/notes/records?{param}=x", token), 400, "invalid_request"
    )


def test_connection_alias_warns_and_narrows(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}, {"name": "notes"}])
    bo = w.conns["bo.ek"]
    warning = {
        "code": "deprecated_alias_used",
        "message": "connector_instance_id is deprecated; use connection_id",
        "param": "connector_instance_id",
    }
    records = w.cget(f"/v1/streams/{LH}/records", token, {"connector_instance_id": bo}).json()
    assert records["data"] and {r["connection_id"] for r in records["data"]} == {bo}
    assert records["meta"]["warnings"] == [warning]
    bo_key = next(r["record_key"] for r in w.rows(LH) if r["connection_id"] == bo)
    # (the PDPP schema and aggregation objects have no `meta` to carry a warning)
    for path in ("/v1/streams", f"/v1/streams/{LH}", "/v1/search",
                 f"/v1/streams/{LH}/records/{bo_key}"):
        extra = {"q": "a"} if path == "/v1/search" else {}
        body = w.cget(path, token, {"connector_instance_id": bo, **extra}).json()
        assert warning in body["meta"]["warnings"], path
    streams = w.cget("/v1/streams", token, {"connector_instance_id": bo}).json()["data"]
    assert {e["connection_id"] for e in streams} == {bo}
    other_key = next(r["record_key"] for r in w.rows(LH) if r["connection_id"] != bo)
    assert_error(
        w.cget(f"/v1/streams/{LH}/records/{other_key}", token, {"connector_instance_id": bo}),
        404, "not_found",
    )
    same = w.cget(
        f"/v1/streams/{LH}/records", token, {"connector_instance_id": bo, "connection_id": bo}
    ).json()
    assert same["meta"]["warnings"] == [warning]
    for path in (f"/v1/streams/{LH}/records", "/v1/streams", "/v1/search"):
        params = {"q": "a", "connector_instance_id": bo, "connection_id": w.conns["cy.rask"]}
        if path != "/v1/search":
            del params["q"]
        error = assert_error(w.cget(path, token, params), 400, "invalid_argument")
        assert error["param"] == "connector_instance_id"


# --- Request-Id and the envelope --------------------------------------------------------------
def test_request_id_on_every_response(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}])
    responses = [
        w.get("/v1/streams", token),
        w.get("/v1/streams", None),
        w.get("/v1/streams", "osc_wrong"),
        w.get("/v1/streams/notes/records", token),
        w.get("/v1/streams/nope/records", w.owner_token),
        w.get("/v1/does-not-exist", token),
        w.post("/v1/streams", token),
        w.get(f"/v1/streams/{LH}/records", token, {"bogus": 1}),
        w.get("/v1/owner/grants", token),
        w.get("/v1/owner/grants", w.owner_token),
    ]
    seen = set()
    for response in responses:
        request_id = response.headers.get("Request-Id")
        assert request_id and request_id.startswith("req_"), response.text
        seen.add(request_id)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"}
            assert body["error"]["request_id"] == request_id
            assert {"type", "code", "message", "request_id"} <= set(body["error"])
    assert len(seen) == len(responses)
    assert [r.status_code for r in responses] == [200, 401, 401, 403, 404, 404, 405, 400, 403, 200]


# --- labels -----------------------------------------------------------------------------------
def test_placeholders_never_shown_and_renamed_label_shown(world: World) -> None:
    w = world
    _, token = w.grant([{"name": LH}, {"name": "notes"}])
    placeholders = {c.display_name for c in w.store.connections() if c.display_name_is_placeholder}
    assert placeholders  # bo.ek, cy.rask, bob and carol keep their placeholders

    def everything() -> str:
        parts = [
            w.cget("/v1/streams", token).text,
            w.cget(f"/v1/streams/{LH}", token).text,
            w.cget("/v1/streams/notes", token).text,
            w.cget("/v1/schema", token).text,
            w.cget(f"/v1/streams/{LH}/records", token, {"limit": 100}).text,
            w.cget("/v1/streams/notes/records", token, {"limit": 100}).text,
            w.cget("/v1/streams/notes/records", token, {"changes_since": "beginning",
                                                         "limit": 100}).text,
            w.cget("/v1/streams/notes/records/n02", token).text,
            w.cget("/v1/search", token, {"q": "and", "limit": 50}).text,
        ]
        return "\n".join(parts)

    text = everything()
    for placeholder in placeholders:
        assert placeholder not in text
    assert "Ada's phone" in text and "Alice notebook" in text
    assert "bo.ek" not in text  # the placeholder's account suffix never escapes on its own
    w.store.rename_connection(w.conns["bob"], "Bob's desk")
    text = everything()
    assert "Bob's desk" in text
    streams = w.cget("/v1/streams", token).json()["data"]
    bob = next(e for e in streams if e["connection_id"] == w.conns["bob"])
    assert bob["display_name"] == "Bob's desk"
    assert_no_provenance(text, w.provenance_strings())


def test_owner_reads_through_the_same_endpoints(shared_world: World) -> None:
    w = shared_world
    body = w.get("/v1/streams/notes/records", w.owner_token, {"limit": 100}).json()
    assert len(body["data"]) == 36
    # the owner sees every field, including what grants withhold
    assert all("secret" in r["data"] for r in body["data"])
    only = w.get("/v1/streams/notes/records", w.owner_token,
                 {"limit": 100, "connection_id": w.conns["bob"]}).json()
    assert {r["connection_id"] for r in only["data"]} == {w.conns["bob"]}
    assert len(only["data"]) == len(make_notes("bob"))
    assert_error(
        w.get("/v1/streams/notes/records", w.owner_token, {"connection_id": "cin_nope"}),
        404, "connection_not_found",
    )
    # the owner filters (an exact match; ranges only where the definition declares them)
    odd = w.get("/v1/streams/notes/records", w.owner_token, {"limit": 100, "filter[tag]": "odd"})
    assert {r["data"]["tag"] for r in odd.json()["data"]} == {"odd"}
    assert_error(
        w.get("/v1/streams/notes/records", w.owner_token, {"filter[tag][gte]": "a"}),
        400, "invalid_request",
    )
    assert json.loads(w.get("/v1/streams/notes", w.owner_token).text)["granted_fields"] == [
        "note_id", "title", "body", "secret", "tag", "updated_at"
    ]


def test_record_ids_are_percent_encoded_canonical_keys(world: World) -> None:
    w = world
    odd = "a/b #c?d%e&f=ü"
    notes = [*make_notes("alice"), {"note_id": odd, "title": "oddly keyed", "tag": "odd",
                                    "updated_at": "2025-04-04T00:00:00.000Z"}]
    w.run_notes("alice", notes)
    _, token = w.grant([{"name": "notes", "connection_ids": [w.conns["alice"]]}])
    body = w.cget(f"/v1/streams/notes/records/{quote(odd, safe='')}", token).json()
    assert body["id"] == odd and body["data"]["title"] == "oddly keyed"
    hit = w.cget("/v1/search", token, {"q": "oddly"}).json()["data"][0]
    assert hit["record_key"] == odd
    path, query = hit["record_url"].split("?")
    assert w.cget(path, token, dict([query.split("=")])).json()["id"] == odd
    # a playlist key from the archive: spaces, apostrophes, non-ASCII
    keys = sorted({r["record_key"] for r in w.rows("playlists")})
    _, lists = w.grant([{"name": "playlists", "connection_ids": [w.conns["bo.ek"]]}])
    for key in keys:
        response = w.cget(f"/v1/streams/playlists/records/{quote(key, safe='')}", lists)
        owned = any(r["record_key"] == key and r["connection_id"] == w.conns["bo.ek"]
                    for r in w.rows("playlists"))
        if owned:
            assert response.json()["id"] == key
        else:
            assert_error(response, 404, "not_found")


def test_an_unexpected_error_is_a_500_envelope_that_leaks_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    _, token = w.grant([{"name": LH}])

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"disk on fire at {w.root}")

    monkeypatch.setattr(w.store, "records_page", boom)
    client = TestClient(create_app(w.home), raise_server_exceptions=False)
    response = client.get(f"/v1/streams/{LH}/records", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == error["code"] == "api_error"
    assert error["message"] == "internal error"
    assert response.headers["Request-Id"] == error["request_id"]
    assert "disk on fire" not in response.text and str(w.root) not in response.text
