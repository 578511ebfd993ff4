"""Merged fan-in: one stably ordered sequence over several connections, with a real cursor."""

from __future__ import annotations

from typing import Any

import pytest

from ownstream.dev.spotify_data import add_plays

from .conftest import World, make_notes

LH = "listening_history"
Key = tuple[str, str]


def collect(w: World, token: str, stream: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for page in w.page_all(f"/v1/streams/{stream}/records", token, params):
        assert len(page["data"]) <= params.get("limit", 25)
        if page["has_more"]:
            assert page["next_cursor"] and len(page["data"]) == params.get("limit", 25)
        else:
            assert "next_cursor" not in page
        out.extend(page["data"])
    return out


def expected_order(w: World, stream: str, connections: set[str], order: str) -> list[Key]:
    """(cursor value, connection, key) in the page order; records without a cursor value come
    last in either order (PDPP core §8: null cursor values sort after present ones)."""
    rows = [r for r in w.rows(stream) if r["connection_id"] in connections]
    ordered = []
    for missing in (False, True):
        part = [r for r in rows if (r["cursor_value"] == "") == missing]
        part.sort(
            key=lambda r: (r["cursor_value"], r["connection_id"], r["record_key"]),
            reverse=order == "desc",
        )
        ordered += part
    return [(r["connection_id"], r["record_key"]) for r in ordered]


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [3, 7, 100])
def test_paging_a_merged_fan_in_returns_every_record_once(
    shared_world: World, order: str, limit: int
) -> None:
    w = shared_world
    three = {w.conns[u] for u in ("ada.lind", "bo.ek", "cy.rask")}
    _, token = w.grant([{"name": LH}])
    records = collect(w, token, LH, {"limit": limit, "order": order})
    keys = [(r["connection_id"], r["id"]) for r in records]
    assert len(keys) == len(set(keys)), "a record came back twice"
    # every record, in (played_at, connection_id, play_id) order, merged across connections
    assert keys == expected_order(w, LH, three, order)
    assert {c for c, _ in keys} == three
    played = [r["data"]["played_at"] for r in records]
    assert played == sorted(played, reverse=order == "desc")
    # and again: the same sequence (stable)
    again = collect(w, token, LH, {"limit": limit, "order": order})
    assert [(r["connection_id"], r["id"]) for r in again] == keys


def test_default_order_is_desc_and_pages_interleave_connections(shared_world: World) -> None:
    w = shared_world
    _, token = w.grant([{"name": LH}])
    first = w.cget(f"/v1/streams/{LH}/records", token, {"limit": 100}).json()
    played = [r["data"]["played_at"] for r in first["data"]]
    assert played == sorted(played, reverse=True)
    assert len({r["connection_id"] for r in first["data"]}) == 3  # merged, not concatenated


def test_owner_fan_in_and_narrowing(shared_world: World) -> None:
    w = shared_world
    everyone = collect(w, w.owner_token, "notes", {"limit": 5, "order": "asc"})
    all_notes = {w.conns[a] for a in ("alice", "bob", "carol")}
    assert [(r["connection_id"], r["id"]) for r in everyone] == expected_order(
        w, "notes", all_notes, "asc"
    )
    only_bob = collect(w, w.owner_token, "notes",
                       {"limit": 5, "order": "asc", "connection_id": w.conns["bob"]})
    assert [(r["connection_id"], r["id"]) for r in only_bob] == expected_order(
        w, "notes", {w.conns["bob"]}, "asc"
    )


def test_ties_on_the_cursor_value_are_broken_by_connection_and_key(world: World) -> None:
    """Every notes account has n01..n12; give two of them identical timestamps."""
    w = world
    same = make_notes("alice")
    bob = [{**n, "title": n["title"].replace("alice", "bob")} for n in same]
    w.run_notes("bob", bob)
    _, token = w.grant([{"name": "notes"}])
    for order in ("asc", "desc"):
        records = collect(w, token, "notes", {"limit": 4, "order": order})
        keys = [(r["connection_id"], r["id"]) for r in records]
        assert keys == expected_order(
            w, "notes", {w.conns[a] for a in ("alice", "bob", "carol")}, order
        )
        assert len(keys) == len(set(keys)) == 36


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_survives_concurrent_ingest(world: World, order: str) -> None:
    """Between page requests: a new listener is imported (a connection outside the grant) and
    a newer archive of a granted listener adds plays. Nothing is lost or repeated."""
    w = world
    three = {w.conns[u] for u in ("ada.lind", "bo.ek", "cy.rask")}
    _, token = w.grant([{"name": LH}])
    before = set(expected_order(w, LH, three, order))
    seen: list[Key] = []
    params: dict[str, Any] = {"limit": 20, "order": order}
    pages = 0
    while True:
        body = w.cget(f"/v1/streams/{LH}/records", token, params).json()
        seen.extend((r["connection_id"], r["id"]) for r in body["data"])
        pages += 1
        if pages == 2:
            w.add_spotify("dee.vik", 4)
            add_plays(w.users["ada.lind"], 15, seed=99)
            w.import_spotify("ada.lind")
        if pages == 4:
            add_plays(w.users["cy.rask"], 10, seed=98)
            w.import_spotify("cy.rask")
        if not body["has_more"]:
            break
        params["cursor"] = body["next_cursor"]
    assert pages > 4
    assert len(seen) == len(set(seen)), "a record came back twice"
    assert before <= set(seen), f"lost {len(before - set(seen))} records"
    assert {c for c, _ in seen} <= three  # the later connection is not in the grant
    after = set(expected_order(w, LH, three, order))
    new = after - before
    assert len(new) == 25
    if order == "asc":
        # the new plays are the newest: an ascending reader reaches them
        assert new <= set(seen)
    else:
        assert not new & set(seen)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_survives_interleaved_inserts(world: World, order: str) -> None:
    """New notes land both behind and ahead of the cursor, in every connection."""
    w = world
    _, token = w.grant([{"name": "notes", "fields": ["note_id", "updated_at"]}])
    conns = {w.conns[a] for a in ("alice", "bob", "carol")}
    before = set(expected_order(w, "notes", conns, order))
    seen: list[Key] = []
    params: dict[str, Any] = {"limit": 5, "order": order}
    pages = 0
    while True:
        body = w.cget("/v1/streams/notes/records", token, params).json()
        seen.extend((r["connection_id"], r["id"]) for r in body["data"])
        pages += 1
        if pages in (2, 4):
            extra = [
                {"note_id": f"x{pages}{m:02d}", "title": "late", "tag": "new",
                 "updated_at": f"2025-{m:02d}-15T12:00:00.000Z"}
                for m in range(1, 13)
            ]
            w.run_notes("bob", make_notes("bob", month_offset=3) + extra)
            w.import_notes("carol", make_notes("carol", month_offset=6) + extra)
        if not body["has_more"]:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
    after = set(expected_order(w, "notes", conns, order))
    assert len(after - before) == 48
    # some inserts land ahead of the cursor and are read, the rest behind it and are not
    assert 0 < len(set(seen) - before) < 48


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 3, 100])
def test_records_without_a_cursor_value_come_last_in_both_orders(
    world: World, order: str, limit: int
) -> None:
    w = world
    for account in ("alice", "bob"):
        notes = make_notes(account, month_offset=3 if account == "bob" else 0)
        for note in notes[::3]:
            note.pop("updated_at")
        w.run_notes(account, notes)
    _, token = w.grant([{"name": "notes", "connection_ids": [w.conns["alice"], w.conns["bob"]]}])
    got = collect(w, token, "notes", {"order": order, "limit": limit})
    keys = [(r["connection_id"], r["id"]) for r in got]
    assert keys == expected_order(w, "notes", {w.conns["alice"], w.conns["bob"]}, order)
    missing = ["updated_at" not in r["data"] for r in got]
    assert any(missing) and missing == sorted(missing)  # every one without a value is last
