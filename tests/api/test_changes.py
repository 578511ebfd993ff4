"""changes_since: one token over every readable connection, grant-projected change detection,
tombstones, pinned sessions and expired tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ownstream.reads import cursors
from tests.services.postgres import backend_environment

from .conftest import World, assert_error, build_standard, make_notes

VISIBLE = ["note_id", "title", "tag", "updated_at"]  # body and secret are withheld
Key = tuple[str, str]


def sync(w: World, token: str, since: str, *, limit: int = 5, **extra: Any) -> tuple[
    list[dict[str, Any]], str
]:
    """Follow one change session to its end; return its records and next_changes_since."""
    params: dict[str, Any] = {"changes_since": since, "limit": limit, **extra}
    out: list[dict[str, Any]] = []
    for page in w.page_all("/v1/streams/notes/records", token, params):
        assert page["object"] == "list"
        if page["has_more"]:
            assert page["next_cursor"] and "next_changes_since" not in page
        else:
            assert page["next_changes_since"] and "next_cursor" not in page
            out.extend(page["data"])
            return out, page["next_changes_since"]
        out.extend(page["data"])
    raise AssertionError("unreachable")


def keyed(records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    found = {(r["connection_id"], r["id"]): r for r in records}
    assert len(found) == len(records), "a record appears twice in one change session"
    return found


def edit(notes: list[dict[str, Any]], note_id: str, **changes: Any) -> list[dict[str, Any]]:
    return [{**n, **changes} if n["note_id"] == note_id else n for n in notes]


def test_changes_across_connections_with_updates_and_deletes(world: World) -> None:
    w = world
    alice, bob, carol = (w.conns[a] for a in ("alice", "bob", "carol"))
    _, token = w.grant([{"name": "notes", "fields": VISIBLE}])

    initial, token1 = sync(w, token, "beginning")
    assert set(keyed(initial)) == {(c, f"n{i:02d}") for c in (alice, bob, carol)
                                  for i in range(1, 13)}
    assert all(set(r["data"]) == set(VISIBLE) for r in initial)

    # alice (notes-api): a visible change, two hidden-only changes, a delete
    a_notes = make_notes("alice")
    a_notes = edit(a_notes, "n01", title="renamed by alice")
    a_notes = edit(a_notes, "n02", secret="a brand new secret")
    a_notes = edit(a_notes, "n03", body="a brand new body")
    w.run_notes("alice", [n for n in a_notes if n["note_id"] != "n04"], deleted=["n04"])
    # bob (notes-api): a visible tag change and a delete
    b_notes = edit(make_notes("bob", month_offset=3), "n05", tag="pinned")
    w.run_notes("bob", [n for n in b_notes if n["note_id"] != "n06"], deleted=["n06"])
    # carol (notes-export, another connector emitting the same stream): a new export
    c_notes = edit(make_notes("carol", month_offset=6), "n07", title="carol renamed this")
    c_notes.append({"note_id": "n13", "title": "brand new", "updated_at": "2025-05-05T00:00:00Z"})
    w.import_notes("carol", [n for n in c_notes if n["note_id"] != "n08"], deleted=["n08"])

    changed, token2 = sync(w, token, token1, limit=2)
    got = keyed(changed)
    assert set(got) == {
        (alice, "n01"), (alice, "n04"), (bob, "n05"), (bob, "n06"),
        (carol, "n07"), (carol, "n08"), (carol, "n13"),
    }, "a change of a withheld field (alice n02, n03) must not be reported"
    assert got[(alice, "n01")]["data"]["title"] == "renamed by alice"
    assert set(got[(alice, "n01")]["data"]) == set(VISIBLE)
    assert got[(bob, "n05")]["data"]["tag"] == "pinned"
    assert got[(carol, "n07")]["data"]["title"] == "carol renamed this"
    assert got[(carol, "n13")]["data"]["title"] == "brand new"
    for key in ((alice, "n04"), (bob, "n06"), (carol, "n08")):
        tombstone = got[key]
        assert tombstone["deleted"] is True and tombstone["deleted_at"]
        assert "data" not in tombstone
        assert tombstone["object"] == "record" and tombstone["stream"] == "notes"
        assert tombstone["connector_instance_id"] == key[0]
    assert got[(alice, "n04")]["display_name"] == "Alice notebook"
    assert "display_name" not in got[(bob, "n06")]
    # non-deleted entries carry no deletion marker
    assert "deleted" not in got[(alice, "n01")]

    # nothing new since: an empty terminal page that still carries a token
    empty = w.cget("/v1/streams/notes/records", token, {"changes_since": token2}).json()
    assert empty["data"] == [] and empty["has_more"] is False
    assert empty["next_changes_since"]

    # the owner sees every field, so the hidden-only changes are changes for the owner
    owner_changes, _ = sync(w, w.owner_token, token1, limit=50)
    assert {(alice, "n02"), (alice, "n03")} <= set(keyed(owner_changes))

    # deleted records are gone from lists, detail and search, for client and owner
    listed = {(r["connection_id"], r["id"]) for r in w.cget(
        "/v1/streams/notes/records", token, {"limit": 100}).json()["data"]}
    assert (alice, "n04") not in listed and (carol, "n13") in listed
    assert_error(w.cget("/v1/streams/notes/records/n04", token, {"connection_id": alice}),
                 404, "not_found")


def test_a_hidden_only_change_is_invisible_but_a_later_visible_one_is_not(world: World) -> None:
    w = world
    alice = w.conns["alice"]
    _, token = w.grant([{"name": "notes", "fields": VISIBLE, "connection_ids": [alice]}])
    _, since = sync(w, token, "beginning", limit=100)
    notes = edit(make_notes("alice"), "n09", secret="changed secret", body="changed body")
    w.run_notes("alice", notes)
    nothing, since2 = sync(w, token, since)
    assert nothing == []
    w.run_notes("alice", edit(notes, "n09", title="now visible"))
    changed, _ = sync(w, token, since2)
    assert [(r["id"], r["data"]["title"]) for r in changed] == [("n09", "now visible")]
    # the fields parameter narrows change detection too
    w.run_notes("alice", edit(edit(notes, "n09", title="now visible"), "n10", tag="x"))
    by_title, _ = sync(w, token, since2, fields="title")
    assert [r["id"] for r in by_title] == ["n09"]
    # the schema's required note_id always comes along
    assert all(set(r["data"]) == {"note_id", "title"} for r in by_title)


def test_change_sessions_are_pinned_to_their_start(world: World) -> None:
    w = world
    bob = w.conns["bob"]
    _, token = w.grant([{"name": "notes", "fields": VISIBLE}])
    first = w.cget("/v1/streams/notes/records", token,
                   {"changes_since": "beginning", "limit": 10}).json()
    assert first["has_more"]
    # a change arrives mid-session
    w.run_notes("bob", edit(make_notes("bob", month_offset=3), "n12", title="mid-session"))
    seen = list(first["data"])
    params = {"changes_since": "beginning", "limit": 10, "cursor": first["next_cursor"]}
    for page in w.page_all("/v1/streams/notes/records", token, params):
        seen.extend(page["data"])
        last = page
    got = keyed(seen)
    assert len(got) == 36
    # the session started before the change, so it reports bob's n12 once, as it stood when
    # read (current data) but positioned by its original insert
    assert (bob, "n12") in got
    following = w.cget("/v1/streams/notes/records", token,
                       {"changes_since": last["next_changes_since"]}).json()
    assert [(r["connection_id"], r["id"], r["data"]["title"]) for r in following["data"]] == [
        (bob, "n12", "mid-session")
    ]


def test_changes_respect_time_window_and_resources(world: World) -> None:
    w = world
    alice, carol = w.conns["alice"], w.conns["carol"]
    notes = make_notes("alice")
    inside = {n["note_id"] for n in notes if "2025-03-01" <= n["updated_at"] < "2025-07-01"}
    assert inside and len(inside) < 12
    _, windowed = w.grant([{"name": "notes", "fields": VISIBLE, "connection_ids": [alice],
                            "time_range": {"since": "2025-03-01T00:00:00Z",
                                           "until": "2025-07-01T00:00:00Z"}}])
    _, limited = w.grant([{"name": "notes", "fields": VISIBLE, "connection_ids": [alice, carol],
                           "resources": ["n01", "n02"]}])
    initial, since_w = sync(w, windowed, "beginning")
    assert {r["id"] for r in initial} == inside
    initial, since_r = sync(w, limited, "beginning")
    assert set(keyed(initial)) == {(c, k) for c in (alice, carol) for k in ("n01", "n02")}

    outside = sorted({n["note_id"] for n in notes} - inside - {"n01", "n02"})
    edited = notes
    for note_id in [*sorted(inside), *outside, "n01"]:
        edited = edit(edited, note_id, title=f"edited {note_id}")
    gone = [outside[0], sorted(inside)[0], "n02"]
    w.run_notes("alice", [n for n in edited if n["note_id"] not in gone], deleted=gone)

    changed, _ = sync(w, windowed, since_w)
    assert {r["id"] for r in changed} == inside
    assert all(
        "2025-03-01" <= r["data"]["updated_at"] < "2025-07-01" for r in changed if "data" in r
    )
    assert [r["id"] for r in changed if r.get("deleted")] == [sorted(inside)[0]]
    changed, _ = sync(w, limited, since_r)
    assert {(r["connection_id"], r["id"], bool(r.get("deleted"))) for r in changed} == {
        (alice, "n01", False), (alice, "n02", True)
    }


def test_expired_and_foreign_tokens(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    w = world
    _, token = w.grant([{"name": "notes", "fields": VISIBLE}])
    _, since = sync(w, token, "beginning", limit=100)

    # a token from another database (another epoch) is expired here
    with backend_environment(request, "postgres_databases"):
        other = build_standard(tmp_path / "other")
    _, other_token = other.grant([{"name": "notes", "fields": VISIBLE}])
    _, foreign = sync(other, other_token, "beginning", limit=100)
    error = assert_error(
        w.cget("/v1/streams/notes/records", token, {"changes_since": foreign}), 410,
        "cursor_expired",
    )
    assert error["param"] == "changes_since"

    # a token issued for another stream
    _, lh_token = w.grant([{"name": "notes"}, {"name": "listening_history"}])
    lh = w.cget("/v1/streams/listening_history/records", lh_token,
                {"changes_since": "beginning", "limit": 100}).json()
    while lh["has_more"]:
        lh = w.cget("/v1/streams/listening_history/records", lh_token,
                    {"changes_since": "beginning", "limit": 100,
                     "cursor": lh["next_cursor"]}).json()
    assert_error(
        w.cget("/v1/streams/notes/records", lh_token,
               {"changes_since": lh["next_changes_since"]}),
        410, "cursor_expired",
    )

    # history compacted past the token
    assert w.cget("/v1/streams/notes/records", token, {"changes_since": since}).status_code == 200
    payload = cursors.decode(w.home.vault, "since", since)
    with w.db() as db:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('change_floor', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(payload["seq"] + 1),),
        )
    assert_error(
        w.cget("/v1/streams/notes/records", token, {"changes_since": since}), 410,
        "cursor_expired",
    )
    # beginning always works
    assert w.cget("/v1/streams/notes/records", token,
                  {"changes_since": "beginning"}).status_code == 200

    # not a token at all, or a page cursor used as a token
    assert_error(w.cget("/v1/streams/notes/records", token, {"changes_since": "yesterday"}),
                 400, "invalid_cursor")
    page = w.cget("/v1/streams/notes/records", token, {"limit": 2}).json()
    assert_error(
        w.cget("/v1/streams/notes/records", token, {"changes_since": page["next_cursor"]}),
        400, "invalid_cursor",
    )
    # a session cursor for another stream, or forged
    session = w.cget("/v1/streams/notes/records", token,
                     {"changes_since": "beginning", "limit": 2}).json()
    assert_error(
        w.cget("/v1/streams/listening_history/records", lh_token,
               {"changes_since": "beginning", "cursor": session["next_cursor"]}),
        400, "invalid_cursor",
    )
    epoch = w.store.epoch()
    forged = cursors.encode(w.home.vault, "changes", {"s": "notes", "e": epoch, "from": "0"})
    assert_error(
        w.cget("/v1/streams/notes/records", token,
               {"changes_since": "beginning", "cursor": forged}),
        400, "invalid_cursor",
    )


def test_last_updated_does_not_reveal_a_hidden_only_change(world: World) -> None:
    """/v1/streams last_updated moves with visible changes only, windowed or not."""
    w = world
    alice = w.conns["alice"]
    _, plain = w.grant([{"name": "notes", "fields": VISIBLE, "connection_ids": [alice]}])
    _, windowed = w.grant([{"name": "notes", "fields": VISIBLE, "connection_ids": [alice],
                            "time_range": {"since": "2025-01-01T00:00:00Z"}}])
    _, everything = w.grant([{"name": "notes", "connection_ids": [alice]}])

    def last(token: str) -> str:
        entries = w.cget("/v1/streams", token).json()["data"]
        assert len(entries) == 1
        value: str = entries[0]["last_updated"]
        return value

    before = {t: last(t) for t in (plain, windowed, everything)}
    assert before[plain] and before[windowed]
    notes = edit(make_notes("alice"), "n02", secret="moved")
    w.run_notes("alice", notes)
    assert last(plain) == before[plain]
    assert last(windowed) == before[windowed]
    assert last(everything) > before[everything]  # that grant sees `secret`
    w.run_notes("alice", edit(notes, "n02", title="visible now"))
    assert last(plain) > before[plain] and last(windowed) > before[windowed]
    # a delete is a visible change too
    moved = last(plain)
    w.run_notes("alice", [n for n in notes if n["note_id"] != "n05"], deleted=["n05"])
    assert last(plain) > moved


def test_emitted_at_does_not_reveal_a_hidden_only_change(world: World) -> None:
    w = world
    alice = w.conns["alice"]
    _, token = w.grant([{"name": "notes", "fields": VISIBLE, "connection_ids": [alice]}])
    path = "/v1/streams/notes/records/n02"
    before = w.cget(path, token, {"connection_id": alice}).json()
    w.run_notes("alice", edit(make_notes("alice"), "n02", secret="moved"))
    after = w.cget(path, token, {"connection_id": alice}).json()
    assert after["data"] == before["data"]
    assert after["emitted_at"] == before["emitted_at"]
