"""Owner queries on record reads: every filter operator against ground truth, paging under
filters, views, expansions, sort, filtered aggregation, the metadata that declares them, and a
client refused each of them as PDPP requires (400 `invalid_request` before any lookup)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from ownstream.clock import parse_iso
from tests.api.conftest import assert_error

from .conftest import TaskWorld

Predicate = Callable[[dict[str, Any]], bool]


def moment(text: str) -> datetime:
    return parse_iso(text)


def truth(world: TaskWorld, keep: Predicate) -> set[tuple[str, str]]:
    return {
        (world.conns[name], task["task_id"])
        for name, document in world.data.items()
        for task in document["tasks"]
        if keep(task)
    }


def keys(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["connection_id"], r["id"]) for r in records}


NOON = "2025-01-04T10:30:00+00:00"
CASES: list[tuple[dict[str, str], Predicate]] = [
    ({"filter[title]": "ana task 1"}, lambda t: t["title"] == "ana task 1"),
    ({"filter[points]": "3"}, lambda t: t.get("points") == 3),
    ({"filter[done]": "true"}, lambda t: t["done"] is True),
    ({"filter[done]": "false"}, lambda t: t["done"] is False),
    ({"filter[points][gte]": "3"}, lambda t: t.get("points", -1) >= 3),
    ({"filter[points][gt]": "3"}, lambda t: t.get("points", -1) > 3),
    ({"filter[points][lte]": "1"}, lambda t: "points" in t and t["points"] <= 1),
    ({"filter[points][lt]": "1"}, lambda t: "points" in t and t["points"] < 1),
    ({"filter[weight][gte]": "1.5", "filter[weight][lt]": "3"}, lambda t: 1.5 <= t["weight"] < 3),
    ({"filter[due_at][gte]": NOON}, lambda t: moment(t["due_at"]) >= moment(NOON)),
    ({"filter[due_at][gt]": "2025-01-04T12:30:00+02:00"},  # an offset is an instant
     lambda t: moment(t["due_at"]) > moment("2025-01-04T10:30:00Z")),
    ({"filter[due_at][lte]": "2025-01-05T23:59:59.999Z"},
     lambda t: moment(t["due_at"]) <= moment("2025-01-05T23:59:59.999Z")),
    ({"filter[due_at][lt]": "2025-01-05T23:59:59.999Z"},
     lambda t: moment(t["due_at"]) < moment("2025-01-05T23:59:59.999Z")),
    ({"filter[day][gte]": "2025-02-03", "filter[day][lte]": "2025-02-05"},
     lambda t: "2025-02-03" <= t["day"] <= "2025-02-05"),
    ({"filter[done]": "true", "filter[points][gte]": "1"},
     lambda t: t["done"] and t.get("points", -1) >= 1),
]


@pytest.mark.parametrize(("params", "keep"), CASES)
def test_each_filter_operator_matches_the_records_it_names(
    shared_tasks: TaskWorld, params: dict[str, str], keep: Predicate
) -> None:
    expected = truth(shared_tasks, keep)
    assert expected, params  # every case selects something…
    assert expected != truth(shared_tasks, lambda t: True), params  # …and leaves something out
    assert keys(shared_tasks.listed(params=params)) == expected


def test_filters_page_with_cursors_bound_to_them(shared_tasks: TaskWorld) -> None:
    w = shared_tasks
    params = {"filter[points][gte]": "2", "limit": 2}
    pages = w.listed(params=params)
    assert keys(pages) == truth(w, lambda t: t.get("points", -1) >= 2)
    first = w.get("/v1/streams/tasks/records", params=params).json()
    cursor = first["next_cursor"]
    for other in ({"limit": 2}, {"filter[points][gte]": "3", "limit": 2}):
        assert_error(
            w.get("/v1/streams/tasks/records", params={**other, "cursor": cursor}),
            400, "invalid_cursor",
        )
    narrowed = w.listed(params={"filter[done]": "true", "connection_id": w.conns["ben"]})
    assert keys(narrowed) == {(w.conns["ben"], t) for t in ("t3", "t6")}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"filter[nothing]": "x"}, "unknown_field"),
        ({"filter[tags]": "a"}, "invalid_request"),  # not a scalar
        ({"filter[title][gte]": "a"}, "invalid_request"),  # no declared range
        ({"filter[weight][gt]": "1"}, "invalid_request"),  # that operator is not declared
        ({"filter[points][ne]": "1"}, "invalid_request"),
        ({"filter[points]": "three"}, "invalid_request"),
        ({"filter[points]": "1e400"}, "invalid_request"),
        ({"filter[weight][gte]": "nan"}, "invalid_request"),
        ({"filter[done]": "yes"}, "invalid_request"),
        ({"filter[due_at][gte]": "tomorrow"}, "invalid_request"),
        ({"filter[day][gte]": "2025/02/03"}, "invalid_request"),
        ({"filter[points][gte][x]": "1"}, "invalid_request"),
        ({"filter": "points"}, "invalid_request"),
        ({"filter[done]": "true", "changes_since": "beginning"}, "invalid_request"),
        ({"view": "everything"}, "invalid_request"),
        ({"view": "brief", "fields": "title"}, "invalid_request"),
        ({"sort": "title"}, "invalid_request"),
        ({"sort": "-due_at", "order": "asc"}, "invalid_request"),
        ({"expand": "history"}, "invalid_expand"),  # a relation, but not expandable
        ({"expand": "nothing"}, "invalid_expand"),
        ({"expand_limit[steps]": "2"}, "invalid_expand"),  # without expand=steps
        ({"expand": "detail", "expand_limit[detail]": "2"}, "invalid_expand"),  # has_one
        ({"expand": "steps", "expand_limit[steps]": "0"}, "invalid_expand"),
        ({"expand": "steps", "expand_limit": "2"}, "invalid_expand"),
    ],
)
def test_a_bad_owner_query_is_refused(
    shared_tasks: TaskWorld, params: dict[str, str], code: str
) -> None:
    assert_error(shared_tasks.get("/v1/streams/tasks/records", params=params), 400, code)


def test_a_filter_given_twice_is_refused(shared_tasks: TaskWorld) -> None:
    response = shared_tasks.get(
        "/v1/streams/tasks/records", params=[("filter[points]", "1"), ("filter[points]", "2")]
    )
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/streams/tasks/records", {"filter[title]": "ana task 1"}),
        ("/v1/streams/tasks/records", {"filter[nothing][gte]": "1"}),  # refused before lookup
        ("/v1/streams/tasks/records", {"filter[points][gte]": "1"}),
        ("/v1/streams/tasks/records", {"view": "brief"}),
        ("/v1/streams/tasks/records", {"expand": "steps"}),
        ("/v1/streams/tasks/records", {"expand[]": "steps"}),
        ("/v1/streams/tasks/records", {"expand_limit[steps]": "1"}),
        ("/v1/streams/tasks/records", {"sort": "-due_at"}),
        ("/v1/streams/tasks/records/t1", {"expand": "detail"}),
        ("/v1/streams/tasks/aggregate", {"metric": "count", "filter[done]": "true"}),
    ],
)
def test_a_client_is_refused_every_owner_parameter(
    shared_tasks: TaskWorld, path: str, params: dict[str, str]
) -> None:
    token = shared_tasks.grant([{"name": "tasks", "connection_ids": [shared_tasks.conns["ana"]]}])
    error = assert_error(shared_tasks.get(path, token, params), 400, "invalid_request")
    assert "owner only" in error["message"]


def test_a_view_reads_its_fields(shared_tasks: TaskWorld) -> None:
    found = shared_tasks.listed(params={"view": "brief"})
    assert found and all(set(r["data"]) == {"task_id", "title"} for r in found)
    single = shared_tasks.get("/v1/streams/tasks/records/t2", params={
        "view": "brief", "connection_id": shared_tasks.conns["ana"]}).json()
    assert set(single["data"]) == {"task_id", "title"}


def test_expansions_bring_related_records_of_the_same_connection(shared_tasks: TaskWorld) -> None:
    w = shared_tasks
    found = w.listed(params={"expand": "steps,detail", "connection_id": w.conns["ben"]})
    steps = w.data["ben"]["steps"]
    details = {d["task_id"]: d for d in w.data["ben"]["details"]}
    for task in found:
        expected = sorted(s["step_id"] for s in steps if s["task_id"] == task["id"])
        listed = task["expanded"]["steps"]
        assert listed["object"] == "list"
        assert [s["id"] for s in listed["data"]] == sorted(expected, reverse=True)[:2]
        assert listed["has_more"] == (len(expected) > 2)
        assert all(s["connection_id"] == w.conns["ben"] for s in listed["data"])
        detail = task["expanded"]["detail"]
        if task["id"] in details:
            assert detail["data"] == details[task["id"]] and detail["stream"] == "details"
        else:
            assert detail is None
    more = w.get("/v1/streams/tasks/records", params={
        "expand": "steps", "expand_limit[steps]": "50", "connection_id": w.conns["ana"]}).json()
    assert more["meta"]["warnings"][0]["code"] == "limit_clamped"
    assert max(len(t["expanded"]["steps"]["data"]) for t in more["data"]) == 3
    single = w.get("/v1/streams/tasks/records/t3", params={
        "expand": "steps", "expand_limit[steps]": "1", "connection_id": w.conns["ana"]}).json()
    assert [s["data"]["task_id"] for s in single["expanded"]["steps"]["data"]] == ["t3"]
    assert single["expanded"]["steps"]["has_more"] is True


def test_sort_is_the_signed_form_of_order(shared_tasks: TaskWorld) -> None:
    w = shared_tasks
    ids = [r["id"] for r in w.listed(params={"order": "asc"})]
    assert [r["id"] for r in w.listed(params={"sort": "due_at"})] == ids
    assert [r["id"] for r in w.listed(params={"sort": "-due_at"})] == ids[::-1]
    assert [r["id"] for r in w.listed(params={"sort": "-due_at", "order": "desc"})] == ids[::-1]


def test_aggregation_counts_what_the_owners_filters_keep(shared_tasks: TaskWorld) -> None:
    body = shared_tasks.get("/v1/streams/tasks/aggregate", params={
        "metric": "count", "filter[done]": "true", "filter[points][gte]": "1"}).json()
    kept = truth(shared_tasks, lambda t: t["done"] and t.get("points", -1) >= 1)
    assert body["value"] == len(kept)


def test_stream_metadata_declares_filters_relations_and_views(shared_tasks: TaskWorld) -> None:
    w = shared_tasks
    owner = w.get("/v1/streams/tasks").json()
    points = owner["field_capabilities"]["points"]
    assert points["exact_filter"] == {"declared": True, "usable": True}
    assert points["range_filter"] == {"declared": True, "usable": True,
                                      "operators": ["gte", "gt", "lte", "lt"]}
    assert owner["field_capabilities"]["tags"]["exact_filter"]["declared"] is False
    assert owner["query"]["range_filters"]["weight"] == ["gte", "lt"]
    assert owner["query"]["expand"] == [
        {"name": "steps", "default_limit": 2, "max_limit": 3}, {"name": "detail"}
    ]
    assert [r["name"] for r in owner["relationships"]] == ["steps", "detail", "history"]
    assert owner["views"] == [{"id": "brief", "label": "Titles", "fields": ["task_id", "title"]}]
    assert [(e["name"], e["usable"]) for e in owner["expand_capabilities"]] == [
        ("steps", True), ("detail", True)
    ]
    token = w.grant([{"name": "tasks", "fields": ["task_id", "title", "points"]}])
    client = w.get("/v1/streams/tasks", token).json()
    assert client["field_capabilities"]["points"]["range_filter"]["usable"] is False
    assert client["field_capabilities"]["points"]["range_filter"]["reason"] == "owner_only"
    assert client["field_capabilities"]["done"]["exact_filter"]["reason"] == "field_not_granted"
    assert {e["reason"] for e in client["expand_capabilities"]} == {"owner_only"}
    compact = w.get("/v1/schema", params={"view": "compact", "stream": "tasks",
                                           "connector_id": "tasks-export"}).json()
    [connector] = compact["connectors"]
    [stream] = connector["streams"]
    assert stream["field_capabilities"]["points"] == "t=integer,f=eq|gte|gt|lte|lt"
