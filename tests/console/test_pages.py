"""The console over HTTP: actions leave the audit events the owner API leaves, delete needs its
typed confirmation, uploads stream into a private file (console form and owner API alike),
live progress comes from this process or from the database, records page with cursors; the
overview's cards (coverage drawn per path, next run, known gaps), a connection's timeline
(counts, errors, each gap's action) and the access page (last use, pending requests)."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner

from ownstream.api import console_reads
from ownstream.cli.main import app as cli_app
from ownstream.dev.spotify_data import generate_catalog, generate_user, write_archive
from ownstream.owner import AccessOperations, ConnectionOperations
from tests.api.conftest import make_notes
from tests.auth.conftest import Flows, pkce

from .conftest import Console, notes_file, plan_flaky


def audit_trail(console: Console, connection_id: str) -> list[tuple[str, str, str]]:
    events = console.world.store.audit_events(connection_id=connection_id, limit=100)
    return [(e.actor_kind, e.operation, e.outcome) for e in reversed(events)]


Event = tuple[str, str, str, list[str]]


def appended(
    console: Console, action: Callable[[], object], until: str | None = None
) -> list[Event]:
    """The audit events one action appended, as (actor, operation, outcome, summary keys);
    `until` waits for the event a background run appends when it ends."""
    store = console.world.store
    newest = store.audit_events(limit=1)
    before = newest[0].seq if newest else 0
    action()
    deadline = time.monotonic() + 30
    while True:
        found = [e for e in reversed(store.audit_events(limit=50)) if e.seq > before]
        if until is None or any(e.operation == until for e in found):
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return [(e.actor_kind, e.operation, e.outcome, sorted(e.summary)) for e in found]


def test_console_actions_leave_the_audit_events_the_owner_api_leaves(
    owner_console: Console, tmp_path: Path
) -> None:
    """Each pair: the owner API (or the CLI, which has the only `connect` besides OAuth) on one
    connection, then the console on its sibling (or the same one)."""
    world = owner_console.world
    alice, bob, ticker = (world.conns[n] for n in ("alice", "bob", "ticker"))
    grants = [world.grant([{"name": "notes"}])[0].grant_id for _ in range(2)]
    tokens = [AccessOperations(world.home).mint_owner_token()[1].token_id for _ in range(2)]
    api, post = owner_console.owner, owner_console.post

    def cli_connect(account: str) -> None:
        data = notes_file(tmp_path, account)
        ran = CliRunner().invoke(cli_app, ["--home", str(world.home.path), "connect",
                                           "notes-api", "--setting", f"data={data}"])
        assert ran.exit_code == 0, ran.output

    def upload(account: str) -> None:
        assert upload_form(owner_console, notes_file(tmp_path, account)).status_code == 201

    def imported(account: str) -> None:
        body = notes_file(tmp_path, account).read_bytes()
        assert api("POST", "/v1/owner/imports?connector=notes-export",
                   content=body).status_code == 201

    schedule = {"enabled": True, "interval_seconds": 1800}
    pairs: list[tuple[str, Callable[[], object], Callable[[], object], str | None]] = [
        ("rename",
         lambda: api("PATCH", f"/v1/owner/connections/{bob}", json={"display_name": "Bob's"}),
         lambda: post(f"/console/connections/{alice}/rename", display_name="Alice's"), None),
        ("rename refused",
         lambda: api("PATCH", f"/v1/owner/connections/{bob}", json={"display_name": " "}),
         lambda: post(f"/console/connections/{alice}/rename", display_name=" "), None),
        ("revoke", lambda: api("POST", f"/v1/owner/connections/{bob}/revoke"),
         lambda: post(f"/console/connections/{alice}/revoke"), None),
        ("reactivate", lambda: api("POST", f"/v1/owner/connections/{bob}/reactivate"),
         lambda: post(f"/console/connections/{alice}/reactivate"), None),
        ("run", lambda: api("POST", f"/v1/owner/connections/{bob}/run"),
         lambda: post(f"/console/connections/{alice}/run"), "run_finished"),
        ("import", lambda: imported("bob"), lambda: upload("alice"), None),
        ("connect", lambda: cli_connect("dora"),
         lambda: post("/console/connect/notes-api",
                      **{"setting:data": str(notes_file(tmp_path, "erin"))}), None),
        ("schedule", lambda: api("PUT", f"/v1/owner/connections/{ticker}/schedule",
                                 json=schedule),
         lambda: post(f"/console/connections/{ticker}/schedule/set", interval_minutes="30",
                      enabled="on"), None),
        ("pause", lambda: api("POST", f"/v1/owner/connections/{ticker}/schedule/pause"),
         lambda: post(f"/console/connections/{ticker}/schedule/pause"), None),
        ("resume", lambda: api("POST", f"/v1/owner/connections/{ticker}/schedule/resume"),
         lambda: post(f"/console/connections/{ticker}/schedule/resume"), None),
        ("pause without a schedule",
         lambda: api("POST", f"/v1/owner/connections/{bob}/schedule/pause"),
         lambda: post(f"/console/connections/{alice}/schedule/pause"), None),
        ("grant revoke", lambda: api("POST", f"/v1/owner/grants/{grants[0]}/revoke"),
         lambda: post(f"/console/grants/{grants[1]}/revoke"), None),
        ("token revoke", lambda: api("POST", f"/v1/owner/tokens/{tokens[0]}/revoke"),
         lambda: post(f"/console/tokens/{tokens[1]}/revoke"), None),
    ]
    seen = {}
    for name, by_api, by_console, until in pairs:
        expected = appended(owner_console, by_api, until)
        assert expected, name
        assert appended(owner_console, by_console, until) == expected, name
        seen[name] = [(op, outcome) for _, op, outcome, _ in expected]
    assert seen == {
        "rename": [("rename", "succeeded")],
        "rename refused": [("rename", "refused")],
        "revoke": [("revoke", "succeeded")],
        "reactivate": [("reactivate", "succeeded")],
        "run": [("run", "started"), ("run_finished", "succeeded")],
        "import": [("import", "succeeded")],
        "connect": [("connect", "succeeded")],
        "schedule": [("schedule", "succeeded")],
        "pause": [("schedule_pause", "succeeded")],
        "resume": [("schedule_resume", "succeeded")],
        "pause without a schedule": [("schedule_pause", "refused")],
        "grant revoke": [("grant_revoke", "succeeded")],
        "token revoke": [("token_revoke", "succeeded")],
    }
    assert world.store.connection(alice).display_name == "Alice's"
    assert world.store.grant(grants[1]).revoked_at is not None


def test_delete_shows_what_goes_and_what_stays_and_needs_the_typed_name(
    owner_console: Console,
) -> None:
    world = owner_console.world
    alice = world.conns["alice"]
    grant, _ = world.grant([{"name": "notes", "connection_ids": [alice]}])
    page = owner_console.http.get(f"/console/connections/{alice}/delete")
    assert page.status_code == 200
    assert "<strong>12</strong> records" in page.text and "notes: 12" in page.text
    assert grant.grant_id in page.text and "audit trail" in page.text
    path = f"/console/connections/{alice}/delete"
    for typed in (None, "alice", "Alice notebook x"):
        refused = owner_console.post(path, **({"confirm": typed} if typed else {}))
        assert refused.status_code == 400 and "Type the connection" in refused.text
    assert world.store.connection(alice).display_name == "Alice notebook"
    deleted = owner_console.post(path, confirm="Alice notebook")
    assert deleted.status_code == 200 and "12 records" in deleted.text
    assert alice not in {c.connection_id for c in world.store.connections()}
    assert audit_trail(owner_console, alice)[-1] == ("owner", "delete", "succeeded")


def test_a_post_without_the_csrf_token_is_refused(owner_console: Console) -> None:
    alice = owner_console.world.conns["alice"]
    forged = owner_console.http.post(f"/console/connections/{alice}/rename",
                                     data={"display_name": "forged"})
    assert forged.status_code == 400 and "form expired" in forged.text
    assert owner_console.world.store.connection(alice).display_name == "Alice notebook"


def upload_form(
    console: Console,
    path: Path,
    *,
    csrf: bool = True,
    connector: str = "notes-export",
    connection_id: str = "",
) -> httpx2.Response:
    data = {"connector": connector, "connection_id": connection_id}
    if csrf:
        data = {"csrf_token": console.csrf("/console/import"), **data}
    response: httpx2.Response = console.http.post(
        "/console/import", data=data,
        files={"archive": (path.name, path.read_bytes(), "application/json")},
    )
    return response


def test_an_uploaded_archive_joins_by_rule_or_becomes_its_own_connection(
    owner_console: Console, tmp_path: Path
) -> None:
    world = owner_console.world
    joined = upload_form(owner_console, notes_file(tmp_path, "alice"))
    assert joined.status_code == 201, joined.text
    assert "Joined Alice notebook" in joined.text and "notes-account" in joined.text
    assert "notes_account=alice" in joined.text
    fresh = upload_form(owner_console, notes_file(tmp_path, "dora"))
    assert fresh.status_code == 201 and "A new connection" in fresh.text
    again = upload_form(owner_console, notes_file(tmp_path, "dora", name="dora-again.json"))
    assert again.status_code == 200 and "Already imported" in again.text
    assert not list((world.home.path / "uploads").iterdir())  # every upload's file is gone
    [event] = world.store.audit_events(operation="import", limit=1)
    assert event.actor_kind == "owner" and event.summary["status"] == "duplicate"


def test_an_upload_without_identity_joins_the_connection_the_owner_names(
    owner_console: Console, tmp_path: Path
) -> None:
    world = owner_console.world
    catalog = generate_catalog(seed=3, artists=8)
    first, second = (
        write_archive(generate_user(name, seed=i, plays=30, catalog=catalog), tmp_path / name,
                      include_identity=False)
        for i, name in enumerate(("anon", "anon-later"), start=1)
    )
    created = upload_form(owner_console, first, connector="spotify-export")
    assert created.status_code == 201 and "no identity found: a new connection" in created.text
    [receipt] = world.store.batches(connector_key="spotify-export")
    target = receipt.connection_id
    page = owner_console.http.get("/console/import")
    assert f'<option value="{target}">' in page.text  # offered as a target

    named = upload_form(owner_console, second, connector="spotify-export", connection_id=target)
    assert named.status_code == 201, named.text
    assert "Joined" in named.text and "the owner named this connection" in named.text
    assert f'href="/console/connections/{target}"' in named.text
    assert [b.connection_id for b in world.store.batches(connector_key="spotify-export")] == [
        target, target]
    assert len([c for c in world.store.connections() if c.source == "spotify"]) == 1
    [event] = world.store.audit_events(operation="import", limit=1)
    assert event.connection_id == target and event.outcome == "succeeded"

    # a named connection is refused when the archive proves another account
    alice, bob = world.conns["alice"], world.conns["bob"]
    refused = upload_form(owner_console, notes_file(tmp_path, "alice"), connection_id=bob)
    assert refused.status_code == 409 and 'role="alert"' in refused.text
    assert [b.connection_id for b in world.store.batches(connector_key="notes-export")
            if b.connection_id in (alice, bob)] == []


def test_a_forged_upload_writes_nothing(owner_console: Console, tmp_path: Path) -> None:
    refused = upload_form(owner_console, notes_file(tmp_path, "alice"), csrf=False)
    assert refused.status_code == 400 and "form expired" in refused.text
    uploads = owner_console.world.home.path / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def test_the_owner_api_imports_a_streamed_body(
    owner_console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = owner_console.world
    body = notes_file(tmp_path, "bob").read_bytes()
    created = owner_console.owner(
        "POST", "/v1/owner/imports?connector=notes-export&filename=bob.json", content=iter([body])
    )
    assert created.status_code == 201, created.text
    receipt = created.json()
    assert receipt["connection_id"] == world.conns["bob"]
    assert receipt["connection"] == {
        "action": "joined", "reason": "identity rule notes-account proves the same account",
        "rule_id": "notes-account", "evidence": {"claim": "notes_account", "value": "bob"}}
    assert receipt["artifact"]["name"] == "bob.json" and receipt["counts"]["new"] == 3
    duplicate = owner_console.owner("POST", "/v1/owner/imports?connector=notes-export",
                                    content=body)
    assert duplicate.status_code == 200 and duplicate.json()["status"] == "duplicate"
    uploads = world.home.path / "uploads"
    assert uploads.stat().st_mode & 0o777 == 0o700 and not list(uploads.iterdir())
    monkeypatch.setenv("OWNSTREAM_MAX_UPLOAD_BYTES", "100")
    declared = owner_console.owner("POST", "/v1/owner/imports?connector=notes-export",
                                   content=body)
    streamed = owner_console.owner("POST", "/v1/owner/imports?connector=notes-export",
                                   content=iter([body[:60], body[60:]]))
    for too_large in (declared, streamed):
        assert too_large.status_code == 413
        assert too_large.json()["error"]["code"] == "upload_too_large"
    assert not list(uploads.iterdir())
    unknown = owner_console.owner("POST", "/v1/owner/imports?connector=nope", content=body)
    assert unknown.status_code == 404
    assert owner_console.http.post("/v1/owner/imports?connector=notes-export",
                                   content=body).status_code == 401


def events(console: Console, path: str) -> list[tuple[str, dict[str, object]]]:
    with console.http.stream("GET", path) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    found = re.findall(r"event: (\w+)\ndata: (.*)\n\n", text)
    return [(kind, json.loads(data)) for kind, data in found]


def test_live_progress_of_a_run_from_this_process(owner_console: Console) -> None:
    ticker = owner_console.world.conns["ticker"]
    started = owner_console.post(f"/console/connections/{ticker}/run")
    assert started.status_code == 303
    page = started.headers["location"]
    stream = events(owner_console, f"{page}/events")
    kinds = [kind for kind, _ in stream]
    assert kinds[-1] == "finished" and "progress" in kinds
    assert stream[-1][1]["status"] == "succeeded"
    assert any(data.get("message") == "step 5 of 5" for kind, data in stream if kind == "progress")
    finished = owner_console.http.get(page)
    assert "Finished: <strong>succeeded</strong>" in finished.text and "5 new" in finished.text


def test_a_run_of_another_process_is_followed_in_the_database(owner_console: Console) -> None:
    """No progress hub knows a run the worker (or another serve process) started."""
    world = owner_console.world
    ticker = world.conns["ticker"]
    [outcome] = ConnectionOperations(world.home).run(ticker)  # not through this app's hub
    assert world.home.progress.snapshot(str(outcome.run_id)) is None
    page = f"/console/connections/{ticker}/runs/{outcome.run_id}"
    [(kind, data)] = events(owner_console, f"{page}/events")
    assert kind == "finished" and data["status"] == "succeeded"
    assert data["run_id"] == outcome.run_id


def test_records_page_with_cursors_and_search_with_provenance(
    owner_console: Console, tmp_path: Path
) -> None:
    upload_form(owner_console, notes_file(tmp_path, "alice"))  # a second path for alice
    first = owner_console.http.get("/console/records", params={"stream": "notes"})
    assert first.status_code == 200 and first.text.count('<tr>\n    <td>') == 25
    assert "notes-export</code> (owner artifact)" in first.text
    next_url = re.search(r'<a href="([^"]+)" rel="next"', first.text)
    assert next_url is not None
    second = owner_console.http.get(next_url.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and "First page" in second.text
    found = owner_console.http.get("/console/records", params={"stream": "notes", "q": "imported"})
    assert found.text.count("imported alice") == 3
    forged = owner_console.http.get("/console/records", params={"stream": "notes",
                                                                "cursor": "pg1.nope"})
    assert forged.status_code == 400 and "cursor" in forged.text


AUDIT_ROW = re.compile(
    r'<tr class="outcome-(\w+)"><td>[^<]*</td><td>(\w+)</td><td>(\w+)</td><td>\w+</td>\s*'
    r'<td>(?:<a href="/console/connections/([\w-]+)">|<code>([\w-]+)</code>)?'
)


def audit_rows(text: str) -> list[tuple[str, str, str, str]]:
    """(actor, operation, outcome, connection id) of each row of an audit page."""
    return [(actor, op, outcome, linked or plain)
            for outcome, actor, op, linked, plain in AUDIT_ROW.findall(text)]


def test_the_audit_page_filters_by_connection_actor_and_action(owner_console: Console) -> None:
    world = owner_console.world
    alice, bob = world.conns["alice"], world.conns["bob"]
    for name in ("One", "Two"):
        owner_console.post(f"/console/connections/{alice}/rename", display_name=name)
    owner_console.post(f"/console/connections/{bob}/rename", display_name="Bob's")
    world.store.append_audit(actor_kind="scheduler", connection_id=bob, operation="run",
                             outcome="failed", summary={})
    owner_console.post(f"/console/connections/{bob}/delete", confirm=bob)

    def rows(**params: str) -> list[tuple[str, str, str, str]]:
        page = owner_console.http.get("/console/audit", params=params)
        assert page.status_code == 200
        return audit_rows(page.text)

    everything = rows()
    assert len(everything) == len(world.store.audit_events(limit=1000))
    assert rows(connection_id=alice) == [("owner", "rename", "succeeded", alice)] * 2
    assert rows(operation="rename", connection_id=bob) == [
        ("owner", "rename", "succeeded", bob)]  # a deleted connection is still filterable
    assert rows(actor_kind="scheduler") == [("scheduler", "run", "failed", bob)]
    assert rows(actor_kind="scheduler", operation="rename") == []
    assert {op for _, op, _, _ in rows(operation="delete")} == {"delete"}
    page = owner_console.http.get("/console/audit", params={"connection_id": bob})
    assert f'<option value="{bob}" selected>{bob} (deleted)</option>' in page.text
    assert "No events." in owner_console.http.get(
        "/console/audit", params={"operation": "nothing"}).text


def test_the_audit_page_pages_to_older_events(
    owner_console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_reads, "AUDIT_PAGE", 4)
    store = owner_console.world.store
    alice = owner_console.world.conns["alice"]
    for i in range(7):
        owner_console.post(f"/console/connections/{alice}/rename", display_name=f"Alice {i}")
    expected = [(e.actor_kind, e.operation, e.outcome, e.connection_id or "")
                for e in store.audit_events(limit=1000)]
    renames = [e for e in expected if e[1] == "rename"]

    def walk(url: str) -> list[tuple[str, str, str, str]]:
        shown: list[tuple[str, str, str, str]] = []
        for _ in range(50):
            page = owner_console.http.get(url)
            assert page.status_code == 200
            found = audit_rows(page.text)
            assert 0 < len(found) <= 4
            shown += found
            if shown != found:
                assert "Newest events</a>" in page.text
            older = re.search(r'<a href="([^"]+)" rel="next">Older events</a>', page.text)
            if older is None:
                return shown
            url = older.group(1).replace("&amp;", "&")
        raise AssertionError("paging did not end")

    assert walk("/console/audit") == expected
    assert walk(f"/console/audit?operation=rename&connection_id={alice}") == renames
    bad = owner_console.http.get("/console/audit", params={"before": "x"})
    assert bad.status_code == 400


def card(page: str, connection_id: str) -> str:
    """One connection's card on the overview."""
    found = re.search(
        rf'<article class="card" aria-labelledby="card-{connection_id}">(.*?)</article>', page,
        re.S)
    assert found is not None, connection_id
    return found.group(1)


def text_of(fragment: str) -> str:
    """What a piece of a page reads as: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def fact(card_html: str, name: str) -> str:
    found = re.search(rf"<dt>{name}</dt>\s*<dd>(.*?)</dd>", card_html, re.S)
    assert found is not None, name
    return text_of(found.group(1))


RATE_LIMITED = {"reason": "rate_limited", "message": "notes after page 3 skipped: rate limited",
                "recovery_hint": {"action": "retry", "retryable": True}}
UPSTREAM_DOWN = {"code": "upstream_down", "message": "the notes service answered 503",
                 "recovery_hint": {"action": "reconnect"}}
FLAKY_NOTES = [{"note_id": "f1", "title": "one", "updated_at": "2024-02-03T08:00:00.000Z"},
               {"note_id": "f2", "title": "two", "updated_at": "2024-09-10T08:00:00.000Z"}]


def run_flaky(console: Console, *, gaps: Sequence[dict[str, Any]] = (),
              error: dict[str, Any] | None = None) -> str:
    """One run of the `flaky` connection as its plan says; returns its status."""
    world = console.world
    plan_flaky(world, FLAKY_NOTES, gaps, error)
    [outcome] = world.home.runtime().run_connection(world.conns["flaky"])
    return outcome.status


def test_an_overview_card_draws_each_paths_coverage_with_the_next_run_and_known_gaps(
    owner_console: Console, tmp_path: Path
) -> None:
    world = owner_console.world
    alice, carol, flaky = (world.conns[n] for n in ("alice", "carol", "flaky"))
    assert upload_form(owner_console, notes_file(tmp_path, "alice")).status_code == 201
    assert run_flaky(owner_console, gaps=[RATE_LIMITED]) == "succeeded"
    owner_console.post(f"/console/connections/{flaky}/schedule/set", interval_minutes="90",
                       enabled="on")
    page = owner_console.http.get("/console/")
    assert page.status_code == 200

    # alice's two paths: the API's period (her notes' dates) and the export's (2025-04-01..03)
    alice_card = card(page.text, alice)
    dates = sorted(n["updated_at"] for n in make_notes("alice"))
    api_period = (dates[0][:10], dates[-1][:10])
    covered = [f"notes-api · notes: {api_period[0]} to {api_period[1]}",
               "notes-export · notes: 2025-04-01 to 2025-04-03"]
    desc = re.search(r'<desc id="cov-[\w-]+-d">(.*?)</desc>', alice_card)
    assert desc is not None and text_of(desc.group(1)) == "; ".join(covered)
    bars = re.findall(r'<rect x="([\d.]+)" y="\d+" width="([\d.]+)" height="10" rx="2" '
                      r'fill="(#\w+)"><title>(.*?)</title></rect>', alice_card)
    assert [text_of(label) for *_, label in bars] == covered
    (api_x, api_w, api_fill, _), (export_x, _, export_fill, _) = bars
    assert api_fill != export_fill  # a colour per acquisition path
    # the API's bar spans the whole axis; the export's starts where April 1 falls on it
    low, high = (datetime.fromisoformat(d) for d in api_period)
    april = datetime(2025, 4, 1)
    assert (float(api_x), float(api_w)) == (1.0, 718.0)
    assert float(export_x) == pytest.approx((april - low) / (high - low) * 718 + 1, abs=0.1)
    assert f">{api_period[0]}</text>" in alice_card and f">{api_period[1]}</text>" in alice_card

    # the next scheduled run, or why there is none
    schedule = world.store.schedule(flaky)
    assert schedule is not None and schedule.next_due_at is not None
    flaky_card = card(page.text, flaky)
    assert fact(flaky_card, "Next run") == schedule.next_due_at
    assert fact(alice_card, "Next run") == "not scheduled"
    assert fact(card(page.text, carol), "Next run") == "archives only: import a newer one"

    # the known gap of flaky's latest run, and the retry its hint asks for
    assert fact(flaky_card, "Last run").startswith("succeeded · ")
    gaps = re.search(r'<ul class="gaps">(.*?)</ul>', flaky_card, re.S)
    assert gaps is not None
    assert text_of(gaps.group(1)) == "recoverable notes after page 3 skipped: rate limited"
    assert "known gap" in text_of(flaky_card)
    assert f'action="/console/connections/{flaky}/run"' in flaky_card
    assert ">Retry now</button>" in flaky_card
    assert '<ul class="gaps">' not in alice_card


def timeline(page: str) -> list[tuple[str, str]]:
    """(status, text) of each entry of a connection's run and import timeline, newest first."""
    found = re.search(r'<ol class="timeline">(.*?)</ol>', page, re.S)
    assert found is not None
    return [(status, text_of(entry)) for status, entry in
            re.findall(r'<li class="status-(\w+)">(.*?)</li>', found.group(1), re.S)]


def test_a_connections_timeline_shows_counts_errors_and_each_gaps_recovery_action(
    owner_console: Console, tmp_path: Path
) -> None:
    world = owner_console.world
    alice, flaky = world.conns["alice"], world.conns["flaky"]
    assert run_flaky(owner_console, gaps=[RATE_LIMITED]) == "succeeded"
    assert run_flaky(owner_console, error=UPSTREAM_DOWN) == "failed"
    page = owner_console.http.get(f"/console/connections/{flaky}").text
    failed, gapped = timeline(page)
    assert failed[0] == "failed" and gapped[0] == "succeeded"
    assert "nothing changed" in failed[1] and "the notes service answered 503" in failed[1]
    assert '<p class="error">the notes service answered 503</p>' in page
    assert "actionable the notes service answered 503 Reconnect" in failed[1]
    assert "2 new" in gapped[1]
    assert "recoverable notes after page 3 skipped: rate limited Retry now" in gapped[1]
    # the actions: reconnect (a set-up form for this connection), retry (run it now)
    reconnect = f'<a class="button" href="/console/connect/flaky?connection_id={flaky}">Reconnect'
    assert reconnect in page
    form = owner_console.http.get("/console/connect/flaky", params={"connection_id": flaky})
    assert form.status_code == 200 and "Flaky feed" in form.text
    retry = owner_console.post(f"/console/connections/{flaky}/run")
    assert retry.status_code == 303 and "/runs/" in retry.headers["location"]
    [*_, (kind, ended)] = events(owner_console, f"{retry.headers['location']}/events")
    assert kind == "finished" and ended["status"] == "failed"  # it fails as planned

    # an import: its counts and the records it refused, with the reason
    bad = tmp_path / "alice-bad.json"
    bad.write_text(json.dumps({"account": "alice", "deleted": [], "notes": [
        {"note_id": "z1", "title": "fine", "updated_at": "2025-05-01T09:00:00.000Z"},
        {"note_id": "z2", "bogus": 1}]}))
    assert upload_form(owner_console, bad).status_code == 201
    page = owner_console.http.get(f"/console/connections/{alice}").text
    imported, collected = timeline(page)
    assert imported[0] == "succeeded" and imported[1].startswith("Import of alice-bad.json")
    assert "1 new 1 rejected" in imported[1]
    assert "<li>rejected <code>schema_mismatch</code>: 1<br>" in page
    assert "e.g. notes z2 data: Additional properties are not allowed" in imported[1]
    assert collected[0] == "succeeded" and collected[1].startswith("Run ")
    assert "12 new" in collected[1] and "rejected" not in collected[1]


def test_the_access_page_shows_a_grants_last_use_and_links_a_pending_request(
    owner_console: Console,
) -> None:
    world = owner_console.world
    flows = Flows(world, owner_console.http)
    client = flows.register(client_name="Reading Lamp",
                            redirect_uris=["http://127.0.0.1/callback"])
    _, tokens = flows.code_flow(client)
    [grant] = [g for g in world.store.grants() if g.client_id == client.client_id]

    def grant_card() -> str:
        page = owner_console.http.get("/console/access")
        found = re.search(rf'<article [^>]*id="grant-{grant.grant_id}">(.*?)</article>',
                          page.text, re.S)
        assert found is not None
        return text_of(found.group(1))

    assert "Tokens: 1 · last used never" in grant_card()
    read = flows.read(tokens["access_token"], "/v1/streams/notes/records")
    assert read.status_code == 200
    shown = grant_card()  # the page writes the use counted in memory before it reads
    [token] = [t for t in world.store.tokens() if t.grant_id == grant.grant_id]
    assert token.last_used_at is not None
    assert f"Tokens: 1 · last used {token.last_used_at}" in shown

    # a request waiting for the owner, linked to its consent page
    _, challenge = pkce()
    request_uri = flows.par(client, challenge).json()["request_uri"]
    consent = flows.consent_path(client, request_uri)
    page = owner_console.http.get("/console/access")
    requests = re.search(r'<section id="requests".*?</section>', page.text, re.S)
    assert requests is not None
    assert f'<a href="{consent}">Reading Lamp</a>' in requests.group(0)
    opened = owner_console.http.get(consent)
    assert opened.status_code == 200 and "Reading Lamp" in opened.text
    assert 'name="decision" value="approve"' in opened.text
    overview = owner_console.http.get("/console/").text
    assert "1 request waiting for your decision" in overview
