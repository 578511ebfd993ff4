"""Lexical search: granted ∩ searchable fields only, in the query itself; grant-safe hits."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest

from ownstream.search import fold

from .conftest import SECRET_WORDS, World, assert_error, make_notes

LH = "listening_history"
HIT_KEYS = {"object", "stream", "record_key", "connector_id", "connection_id",
            "connector_instance_id", "emitted_at", "matched_fields", "record_url"}


def search_all(w: World, token: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    hits = [h for page in w.page_all("/v1/search", token, params) for h in page["data"]]
    keys = [(h["stream"], h["connection_id"], h["record_key"]) for h in hits]
    assert len(keys) == len(set(keys)), "a hit came back twice"
    return hits


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", fold(text)))


def test_hit_shape_and_projection(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "title", "updated_at"]}])
    body = w.cget("/v1/search", token, {"q": "garden"}).json()
    assert body["object"] == "list" and body["url"] == "/v1/search"
    assert body["meta"]["count"] is None and body["meta"]["count_accuracy"] == "not_counted"
    assert body["data"]
    for hit in body["data"]:
        assert HIT_KEYS <= set(hit) <= HIT_KEYS | {"display_name", "snippet", "score"}
        assert hit["object"] == "search_result" and hit["stream"] == "notes"
        assert hit["connector_id"] == "shared-definitions"  # never a connector type
        assert "data" not in hit  # never the payload
        assert hit["matched_fields"] == ["title"]
        assert hit["snippet"]["field"] == "title" and "garden" in hit["snippet"]["text"]
        assert hit["record_url"] == (
            f"/v1/streams/notes/records/{hit['record_key']}?connection_id={hit['connection_id']}"
        )
        # the record_url resolves for the same bearer
        record = w.cget(hit["record_url"].split("?")[0], token,
                        {"connection_id": hit["connection_id"]}).json()
        assert "garden" in record["data"]["title"]


def test_a_withheld_field_never_produces_a_hit(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "title", "body", "updated_at"]}])
    for word in SECRET_WORDS:
        owner_hits = search_all(w, w.owner_token, {"q": word, "limit": 50})
        assert owner_hits and all(h["matched_fields"] == ["secret"] for h in owner_hits)
        assert w.cget("/v1/search", token, {"q": word}).json()["data"] == []
        assert w.cget("/v1/search", token, {"q": word[:3] + "*"}).json()["data"] == []
    # a term in a visible field plus one only in the hidden field: no hit (all terms must match
    # visible text), though the owner finds it
    note = next(n for n in make_notes("alice") if n["title"].startswith("garden"))
    both = f"garden {note['secret'].split()[0]}"
    assert w.cget("/v1/search", token, {"q": both}).json()["data"] == []
    assert search_all(w, w.owner_token, {"q": both})
    _, with_secret = w.grant([{"name": "notes", "fields": ["note_id", "secret"]}])
    assert w.cget("/v1/search", with_secret, {"q": SECRET_WORDS[0]}).json()["data"]


def test_matched_fields_and_snippets_follow_the_grant(shared_world: World) -> None:
    """Every note's title, body and secret all contain the account name."""
    w = shared_world
    alice = w.conns["alice"]
    cases = [
        (["note_id", "title"], ["title"]),
        (["note_id", "body"], ["body"]),
        (["title", "body"], ["title", "body"]),
        (["note_id", "title", "body", "secret"], ["title", "body", "secret"]),
        (["note_id", "tag"], []),  # nothing searchable granted: nothing to find
    ]
    for fields, matched in cases:
        _, token = w.grant([{"name": "notes", "fields": fields, "connection_ids": [alice]}])
        hits = search_all(w, token, {"q": "alice", "limit": 50})
        capabilities = w.cget("/v1/streams/notes", token).json()["field_capabilities"]
        usable = [f for f, c in capabilities.items() if c["lexical_search"]["usable"]]
        assert usable == matched
        if not matched:
            assert hits == []
            continue
        assert len(hits) == 12
        for hit in hits:
            assert hit["matched_fields"] == matched, fields
            assert hit["snippet"]["field"] == matched[0]
            record = w.cget(f"/v1/streams/notes/records/{hit['record_key']}", token,
                            {"connection_id": alice}).json()
            assert hit["snippet"]["text"].strip("…") in record["data"][matched[0]]


def test_search_fans_in_over_granted_connections(shared_world: World) -> None:
    w = shared_world
    rows = [r for r in w.rows(LH)]
    artist = rows[0]["data"]["artist_name"]
    term = sorted(words(artist), key=len)[-1]
    expected = {
        (r["connection_id"], r["record_key"])
        for r in rows
        if term in words(r["data"]["artist_name"]) | words(r["data"]["track_name"])
        | words(r["data"].get("album_name", ""))
    }
    _, token = w.grant([{"name": LH}])
    hits = search_all(w, token, {"q": term, "streams": LH, "limit": 7})
    assert {(h["connection_id"], h["record_key"]) for h in hits} == expected
    by_connection = {c for c, _ in expected}
    narrowed_to = sorted(by_connection)[0]
    only = search_all(w, token, {"q": term, "streams": LH, "connection_id": narrowed_to})
    assert {(h["connection_id"], h["record_key"]) for h in only} == {
        k for k in expected if k[0] == narrowed_to
    }
    # a grant on two of the three connections
    two = sorted({w.conns[u] for u in ("ada.lind", "bo.ek", "cy.rask")})[:2]
    _, partial = w.grant([{"name": LH, "connection_ids": two}])
    hits = search_all(w, partial, {"q": term, "limit": 50})
    assert {(h["connection_id"], h["record_key"]) for h in hits} == {
        k for k in expected if k[0] in two
    }
    ungranted = ({w.conns[u] for u in ("ada.lind", "bo.ek", "cy.rask")} - set(two)).pop()
    assert_error(w.cget("/v1/search", partial, {"q": term, "connection_id": ungranted}), 404,
                 "connection_not_found")


def test_search_spans_streams_and_can_be_limited_to_some(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}, {"name": "saved_tracks"}, {"name": "notes"}])
    row = w.rows("saved_tracks")[0]
    term = sorted(words(row["data"]["track_name"]), key=len)[-1]
    everywhere = search_all(w, token, {"q": term, "limit": 50})
    assert "saved_tracks" in {h["stream"] for h in everywhere}
    only = search_all(w, token, {"q": term, "streams": "saved_tracks", "limit": 50})
    assert {h["stream"] for h in only} == {"saved_tracks"}
    assert {(h["connection_id"], h["record_key"]) for h in only} == {
        (h["connection_id"], h["record_key"]) for h in everywhere if h["stream"] == "saved_tracks"
    }
    assert_error(w.cget("/v1/search", token, {"q": term, "streams": "playlists"}), 403,
                 "grant_stream_not_allowed")


def test_search_paging_limit_and_errors(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes"}])
    full = search_all(w, token, {"q": "and", "limit": 50})
    assert len(full) == 36  # every body has "and"
    paged = search_all(w, token, {"q": "and", "limit": 4})
    assert [(h["connection_id"], h["record_key"]) for h in paged] == [
        (h["connection_id"], h["record_key"]) for h in full
    ]
    default = w.cget("/v1/search", token, {"q": "and"}).json()
    assert len(default["data"]) == 25 and default["meta"]["warnings"] == []
    clamped = w.cget("/v1/search", token, {"q": "and", "limit": 180}).json()
    assert clamped["meta"]["warnings"][0]["code"] == "limit_clamped"
    assert clamped["meta"]["warnings"][0]["detail"] == {"max_limit": 100, "requested_limit": 180}
    assert clamped["meta"]["recall"]["ranking_scope"] == "all_matches"
    first = w.cget("/v1/search", token, {"q": "and", "limit": 4}).json()
    assert_error(
        w.cget("/v1/search", token, {"q": "garden", "cursor": first["next_cursor"]}), 400,
        "invalid_cursor",
    )
    for params in ({}, {"q": ""}):
        assert_error(w.cget("/v1/search", token, params), 400, "invalid_request")
    assert_error(w.cget("/v1/search", token, {"q": "!!!"}), 400, "invalid_argument")
    # the lexical profile has no public connector_id parameter
    assert_error(w.cget("/v1/search", token, {"q": "a", "connector_id": "x"}), 400,
                 "invalid_request")
    assert_error(w.cget("/v1/search", token, {"q": "a", "rank": "bm25"}), 400, "invalid_request")


def test_search_prefix_and_diacritics(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "title"]}])
    exact = search_all(w, token, {"q": "garden", "limit": 50})
    prefix = search_all(w, token, {"q": "gard*", "limit": 50})
    assert exact and {h["record_key"] for h in prefix} >= {h["record_key"] for h in exact}
    assert search_all(w, token, {"q": "GÁRDEN", "limit": 50}) == exact


@pytest.mark.parametrize("fields", [["note_id"], ["note_id", "body", "tag"]])
def test_hits_from_a_time_window(shared_world: World, fields: list[str]) -> None:
    w = shared_world
    _, token = w.grant([{"name": "notes", "fields": fields,
                         "time_range": {"since": "2025-06-01T00:00:00Z"}}])
    hits = search_all(w, token, {"q": "more", "limit": 50})  # every body has "more"
    allowed = {
        (r["connection_id"], r["record_key"])
        for r in w.rows("notes")
        if r["consent_time"] >= "2025-06-01"
    }
    assert 0 < len(allowed) < 36
    if "body" in fields:
        assert {(h["connection_id"], h["record_key"]) for h in hits} == allowed
    else:
        assert hits == []


def index_fold(text: str) -> str:
    """SQLite unicode61 (remove_diacritics 2) folding, written independently of the code."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def test_a_word_copied_from_the_data_finds_its_records(shared_world: World) -> None:
    """Every non-ASCII word as it appears in track and artist names (ß, ø, ü, é, œ ...), typed
    as is, in upper or lower case, finds exactly the records that contain it."""
    w = shared_world
    rows = w.rows(LH)
    texts = {
        (r["connection_id"], r["record_key"]): " ".join(
            r["data"].get(f, "") for f in ("track_name", "artist_name", "album_name")
        )
        for r in rows
    }
    unusual = sorted({word for t in texts.values() for word in re.findall(r"[^\W_]+", t)
                      if not word.isascii()})
    assert any("ß" in word for word in unusual)
    _, token = w.grant([{"name": LH}])
    for word in unusual:
        folded = index_fold(word)
        expected = {
            key for key, text in texts.items()
            if folded in {index_fold(x) for x in re.findall(r"[^\W_]+", text)}
        }
        for typed in (word, word.lower(), index_fold(word)):
            hits = search_all(w, token, {"q": typed, "streams": LH, "limit": 50})
            assert {(h["connection_id"], h["record_key"]) for h in hits} == expected, typed
            assert all(h["matched_fields"] for h in hits), typed


def test_owner_search_names_connector_types_and_soft_filters_streams(shared_world: World) -> None:
    w = shared_world
    hits = w.get("/v1/search", w.owner_token, {"q": "garden", "limit": 100}).json()["data"]
    by_connection = {h["connection_id"]: h["connector_id"] for h in hits}
    assert by_connection[w.conns["alice"]] == "notes-api"
    assert by_connection[w.conns["carol"]] == "notes-export"
    # for the owner, naming a stream no connector has yields no hits rather than an error
    nothing = w.get("/v1/search", w.owner_token, {"q": "garden", "streams": "no_such_stream"})
    assert nothing.status_code == 200 and nothing.json()["data"] == []
    _, token = w.grant([{"name": "notes"}])
    assert_error(w.cget("/v1/search", token, {"q": "garden", "streams": "no_such_stream"}), 403,
                 "grant_stream_not_allowed")
