"""The console in a real browser (Playwright driving the system Chromium) against a real
server on a loopback port: sign-in by link (once), the overview, uploads joining by rule or
becoming their own connection, a run followed to completion, rename, revoking a grant,
deleting after typed confirmation, a POST without the CSRF token refused, connecting and
reconnecting by OAuth at the Spotify double, every page's controls labelled and its main
actions reachable with the keyboard, and no page wider than a 360-pixel screen.

One server and one browser serve the whole module (the tests run in order and build on each
other's state where noted); each test opens its own signed-in page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import pytest

from ownstream.auth.console import mint_link
from ownstream.dev.spotify_data import generate_catalog, generate_user, write_archive
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.owner import ConnectionOperations
from ownstream.owner.provider_oauth import CALLBACK_PATH
from tests.api.conftest import World
from tests.auth.conftest import Flows, pkce
from tests.services.server import serving

from .conftest import console_world, notes_file, plan_flaky

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TIMEOUT_MS = 20_000


@dataclass
class Live:
    url: str
    world: World
    files: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("console")
    world = console_world(root / "world")
    files = root / "files"
    files.mkdir()
    with serving(world.home) as url:
        yield Live(url, world, files)


@pytest.fixture
def page(live: Live, chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    signed_in = context.new_page()
    signed_in.goto(mint_link(live.world.store, live.url))
    yield signed_in
    context.close()


def test_a_sign_in_link_works_once(live: Live, chromium: Browser) -> None:
    link = mint_link(live.world.store, live.url)
    first = chromium.new_context()
    try:
        tab = first.new_page()
        tab.goto(link)
        assert tab.url == f"{live.url}/console/"
        assert tab.inner_text("h1") == "Your connections"
    finally:
        first.close()
    second = chromium.new_context()
    try:
        tab = second.new_page()
        response = tab.goto(link)
        assert response is not None and response.status == 400
        assert "cannot be used" in tab.inner_text("h1")
        tab.goto(f"{live.url}/console/")  # no session: the sign-in instructions
        tab.wait_for_selector("text=Sign in first")
    finally:
        second.close()


def test_the_overview_groups_connections_with_health_and_activity(
    live: Live, page: Page
) -> None:
    assert page.inner_text("#source-notes") == "Notes"
    cards = page.locator("#source-notes ~ article, section.source article")
    names = {cards.nth(i).locator("h4").inner_text() for i in range(cards.count())}
    assert {"Alice notebook", "Bob notebook", "Ticker"} <= names
    alice = page.locator("article", has_text="Alice notebook")
    assert alice.locator(".badge").first.inner_text() == "healthy"
    assert "notes 12" in alice.locator(".facts").inner_text()
    assert page.locator("svg.chart[role=img]").count() >= 1
    assert page.locator(".legend li").count() >= 3


def test_an_archive_joins_its_account_by_rule(live: Live, page: Page) -> None:
    page.click("nav >> text=Import")
    page.select_option('select[name="connector"]', "notes-export")
    page.set_input_files('input[name="archive"]', str(notes_file(live.files, "alice")))
    page.click("text=Upload and import")
    page.wait_for_selector(".receipt")
    receipt = page.inner_text(".receipt")
    assert "Joined Alice notebook" in receipt
    assert "identity rule notes-account proves the same account" in receipt
    assert "notes_account=alice" in receipt
    assert page.inner_text(".count-new") == "3"


def test_an_archive_without_identity_becomes_its_own_connection(
    live: Live, page: Page
) -> None:
    listener = generate_user("anon", seed=5, plays=40, catalog=generate_catalog(seed=3, artists=8))
    archive = write_archive(listener, live.files / "anon", include_identity=False)
    page.goto(f"{live.url}/console/import")
    page.select_option('select[name="connector"]', "spotify-export")
    page.set_input_files('input[name="archive"]', str(archive))
    page.click("text=Upload and import")
    page.wait_for_selector(".receipt")
    assert "A new connection" in page.inner_text(".receipt h2")
    assert "no identity found: a new connection" in page.inner_text(".receipt")
    page.click("text=Open the connection")
    assert "No proven identity" in page.inner_text("#paths-h + p")


def test_a_run_shows_its_progress_to_completion(live: Live, page: Page) -> None:
    ticker = live.world.conns["ticker"]
    page.goto(f"{live.url}/console/connections/{ticker}")
    page.click("text=Run now")
    page.wait_for_selector(".live .progress-text:has-text('step')")  # live, from the server
    page.wait_for_selector(".done")  # the page reloads itself when the run has finished
    assert "succeeded" in page.inner_text(".done .status")
    assert "5 new" in page.inner_text(".done")


def test_renaming_updates_the_page(live: Live, page: Page) -> None:
    bob = live.world.conns["bob"]
    page.goto(f"{live.url}/console/connections/{bob}")
    page.fill('input[name="display_name"]', "Bob's field notes")
    page.click("button:has-text('Rename')")
    page.wait_for_selector("h1:has-text(\"Bob's field notes\")")
    assert live.world.store.connection(bob).display_name == "Bob's field notes"


def test_revoking_a_grant(live: Live, page: Page) -> None:
    grant, _ = live.world.grant([{"name": "notes", "fields": ["title"]}], client_id="reader")
    page.goto(f"{live.url}/console/access")
    card = page.locator(f"#grant-{grant.grant_id}")
    assert "fields title" in card.inner_text()
    card.locator("button:has-text('Revoke')").click()
    page.wait_for_selector(f"#grant-{grant.grant_id} .badge:has-text('revoked')")
    assert live.world.store.grant(grant.grant_id).revoked_at is not None


def test_deleting_a_connection_after_typed_confirmation(live: Live, page: Page) -> None:
    carol = live.world.conns["carol"]
    name = live.world.store.connection(carol).display_name
    page.goto(f"{live.url}/console/connections/{carol}")
    page.click("text=Delete…")
    assert "12" in page.inner_text("#erased-h + ul")
    page.fill('input[name="confirm"]', "not the name")
    page.click("button:has-text('Delete this connection')")
    assert "Type the connection" in page.inner_text(".error")
    page.fill('input[name="confirm"]', name)
    page.click("button:has-text('Delete this connection')")
    page.wait_for_selector("text=Connection deleted")
    assert carol not in {c.connection_id for c in live.world.store.connections()}


def test_a_post_without_the_csrf_token_is_refused(live: Live, page: Page) -> None:
    alice = live.world.conns["alice"]
    status = page.evaluate(
        """async (path) => (await fetch(path, {method: "POST",
             body: new URLSearchParams({display_name: "forged"})})).status""",
        f"/console/connections/{alice}/rename",
    )
    assert status == 400
    assert live.world.store.connection(alice).display_name == "Alice notebook"


SPOTIFY_APP = "console-app"


@pytest.fixture(scope="module")
def spotify(live: Live) -> Iterator[SpotifyDouble]:
    listener = generate_user("ann", seed=7, plays=30, catalog=generate_catalog(seed=4, artists=8))
    with SpotifyDouble([listener]) as double:
        double.register_client(SPOTIFY_APP, [live.url + CALLBACK_PATH])
        yield double


def test_connecting_and_reconnecting_by_oauth(
    live: Live, page: Page, spotify: SpotifyDouble
) -> None:
    page.goto(f"{live.url}/console/connect/spotify")
    form = page.locator('form[action="/console/connect/spotify/oauth"]')
    form.locator('input[name="client_id"]').fill(SPOTIFY_APP)
    base = spotify.base_url
    for name, value in (("api_base_url", base), ("token_url", f"{base}/api/token"),
                        ("authorization_url", f"{base}/authorize")):
        form.locator(f'input[name="setting:{name}"]').fill(value)
    form.locator("button", has_text="Connect with Spotify").click()
    page.click("button:has-text('Agree')")  # the double's consent page
    page.wait_for_selector("[role=status]:has-text('Connected spotify as spotify_user_id=ann')")
    connection_id = page.url.split("/console/connections/")[1].split("?")[0]
    assert live.world.store.connection(connection_id).source == "spotify"

    spotify.revoke_access("ann", SPOTIFY_APP)
    [failed] = ConnectionOperations(live.world.home).run(connection_id)
    assert failed.status == "failed"
    page.goto(f"{live.url}/console/connections/{connection_id}")
    assert f"--connection {connection_id}" in page.inner_text("code.remediation")
    page.click("#connection-header button:has-text('Reconnect')")
    page.click("button:has-text('Agree')")
    page.wait_for_selector("[role=status]:has-text('Reconnected spotify')")
    [recovered] = ConnectionOperations(live.world.home).run(connection_id)
    assert recovered.status == "succeeded"


UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button')).filter((el) => {
  const text = (node) => Boolean(node && node.textContent.trim());
  const named = el.tagName === "BUTTON" ? text(el) : Array.from(el.labels || []).some(text);
  const aria = (el.getAttribute("aria-label") || "").trim();
  const ids = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
  return !(named || aria || ids.some((id) => text(document.getElementById(id))));
}).map((el) => el.outerHTML.slice(0, 120))"""
FOCUSED = "() => (document.activeElement.innerText || '').trim()"


def test_every_control_is_labelled_and_the_main_actions_take_the_keyboard(
    live: Live, page: Page
) -> None:
    """A cheap check per page: controls have an accessible label (a <label>, aria-label or
    aria-labelledby; buttons their text), and Tab alone reaches the page's main actions."""
    ticker, alice = live.world.conns["ticker"], live.world.conns["alice"]
    pages = {
        "/console/": {"Skip to content", "Import", "Sign out"},
        f"/console/connections/{alice}": {"Rename", "Run now", "Delete…"},
        f"/console/connections/{ticker}": {"Run now", "Save schedule"},
        f"/console/connections/{alice}/delete": {"Delete this connection"},
        "/console/import": {"Upload and import"},
        "/console/connect": {"Spotify (Web API)"},
        "/console/connect/spotify": {"Connect with Spotify", "Connect"},
        "/console/records": {"Show"},
        "/console/access": {"Revoke"},
        "/console/audit": {"Filter"},
    }
    for path, actions in pages.items():
        page.goto(f"{live.url}{path}")
        assert page.evaluate(UNLABELLED) == [], path
        missing = set(actions)
        for _ in range(250):
            page.keyboard.press("Tab")
            missing.discard(page.evaluate(FOCUSED))
            if not missing:
                break
        assert not missing, (path, missing)


WIDTHS = "() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"


def test_no_page_scrolls_sideways_at_360_pixels(live: Live, chromium: Browser) -> None:
    """Every console page at a phone's width, with long words in it (URLs, ids, a purpose
    code, an error), a failed run, a known gap, a pending request and a receipt: tables may
    scroll inside their box, the page never does."""
    world = live.world
    plan_flaky(world, [{"note_id": "f1", "title": "one", "updated_at": "2024-02-03T08:00:00Z"}],
               [{"reason": "rate_limited", "message": "page_4_of_the_notes_listing_was_skipped",
                 "recovery_hint": {"action": "retry"}}],
               {"code": "upstream_down", "message": "https://notes.example/api/v2/notes?page=4 "
                "answered 503", "recovery_hint": {"action": "reconnect"}})
    flaky = world.conns["flaky"]
    [failed] = ConnectionOperations(world.home).run(flaky)
    world.grant([{"name": "notes"}], client_id="a-client-with-a-rather-long-identifier")
    with httpx2.Client(base_url=live.url) as http:
        flows = Flows(world, http)
        client = flows.register(client_name="Reading Lamp",
                                redirect_uris=["http://127.0.0.1/callback"])
        request_uri = flows.par(client, pkce()[1]).json()["request_uri"]
        consent = flows.consent_path(client, request_uri)
    paths = [
        "/console/", "/console/import", "/console/connect", "/console/records",
        "/console/records?stream=notes&q=imported", "/console/access", "/console/audit",
        consent, "/oauth/device", f"/console/connections/{world.conns['alice']}/delete",
        f"/console/connections/{flaky}/runs/{failed.run_id}",
        *(f"/console/connect/{key}" for key in sorted(world.home.catalog.manifests)),
        *(f"/console/connections/{c.connection_id}" for c in world.store.connections()),
    ]
    context = chromium.new_context(viewport={"width": 360, "height": 740})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(mint_link(world.store, live.url))
        wide = {}
        for path in paths:
            response = page.goto(f"{live.url}{path}")
            assert response is not None and response.status == 200, path
            scroll_width, client_width = page.evaluate(WIDTHS)
            if scroll_width > client_width:
                wide[path] = scroll_width
        page.goto(f"{live.url}/console/import")
        page.select_option('select[name="connector"]', "notes-export")
        page.set_input_files('input[name="archive"]', str(notes_file(live.files, "bob")))
        page.click("text=Upload and import")
        page.wait_for_selector(".receipt")
        scroll_width, client_width = page.evaluate(WIDTHS)
        if scroll_width > client_width:
            wide["the receipt"] = scroll_width
        assert client_width == 360 and wide == {}
    finally:
        context.close()
