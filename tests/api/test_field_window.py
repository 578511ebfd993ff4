"""Field windows: bounded slices of one long text field, by offset or around a match, inside
the grant (field, connections, time window, resources)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import World, assert_error, make_notes
from .contract import assert_shape

LONG = "".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog. " for i in range(600))
NEEDLE = "Marmalade Sky"


@pytest.fixture(scope="module")
def long_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World.create(tmp_path_factory.mktemp("field-window"))
    w.add_spotify("ada.lind", 1, plays=20)
    w.install_notes()
    for account in ("alice", "bob"):
        notes = make_notes(account, count=4)
        notes[0]["body"] = LONG[:20_000] + NEEDLE + LONG[:1000]
        notes[1].pop("tag")
        w.connect_notes(account, notes)
    return w


def window(w: World, token: str, key: str, **params: Any) -> dict[str, Any]:
    response = w.cget(f"/v1/streams/notes/records/{key}/field-window", token,
                      {"connection_id": w.conns["alice"], **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert_shape("field_window", body)
    return body


def test_offset_windows_page_through_the_whole_field(long_world: World) -> None:
    w = long_world
    _, token = w.grant([{"name": "notes"}])
    first = window(w, token, "n01", field="body")
    text = w.notes_data["alice"]["notes"][0]["body"]
    assert first["field"] == {"path": "body", "type": "string"}
    assert first["record_id"] == "n01" and first["connection_id"] == w.conns["alice"]
    assert first["window"]["text"] == text[:4096]
    assert first["window"]["limit_chars"] == 4096
    assert (first["window"]["total_chars"], first["window"]["complete"]) == (len(text), False)
    pieces, offset = [], 0
    while True:
        page = window(w, token, "n01", field="body", offset_chars=offset, limit_chars=7000)
        pieces.append(page["window"]["text"])
        assert page["window"]["start_chars"] == offset
        if page["window"]["next_offset_chars"] is None:
            assert page["window"]["has_more"] is False
            break
        offset = page["window"]["next_offset_chars"]
        assert page["window"]["previous_offset_chars"] == (
            None if page["window"]["start_chars"] == 0
            else max(0, page["window"]["start_chars"] - 7000)
        )
    assert "".join(pieces) == text
    short = window(w, token, "n02", field="title")
    assert short["window"]["complete"] is True and short["window"]["has_more"] is False
    past_the_end = window(w, token, "n02", field="title", offset_chars=10_000)
    assert past_the_end["window"]["text"] == ""
    clamped = window(w, token, "n01", field="body", limit_chars=50_000)
    assert clamped["window"]["limit_chars"] == 16_384
    assert clamped["meta"]["warnings"][0]["code"] == "limit_clamped"


def test_a_match_window_centres_on_the_first_occurrence(long_world: World) -> None:
    w = long_world
    _, token = w.grant([{"name": "notes"}])
    text = w.notes_data["alice"]["notes"][0]["body"]
    at = text.index(NEEDLE)
    found = window(w, token, "n01", field="body", q="marmalade SKY", before_chars=10,
                   after_chars=5)["window"]
    assert (found["match_start_chars"], found["match_end_chars"]) == (at, at + len(NEEDLE))
    assert found["start_chars"] == at - 10
    assert found["text"] == text[at - 10 : at + len(NEEDLE) + 5]
    bounded = window(w, token, "n01", field="body", q=NEEDLE, limit_chars=100)["window"]
    assert bounded["text"] == text[at : at + 100]
    assert_error(
        w.cget("/v1/streams/notes/records/n01/field-window", token,
               {"connection_id": w.conns["alice"], "field": "body", "q": "absent words"}),
        404,
        "query_not_found",
    )


@pytest.mark.parametrize(
    ("params", "status", "code", "param"),
    [
        ({}, 400, "invalid_request", "field"),
        ({"field": "nope"}, 400, "unknown_field", "field"),
        ({"field": "body", "before_chars": "3"}, 400, "invalid_window", "q"),
        ({"field": "body", "q": "fox", "offset_chars": "3"}, 400, "invalid_window",
         "offset_chars"),
        ({"field": "body", "offset_chars": "-1"}, 400, "invalid_window", "offset_chars"),
        ({"field": "body", "limit_chars": "0"}, 400, "invalid_window", "limit_chars"),
        ({"field": "body", "limit_chars": "lots"}, 400, "invalid_window", "limit_chars"),
        ({"field": "body", "q": "fox", "after_chars": "9000"}, 400, "invalid_window",
         "after_chars"),
        ({"field": "body", "cursor": "x"}, 400, "invalid_request", "cursor"),
        ({"field": "tag"}, 404, "field_not_found", "field"),
    ],
)
def test_bad_selectors_and_fields(
    long_world: World, params: dict[str, Any], status: int, code: str, param: str
) -> None:
    w = long_world
    _, token = w.grant([{"name": "notes"}])
    error = assert_error(
        w.cget("/v1/streams/notes/records/n02/field-window", token,
               {"connection_id": w.conns["alice"], **params}),
        status,
        code,
    )
    assert error["param"] == param


def test_the_grant_bounds_every_window(long_world: World) -> None:
    w = long_world
    alice, bob = w.conns["alice"], w.conns["bob"]
    path = "/v1/streams/notes/records/n01/field-window"
    _, titles = w.grant([{"name": "notes", "fields": ["note_id", "title"],
                          "connection_ids": [alice]}])
    refused = w.cget(path, titles, {"field": "body"})
    assert_error(refused, 403, "field_not_granted")
    assert "fox" not in refused.text
    assert window(w, titles, "n01", field="title")["window"]["text"].startswith("budget")
    assert_error(w.cget(path, titles, {"field": "title", "connection_id": bob}), 404,
                 "connection_not_found")
    _, both = w.grant([{"name": "notes", "connection_ids": [alice, bob]}])
    assert_error(w.cget(path, both, {"field": "body"}), 409, "ambiguous_connection")
    _, elsewhere = w.grant([{"name": "notes", "resources": ["n02"]}])
    assert_error(w.cget(path, elsewhere, {"field": "body", "connection_id": alice}), 404,
                 "not_found")
    _, later = w.grant([{"name": "notes", "time_range": {"since": "2030-01-01T00:00:00Z"}}])
    assert_error(w.cget(path, later, {"field": "body", "connection_id": alice}), 404,
                 "not_found")
    _, other_stream = w.grant([{"name": "listening_history"}])
    assert_error(w.cget(path, other_stream, {"field": "body"}), 403, "grant_stream_not_allowed")


def test_only_text_has_windows(long_world: World) -> None:
    w = long_world
    _, token = w.grant([{"name": "listening_history"}])
    key = w.rows("listening_history")[0]["record_key"]
    error = assert_error(
        w.cget(f"/v1/streams/listening_history/records/{key}/field-window", token,
               {"field": "ms_played"}),
        422,
        "field_not_text",
    )
    assert error["type"] == "invalid_request_error"


def test_an_owner_reads_windows_of_any_connection(long_world: World) -> None:
    w = long_world
    body = w.get("/v1/streams/notes/records/n01/field-window", w.owner_token,
                 {"field": "body", "connection_id": w.conns["bob"], "limit_chars": 9}).json()
    assert_shape("field_window", body)
    assert body["window"]["text"] == LONG[:9]
    assert body["connection_id"] == w.conns["bob"]
