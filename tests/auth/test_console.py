"""The owner's browser sign-in: one-time links, server-side sessions, CSRF, page headers."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ownstream.api.app import create_app
from ownstream.auth.console import SESSION_COOKIE, mint_link
from ownstream.cli.main import app

from .conftest import BASE, Flows, pkce


def test_a_sign_in_link_works_once_and_sets_a_strict_http_only_cookie(flows: Flows) -> None:
    link = mint_link(flows.store, BASE, "/console/authorizations/azr_x").removeprefix(BASE)
    first = flows.http.get(link, follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/console/authorizations/azr_x"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    flows.http.cookies.clear()
    reused = flows.http.get(link, follow_redirects=False)
    assert reused.status_code == 400 and "already used" in reused.text
    assert SESSION_COOKIE not in reused.headers.get("set-cookie", "")
    with flows.world.db() as db:
        stored = {row[0] for row in db.execute("SELECT link_hash FROM console_links")}
    assert link.split("token=")[1].split("&")[0] not in stored  # only its hash


def test_next_is_only_ever_a_local_path(flows: Flows) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        link = mint_link(flows.store, BASE, target).removeprefix(BASE)
        response = flows.http.get(link, follow_redirects=False)
        assert response.headers["location"] == "/console/"


def test_pages_need_a_session_and_come_back_once_for_a_strict_cookie(flows: Flows) -> None:
    bounce = flows.http.get("/console/")
    assert bounce.status_code == 200 and 'http-equiv="refresh"' in bounce.text
    assert "resume=1" in bounce.text
    signed_out = flows.http.get("/console/", params={"resume": "1"})
    assert signed_out.status_code == 401 and "ownstream console-link" in signed_out.text
    assert 'http-equiv="refresh"' not in signed_out.text
    flows.sign_in()
    home = flows.http.get("/console/")
    assert home.status_code == 200 and "Your connections" in home.text
    for name, value in (
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ):
        assert home.headers[name] == value
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]


def test_forms_need_the_csrf_token_and_sign_out_ends_the_session(flows: Flows) -> None:
    client = flows.web_client()
    _, challenge = pkce()
    path = flows.consent_path(client, flows.par(client, challenge).json()["request_uri"])
    flows.sign_in()
    forged = flows.http.post(path, data={"decision": "approve", **flows.notes_form(["title"])})
    assert forged.status_code == 400 and "form expired" in forged.text
    assert flows.store.authorization(path.rsplit("/", 1)[1]).status == "pending"
    _, csrf = flows.consent_form(path)
    no_csrf = flows.http.post("/console/logout")
    assert no_csrf.status_code == 400
    out = flows.http.post("/console/logout", data={"csrf_token": csrf})
    assert out.status_code == 200 and "Signed out" in out.text
    after = flows.http.get(path, params={"resume": "1"})
    assert after.status_code == 401


def test_an_expired_session_is_refused(flows: Flows) -> None:
    flows.sign_in()
    with flows.world.db() as db:
        db.execute("UPDATE console_sessions SET expires_at = '2000-01-01T00:00:00.000Z'")
    expired = flows.http.get("/console/", params={"resume": "1"})
    assert expired.status_code == 401 and "Your session has ended" in expired.text


def test_console_link_command_mints_a_working_link(flows: Flows) -> None:
    result = CliRunner().invoke(
        app, ["--home", str(flows.world.home.path), "console-link", "--public-url", BASE,
              "--json"]
    )
    url = json.loads(result.stdout)["url"]
    assert url.startswith(f"{BASE}/console/login?token=")
    assert flows.http.get(url.removeprefix(BASE), follow_redirects=False).status_code == 303


def test_the_session_cookie_is_secure_behind_https(flows: Flows) -> None:
    https = "https://owner.example"
    with TestClient(create_app(flows.world.home, https), base_url=https) as http:
        link = mint_link(flows.store, https).removeprefix(https)
        response = http.get(link, follow_redirects=False)
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]
