"""The consent page in a real browser (Playwright driving the system Chromium): the owner signs
in with a one-time link, a client's page sends the browser (cross-site) to a PAR request, the
owner unticks one field and one connection and approves; the client exchanges the code with its
PKCE verifier, and its reads lack that field and that connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from ownstream.auth.console import mint_link
from tests.api.conftest import World
from tests.services.server import serving

from .conftest import notes_details, notes_world, pkce

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

CLIENT_SITE = "http://localhost:4444"  # another site than the server's 127.0.0.1
CALLBACK = "http://127.0.0.1:4444/callback"


@dataclass
class Live:
    url: str
    world: World


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    world = notes_world(tmp_path)
    with serving(world.home) as url:
        yield Live(url, world)


def test_owner_narrows_a_par_request_in_the_browser(live: Live, chromium: Browser) -> None:
    alice, bob, carol = (live.world.conns[n] for n in ("alice", "bob", "carol"))
    with httpx.Client(base_url=live.url) as http:
        client_id = http.post(
            "/oauth/register",
            json={"client_name": "Notes App", "token_endpoint_auth_method": "none",
                  "redirect_uris": ["http://127.0.0.1/callback"]},
        ).json()["client_id"]
        verifier, challenge = pkce()
        request_uri = http.post(
            "/oauth/par",
            data={"client_id": client_id, "response_type": "code", "redirect_uri": CALLBACK,
                  "code_challenge": challenge, "code_challenge_method": "S256", "state": "b1",
                  "authorization_details": json.dumps(notes_details())},
        ).json()["request_uri"]

    authorize = f"{live.url}/oauth/authorize?" + urlencode(
        {"client_id": client_id, "request_uri": request_uri}
    )
    returned: list[str] = []

    def client_site(route: Route) -> None:
        route.fulfill(
            content_type="text/html",
            body=f'<a id="connect" href="{authorize}">Connect your notes</a>',
        )

    def callback(route: Route) -> None:
        returned.append(route.request.url)
        route.fulfill(content_type="text/html", body="<p>connected</p>")

    context = chromium.new_context()
    try:
        page = context.new_page()
        page.route(f"{CLIENT_SITE}/**", client_site)
        page.route(f"{CALLBACK}*", callback)
        page.goto(mint_link(live.world.store, live.url))
        assert page.url == f"{live.url}/console/"
        page.goto(f"{CLIENT_SITE}/start")
        page.click("#connect")
        page.wait_for_selector("form.consent")
        assert "Notes App" in page.inner_text("h1")
        assert "unverified" in page.inner_text(".badge")
        page.uncheck('input[name="field:notes"][value="tag"]')
        page.uncheck(f'input[name="connection:notes"][value="{bob}"]')
        page.click('button[value="approve"]')
        page.wait_for_function("document.body.innerText.includes('connected')")
    finally:
        context.close()

    [landed] = returned
    query = parse_qs(urlsplit(landed).query)
    assert query["state"] == ["b1"]
    with httpx.Client(base_url=live.url) as http:
        tokens = http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "code": query["code"][0],
                  "redirect_uri": CALLBACK, "code_verifier": verifier, "client_id": client_id},
        ).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        records = http.get("/v1/streams/notes/records", params={"limit": 100},
                           headers=bearer).json()["data"]
    assert records and {r["connection_id"] for r in records} == {alice, carol}
    assert all(set(r["data"]) == {"note_id", "title", "updated_at"} for r in records)
