"""The aggregation profile's request rules (§3, §5): every rejection, and what is declared.

Results themselves are checked against a fold over the client's own pages in
`test_properties.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import NOTES_DEFINITION, World, assert_error

LH = "listening_history"


@pytest.fixture(scope="module")
def token(shared_world: World) -> str:
    w = shared_world
    _, issued = w.grant(
        [{"name": LH}, {"name": "notes", "fields": ["note_id", "title", "tag", "updated_at"]}]
    )
    return issued


REJECTED: list[tuple[str, dict[str, Any], str, str]] = [
    # (stream, params, code, param) — §5's table, row by row
    (LH, {"metric": "sum", "field": "track_name"}, "invalid_request", "field"),  # undeclared
    (LH, {"metric": "min", "field": "artist_name"}, "invalid_request", "field"),
    (LH, {"metric": "count_distinct", "field": "platform"}, "invalid_request", "field"),
    (LH, {"metric": "count", "group_by": "ms_played"}, "invalid_request", "group_by"),
    (LH, {"metric": "count", "group_by_time": "track_name", "granularity": "day"},
     "invalid_request", "group_by_time"),
    (LH, {"metric": "count", "streams": "notes"}, "invalid_request", "streams"),  # cross-stream
    (LH, {"metric": "count", "group_by": "artist_name", "group_by_time": "played_at",
          "granularity": "day"}, "invalid_request", "group_by"),
    (LH, {"metric": "count", "limit": "5"}, "invalid_request", "limit"),
    (LH, {"metric": "count", "granularity": "day"}, "invalid_request", "granularity"),
    (LH, {"metric": "count", "group_by": "artist_name", "granularity": "day"},
     "invalid_request", "granularity"),
    (LH, {"metric": "count", "time_zone": "UTC"}, "invalid_request", "time_zone"),
    (LH, {"metric": "count", "group_by_time": "played_at"}, "invalid_request", "granularity"),
    (LH, {"metric": "count", "group_by_time": "played_at", "granularity": "fortnight"},
     "invalid_request", "granularity"),
    (LH, {"metric": "count", "group_by_time": "played_at", "granularity": "day",
          "time_zone": "+05:00"}, "invalid_request", "time_zone"),
    (LH, {"metric": "count", "group_by_time": "played_at", "granularity": "day",
          "time_zone": "Mars/Olympus_Mons"}, "invalid_request", "time_zone"),
    (LH, {"metric": "count", "group_by_time": "played_at", "granularity": "day",
          "time_zone": "../../../etc/passwd"}, "invalid_request", "time_zone"),
    *[
        (LH, {"metric": "count", "group_by": "artist_name", "limit": bad}, "invalid_request",
         "limit")
        for bad in ("0", "101", "-1", "1.5", "ten", "", "٣")
    ],
    (LH, {"metric": "count", "filter[artist_name]": "x"}, "invalid_request", "filter[artist_name]"),
    # the request itself
    (LH, {}, "invalid_request", "metric"),
    (LH, {"metric": "median", "field": "ms_played"}, "invalid_request", "metric"),
    (LH, {"metric": "count", "field": "ms_played"}, "invalid_request", "field"),
    (LH, {"metric": "sum"}, "invalid_request", "field"),
    (LH, {"metric": "sum", "field": "ms_played", "group_by": "artist_name"},
     "invalid_request", "metric"),
    (LH, {"metric": "sum", "field": "no_such_field"}, "unknown_field", "field"),
    # fields the grant withholds
    ("notes", {"metric": "count", "group_by": "secret"}, "field_not_granted", "group_by"),
    ("notes", {"metric": "count_distinct", "field": "secret"}, "field_not_granted", "field"),
]


@pytest.mark.parametrize(("stream", "params", "code", "param"), REJECTED)
def test_every_rejection(
    shared_world: World, token: str, stream: str, params: dict[str, Any], code: str, param: str
) -> None:
    status = {"invalid_request": 400, "unknown_field": 400, "field_not_granted": 403}[code]
    error = assert_error(
        shared_world.cget(f"/v1/streams/{stream}/aggregate", token, params), status, code
    )
    assert error["param"] == param


def test_a_stream_that_declares_no_aggregations_has_none(tmp_path: Path) -> None:
    w = World.create(tmp_path)
    plain = {k: v for k, v in NOTES_DEFINITION.items() if k != "aggregations"}
    w.home.catalog.add_definition({**plain, "name": "plain_notes"}, w.store)
    assert_error(
        w.get("/v1/streams/plain_notes/aggregate", w.owner_token, {"metric": "count"}),
        404,
        "not_found",
    )
    metadata = w.get("/v1/streams/plain_notes", w.owner_token).json()
    assert "aggregations" not in metadata["query"]
    assert not any(
        flag["declared"]
        for capabilities in metadata["field_capabilities"].values()
        for flag in capabilities["aggregation"].values()
    )


def test_declarations_are_advertised_per_stream_and_per_field(
    shared_world: World, token: str
) -> None:
    w = shared_world
    metadata = w.cget("/v1/streams/notes", token).json()
    assert metadata["query"]["aggregations"] == NOTES_DEFINITION["aggregations"]
    capabilities = metadata["field_capabilities"]
    assert capabilities["tag"]["aggregation"]["group_by"] == {"declared": True, "usable": True}
    assert capabilities["secret"]["aggregation"]["group_by"] == {
        "declared": True, "usable": False, "reason": "field_not_granted"
    }
    assert capabilities["updated_at"]["aggregation"]["group_by_time"]["usable"] is True
    assert capabilities["title"]["aggregation"]["sum"] == {"declared": False, "usable": False}


def test_groups_are_bounded_and_ordered(shared_world: World, token: str) -> None:
    w = shared_world
    path = f"/v1/streams/{LH}/aggregate"
    everything = w.cget(path, token, {"metric": "count", "group_by": "artist_name",
                                      "limit": 100}).json()
    top = w.cget(path, token, {"metric": "count", "group_by": "artist_name", "limit": 3}).json()
    assert top["groups"] == everything["groups"][:3]
    assert top["other_count"] == sum(g["count"] for g in everything["groups"][3:]) > 0
    assert everything["other_count"] == 0
    counts = [(-g["count"], g["key"]) for g in everything["groups"]]
    assert counts == sorted(counts)
    days = w.cget(path, token, {"metric": "count", "group_by_time": "played_at",
                                "granularity": "day", "limit": 100}).json()
    keys = [g["key"] for g in days["groups"]]
    assert keys == sorted(keys)
    assert days["time_zone"] == "UTC" and days["granularity"] == "day"
    total = w.cget(path, token, {"metric": "count"}).json()
    assert "other_count" not in total and "groups" not in total
    assert total["value"] == total["filtered_record_count"]


def test_connection_id_narrows_an_aggregation(shared_world: World, token: str) -> None:
    w = shared_world
    path = f"/v1/streams/{LH}/aggregate"
    total = w.cget(path, token, {"metric": "count"}).json()["value"]
    parts = [
        w.cget(path, token, {"metric": "count", "connection_id": w.conns[name]}).json()["value"]
        for name in ("ada.lind", "bo.ek", "cy.rask")
    ]
    assert all(parts) and sum(parts) == total
    assert_error(
        w.cget(path, token, {"metric": "count", "connection_id": w.conns["alice"]}),
        404,
        "connection_not_found",
    )
