"""The store contract, backend by backend: stages and publication, abandonment, leases, pages,
change feeds, search, deletes, grants, tokens, schedules, audit and access counts."""

from __future__ import annotations

import pytest

from ownstream.errors import ConnectionNotFound, ConnectionRunActive, NotFound, RunLeaseLost
from ownstream.grants.tokens import new_token
from ownstream.model import Grant, ReadScope, RecordRule, RecordWrite, StreamDefinition, StreamGrant
from ownstream.search import parse_query
from ownstream.store.base import AccessCount, DeleteCounts, RecordPosition

from .conftest import NOTES, Harness, gone, note


def scope(harness: Harness, *connection_ids: str, **extra: object) -> ReadScope:
    return ReadScope(NOTES, connection_ids, NOTES.fields, **extra)  # type: ignore[arg-type]


# -- stages --------------------------------------------------------------------------------


def test_a_stage_is_invisible_until_published_then_visible_at_once(harness: Harness) -> None:
    a = harness.connection("a")
    stage = harness.stage(a)
    stats = harness.write(stage, [note("n1", title="one"), note("n2", title="two")])
    assert stats.new == 2
    harness.write(stage, [note("n3", title="three")])
    assert harness.live([a]) == {}
    assert harness.store.stream_counts([a]) == []
    assert harness.store.search([scope(harness, a)], parse_query("one"), limit=5, before=None) == (
        [],
        False,
    )
    harness.publish(stage, states={"notes": {"after": "n3"}})
    assert sorted(k for _, k in harness.live([a])) == ["n1", "n2", "n3"]
    [count] = harness.store.stream_counts([a])
    assert (count.stream, count.record_count) == ("notes", 3)
    assert harness.store.connection_state(a, "notes-api") == {"notes": {"after": "n3"}}
    [run] = harness.store.runs(a)
    assert run.status == "succeeded" and run.ended_at is not None
    assert harness.store.active_lease(a) is None


def test_a_staged_update_leaves_the_published_version_readable(harness: Harness) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("n1", title="old", body="kept")])
    stage = harness.stage(a)
    harness.write(stage, [note("n1", title="new"), gone("n1"), note("n1", title="newer")])
    assert harness.live([a]) == {(a, "n1"): {"id": "n1", "title": "old", "body": "kept"}}
    [hit], _ = harness.store.search([scope(harness, a)], parse_query("old"), limit=5, before=None)
    assert hit.record_key == "n1"
    harness.publish(stage)
    assert harness.live([a]) == {(a, "n1"): {"id": "n1", "title": "newer"}}
    assert harness.store.search([scope(harness, a)], parse_query("old"), limit=5, before=None)[
        0
    ] == []
    [hit], _ = harness.store.search([scope(harness, a)], parse_query("newer"), limit=5, before=None)
    assert hit.record_key == "n1"


def test_an_abandoned_stage_leaves_exactly_what_was_published(harness: Harness) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("keep", title="kept"), note("edit", title="before"),
                        note("drop", title="stays")], connector="notes-api")
    other_path = harness.stage(a, "notes-export", "owner_artifact")
    harness.write(other_path, [note("keep", title="kept"), note("edit", title="after"),
                               gone("drop"), note("new", title="fresh")])
    harness.store.abandon(other_path, {"code": "corrupt_artifact", "message": "boom"})
    assert harness.live([a]) == {
        (a, "keep"): {"id": "keep", "title": "kept"},
        (a, "edit"): {"id": "edit", "title": "before"},
        (a, "drop"): {"id": "drop", "title": "stays"},
    }
    for word, expected in (("fresh", []), ("after", []), ("before", ["edit"])):
        hits, _ = harness.store.search(
            [scope(harness, a)], parse_query(word), limit=5, before=None
        )
        assert [h.record_key for h in hits] == expected, word
    # the abandoned path's sighting of `keep` did not stay: the API may still delete it alone
    stage = harness.stage(a)
    assert harness.write(stage, [gone("keep")]).deleted == 1
    harness.publish(stage)
    assert harness.store.record_provenance(a, "notes", "edit")[0].connector_key == "notes-api"


def test_a_new_stage_of_a_connection_clears_its_abandoned_one_first(harness: Harness) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("n1", title="v1")])
    crashed = harness.stage(a)
    harness.write(crashed, [note("n1", title="half-written"), note("n2", title="orphan")])
    harness.clock.advance(3600)  # the process died: its lease went stale
    later = harness.stage(a)
    assert harness.write(later, [note("n1", title="v2")]).updated == 1  # merged on v1, not on the
    harness.publish(later)  # abandoned stage's version
    assert harness.live([a]) == {(a, "n1"): {"id": "n1", "title": "v2"}}
    runs = {r.run_id: r for r in harness.store.runs(a)}
    assert runs[crashed.run_id].status == "failed"
    assert runs[crashed.run_id].error == {
        "code": "run_stalled",
        "message": runs[crashed.run_id].error["message"],  # type: ignore[index]
    }


# -- leases --------------------------------------------------------------------------------


def test_a_live_lease_refuses_a_second_stage_and_a_stale_one_is_reclaimed(
    harness: Harness,
) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    first = harness.stage(a)
    with pytest.raises(ConnectionRunActive):
        harness.stage(a)
    sibling = harness.stage(b)  # a sibling is not blocked
    harness.clock.advance(30)
    harness.store.renew_lease(first)  # the heartbeat keeps it alive…
    harness.clock.advance(45)
    assert harness.store.reclaim_stalled() == [sibling.run_id]  # …and only it
    harness.clock.advance(61)
    reclaimed = harness.store.reclaim_stalled()
    assert first.run_id in reclaimed
    with pytest.raises(RunLeaseLost):
        harness.store.renew_lease(first)


def test_a_run_whose_lease_was_taken_over_writes_nothing(harness: Harness) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("n1", title="v1")])
    slow = harness.stage(a)
    harness.write(slow, [note("n2", title="early")])
    harness.clock.advance(120)
    winner = harness.stage(a)  # takes over the stale lease; the slow stage is abandoned
    with pytest.raises(RunLeaseLost):
        harness.write(slow, [note("n1", title="late")])
    with pytest.raises(RunLeaseLost):
        harness.publish(slow, states={"notes": "late"})
    harness.publish(winner)
    assert harness.live([a]) == {(a, "n1"): {"id": "n1", "title": "v1"}}
    assert harness.store.connection_state(a, "notes-api") == {}


# -- pages ---------------------------------------------------------------------------------


def test_pages_merge_connections_in_one_keyset_order(harness: Harness) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    harness.collect(a, [note(f"a{i}", at=f"2024-01-{i % 9 + 1:02d}T00:00:00Z") for i in range(20)])
    harness.collect(b, [note(f"b{i}", at=f"2024-01-{i % 9 + 1:02d}T00:00:00Z") for i in range(15)])
    harness.collect(b, [note("nocursor")])
    read = scope(harness, a, b)
    for order in ("asc", "desc"):
        seen: list[tuple[str, str, str]] = []
        after = None
        while True:
            page, more = harness.store.records_page(read, limit=7, order=order, after=after)
            seen += [(r.cursor_value, r.connection_id, r.record_key) for r in page]
            if not more:
                break
            last = page[-1]
            after = RecordPosition(last.cursor_value, last.connection_id, last.record_key)
        assert len(seen) == len(set(seen)) == 36
        # records without a cursor value come last, whichever the order
        valued = sorted((s for s in seen if s[0]), reverse=order == "desc")
        assert seen == valued + [s for s in seen if not s[0]]


def test_scopes_apply_fields_windows_and_resources(harness: Harness) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("old", at="2023-06-01T00:00:00Z", secret="s"),
                        note("new", at="2024-06-01T00:00:00Z", secret="s")])
    visible = harness.live([a], fields=("id", "at"), since="2024-01-01T00:00:00.000Z")
    assert visible == {(a, "new"): {"id": "new", "at": "2024-06-01T00:00:00Z"}}
    only = harness.live([a], resources=("old",))
    assert list(only) == [(a, "old")]
    assert harness.store.scoped_count(
        ReadScope(NOTES, (a,), NOTES.fields, since="2024-01-01T00:00:00.000Z")
    )[a][0] == 1


# -- change feeds --------------------------------------------------------------------------


def changes(harness: Harness, since: int, fields: tuple[str, ...], *ids: str) -> list[str]:
    read = ReadScope(NOTES, ids, fields)
    found, after = [], None
    upto = harness.store.change_horizon()
    while True:
        page, more = harness.store.changes_page(read, since=since, upto=upto, after=after, limit=3)
        found += [f"{c.record_key}{'-' if c.deleted else ''}" for c in page]
        if not more:
            return found
        after = page[-1].position


def test_a_change_feed_never_skips_a_stage_published_late(harness: Harness) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    slow = harness.stage(a)
    harness.write(slow, [note("a1", title="x")])  # written first…
    harness.collect(b, [note("b1", title="y")])  # …but b publishes first
    token = harness.store.change_horizon()
    assert changes(harness, 0, NOTES.fields, a, b) == ["b1"]
    harness.publish(slow)  # a publishes after the token was handed out: still after it
    assert changes(harness, token, NOTES.fields, a, b) == ["a1"]


def test_a_change_feed_hides_changes_of_withheld_fields_and_keeps_tombstones(
    harness: Harness,
) -> None:
    a = harness.connection("a")
    harness.collect(a, [note("n1", title="t", secret="s1"), note("n2", title="t")])
    token = harness.store.change_horizon()
    harness.collect(a, [note("n1", title="t", secret="s2"), gone("n2")])
    assert changes(harness, token, ("id", "title"), a) == ["n2-"]
    assert changes(harness, token, NOTES.fields, a) == ["n1", "n2-"]
    assert harness.store.visible_last_change(ReadScope(NOTES, (a,), ("id", "title")))


# -- search --------------------------------------------------------------------------------


def test_search_matches_only_granted_fields_of_granted_connections(harness: Harness) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    harness.collect(a, [note("n1", title="harbour", secret="lighthouse")])
    harness.collect(b, [note("n2", title="lighthouse")])
    hidden = ReadScope(NOTES, (a, b), ("id", "title"))
    hits, _ = harness.store.search([hidden], parse_query("lighthouse"), limit=5, before=None)
    assert [(h.connection_id, h.record_key) for h in hits] == [(b, "n2")]
    only_a = ReadScope(NOTES, (a,), NOTES.fields)
    hits, _ = harness.store.search([only_a], parse_query("lighthouse"), limit=5, before=None)
    assert [(h.connection_id, h.record_key) for h in hits] == [(a, "n1")]
    assert hits[0].data == {"id": "n1", "title": "harbour", "secret": "lighthouse"}


def test_search_pages_newest_first(harness: Harness) -> None:
    a = harness.connection("a")
    for i in range(7):
        harness.collect(a, [note(f"n{i}", title="common word")])
    read = scope(harness, a)
    found, before = [], None
    while True:
        hits, more = harness.store.search([read], parse_query("common"), limit=3, before=before)
        found += [h.record_key for h in hits]
        if not more:
            break
        before = hits[-1].record_id
    assert found == [f"n{i}" for i in reversed(range(7))]


# -- record rules --------------------------------------------------------------------------

PLAYS = StreamDefinition(
    name="plays",
    version=1,
    semantics="append_only",
    primary_key=("play_id",),
    schema={
        "type": "object",
        "properties": {
            "play_id": {"type": "string"},
            "at": {"type": "string"},
            "precision": {"type": "string"},
            "track": {"type": "string"},
            "ms": {"type": "integer"},
        },
    },
    cursor_field="at",
    consent_time_field="at",
)
RULE = RecordRule("plays-minute", 1, "plays", "at", 60, ("track",), "precision", ("minute",))


def test_a_record_rule_joins_a_coarse_entry_to_its_precise_record(harness: Harness) -> None:
    a = harness.connection("a")
    precise = RecordWrite(
        "plays",
        "p1",
        {"play_id": "p1", "at": "2024-03-01T10:15:42Z", "precision": "second", "track": "Song"},
        "2024-05-01T00:00:00.000Z",
    )
    coarse = RecordWrite(
        "plays",
        "c1",
        {"play_id": "c1", "at": "2024-03-01T10:15:00Z", "precision": "minute", "track": "SONG",
         "ms": 180_000},
        "2024-05-01T00:00:00.000Z",
    )
    first = harness.stage(a)
    harness.write(first, [precise], PLAYS, RULE)
    harness.publish(first)
    second = harness.stage(a, "plays-basic", "owner_artifact")
    stats = harness.write(second, [coarse], PLAYS, RULE)
    harness.publish(second)
    assert (stats.merged_with_existing, stats.new) == (1, 0)
    page, _ = harness.store.records_page(ReadScope(PLAYS, (a,), PLAYS.fields), limit=10)
    assert [(r.record_key, r.data.get("ms")) for r in page] == [("p1", 180_000)]


def play(key: str, at: str, precision: str, **extra: object) -> RecordWrite:
    data = {"play_id": key, "at": at, "precision": precision, "track": "Song", **extra}
    return RecordWrite("plays", key, data, "2024-05-01T00:00:00.000Z")


def test_held_coarse_twins_are_ambiguous_and_a_coarser_write_keeps_the_finer_time(
    harness: Harness,
) -> None:
    a = harness.connection("a")
    ordered = RecordRule(
        "plays-minute", 1, "plays", "at", 60, ("track",), "precision", ("minute",),
        precision_order=("minute", "second", "millisecond"),
    )
    first = harness.stage(a, "plays-basic", "owner_artifact")
    harness.write(
        first,
        [play("c1", "2024-03-01T10:15:00Z", "minute"), play("c2", "2024-03-01T10:15:00Z",
                                                            "minute", ms=1)],
        PLAYS,
        ordered,
    )
    harness.publish(first)
    # the precise play arrives after its two coarse twins: which one it is stays unknown
    second = harness.stage(a)
    stats = harness.write(second, [play("p1", "2024-03-01T10:15:42.123Z", "millisecond")],
                          PLAYS, ordered)
    harness.publish(second)
    assert (stats.ambiguous, stats.new) == (2, 1)
    # a write dated to the second never replaces the millisecond the record holds
    third = harness.stage(a)
    stats = harness.write(third, [play("p1", "2024-03-01T10:15:42Z", "second", ms=5)],
                          PLAYS, ordered)
    harness.publish(third)
    assert stats.updated == 1
    [found] = harness.store.record(ReadScope(PLAYS, (a,), PLAYS.fields), "p1")
    assert (found.data["at"], found.data["precision"], found.data["ms"]) == (
        "2024-03-01T10:15:42.123Z", "millisecond", 5
    )


# -- deletes -------------------------------------------------------------------------------


def test_a_deleted_connection_is_unreadable_at_once_and_its_id_never_returns(
    harness: Harness,
) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    harness.collect(a, [note("n1", title="gone soon"), note("n2", title="too")])
    harness.collect(b, [note("n1", title="stays")])
    running = harness.stage(a)
    with pytest.raises(ConnectionRunActive):
        harness.store.delete_connection(a, "owner")
    harness.clock.advance(120)  # its process died; the owner may now delete
    counts = harness.store.delete_connection(a, "owner")
    assert counts == DeleteCounts({"notes": 2}) and counts.records == 2
    with pytest.raises(ConnectionNotFound):
        harness.store.connection(a)
    assert harness.live([a, b]) == {(b, "n1"): {"id": "n1", "title": "stays"}}
    hits, _ = harness.store.search([scope(harness, a, b)], parse_query("too"), limit=5, before=None)
    assert hits == []
    with pytest.raises(RunLeaseLost):
        harness.write(running, [note("n3")])
    # the same identity gets a new id: a grant that named the old one reads nothing new
    again = harness.connection("a")
    assert again != a


# -- grants, tokens, schedules, audit, access -----------------------------------------------


def test_grants_and_their_tokens_are_issued_and_revoked_together(harness: Harness) -> None:
    a = harness.connection("a")
    grant = Grant(
        grant_id="grt_contract",
        client_id="app",
        purpose_code="https://example.org/p",
        access_mode="continuous",
        issued_at="2024-01-01T00:00:00.000Z",
        expires_at=None,
        streams=(StreamGrant("notes", (a,), ("id", "title")),),
    )
    secret, token = new_token("client", grant_id=grant.grant_id)
    harness.store.save_grant(grant, token)
    assert harness.store.grant(grant.grant_id) == grant
    found = harness.store.token(token.token_hash)
    assert found is not None and found.grant_id == grant.grant_id and secret.startswith("osc_")
    revoked = harness.store.revoke_grant(grant.grant_id)
    assert revoked.revoked_at is not None
    after = harness.store.token(token.token_hash)
    assert after is not None and after.revoked_at is not None
    with pytest.raises(NotFound):
        harness.store.grant("grt_missing")
    _, owner = new_token("owner", ttl_seconds=3600, label="laptop")
    harness.store.save_token(owner)
    assert [t.token_id for t in harness.store.tokens("owner")] == [owner.token_id]
    harness.store.note_token_use({owner.token_id: "2024-02-01T00:00:00.000Z"})
    harness.store.note_token_use({owner.token_id: "2024-01-01T00:00:00.000Z"})  # older: kept
    used = harness.store.token(owner.token_hash)
    assert used is not None and used.last_used_at == "2024-02-01T00:00:00.000Z"
    assert harness.store.revoke_token(owner.token_id).revoked_at is not None
    with pytest.raises(NotFound):
        harness.store.revoke_token("tok_missing")


def test_of_two_claims_of_one_due_slot_exactly_one_wins(harness: Harness) -> None:
    a = harness.connection("a")
    harness.store.put_schedule(
        a, enabled=True, interval_seconds=60, jitter_seconds=0,
        next_due_at="2024-01-01T00:00:00.000Z", origin="owner",
    )
    [due] = harness.store.due_schedules("2024-01-01T00:01:00.000Z")
    assert due.next_due_at is not None
    claims = [
        harness.store.claim_schedule(a, due.next_due_at, "2024-01-01T00:02:00.000Z")
        for _ in range(2)
    ]
    assert claims == [True, False]
    harness.store.record_schedule_outcome(
        a, succeeded=False, backoff_until="2024-01-01T01:00:00.000Z"
    )
    schedule = harness.store.schedule(a)
    assert schedule is not None and schedule.consecutive_failures == 1


def test_audit_and_access_counts(harness: Harness) -> None:
    a = harness.connection("a")
    for operation in ("rename", "run", "rename"):
        harness.store.append_audit(
            actor_kind="owner", connection_id=a, operation=operation, outcome="succeeded",
            summary={"n": operation},
        )
    harness.store.append_audit(
        actor_kind="client", connection_id=None, operation="grant_revoke", outcome="succeeded",
        summary={},
    )
    renames = harness.store.audit_events(connection_id=a, operation="rename")
    assert [e.summary for e in renames] == [{"n": "rename"}, {"n": "rename"}]
    assert [e.operation for e in harness.store.audit_events(actor_kind="client")] == [
        "grant_revoke"
    ]
    # paging by number: newest first, each page below the last event of the one before
    newest_two = harness.store.audit_events(connection_id=a, limit=2)
    assert [e.operation for e in newest_two] == ["rename", "run"]
    rest = harness.store.audit_events(connection_id=a, before=newest_two[-1].seq, limit=2)
    assert [e.summary for e in rest] == [{"n": "rename"}]
    assert rest[0].seq < newest_two[-1].seq
    vocabulary = harness.store.audit_vocabulary()
    assert vocabulary.actor_kinds == ("client", "owner")
    assert vocabulary.operations == ("grant_revoke", "rename", "run")
    assert vocabulary.connection_ids == (a,)
    day = "2024-03-01"
    harness.store.add_access_counts([AccessCount(day, "app", "grt_1", "notes", a, 1, 10)])
    harness.store.add_access_counts([AccessCount(day, "app", "grt_1", "notes", a, 2, 5)])
    assert harness.store.access_log(client_id="app") == [
        AccessCount(day, "app", "grt_1", "notes", a, 3, 15)
    ]
    assert harness.store.access_log(since="2024-03-02") == []


def test_daily_counts_are_published_live_records_per_connection_and_day(
    harness: Harness,
) -> None:
    a, b = harness.connection("a"), harness.connection("b")
    harness.collect(a, [note("1", at="2024-05-01T08:00:00Z"), note("2", at="2024-05-01T23:59:00Z"),
                        note("3", at="2024-05-02T00:00:00Z"), note("4", at="2024-04-30T12:00:00Z")])
    harness.collect(b, [note("9", at="2024-05-02T10:00:00Z"), note("10")])
    staged = harness.stage(a)
    harness.write(staged, [note("5", at="2024-05-01T09:00:00Z"), gone("3")])
    scope = ReadScope(NOTES, (a, b), NOTES.fields)
    window = {"since": "2024-05-01T00:00:00.000Z", "until": "2024-05-03T00:00:00.000Z"}
    counts = [(c.connection_id, c.day, c.records)
              for c in harness.store.daily_counts(scope, **window)]
    assert counts == [(a, "2024-05-01", 2), (a, "2024-05-02", 1), (b, "2024-05-02", 1)]
    harness.publish(staged)
    counts = [(c.connection_id, c.day, c.records)
              for c in harness.store.daily_counts(scope, **window)]
    assert counts == [(a, "2024-05-01", 3), (b, "2024-05-02", 1)]
    only_b = ReadScope(NOTES, (b,), NOTES.fields, since="2024-05-02T12:00:00.000Z")
    assert harness.store.daily_counts(only_b, **window) == []
