"""The console connects and reconnects by OAuth against the Spotify double: the connect page's
"Connect with Spotify", a `reconnect_required` connection's Reconnect button, the callback
bringing the browser back to the connection; an expired refresh token; secrets never echoed."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx2

from ownstream.auth.console import mint_link
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.owner.provider_oauth import CALLBACK_PATH

from . import CLIENT_ID, REDIRECT_URI, SERVER, OAuthLab, query

RETURN_COOKIE = "ownstream_oauth_return"


def sign_in(lab: OAuthLab) -> None:
    link = mint_link(lab.store, SERVER).removeprefix(SERVER)
    assert lab.http.get(link, follow_redirects=False).status_code == 303


def post(lab: OAuthLab, page: str, action: str, **form: str) -> httpx2.Response:
    """Submit a form of a console page, with the session's CSRF token."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', lab.http.get(page).text)
    assert found is not None
    response: httpx2.Response = lab.http.post(
        action, data={"csrf_token": found.group(1), **form}, follow_redirects=False
    )
    lab.assert_no_secret(response.text)
    return response


def land(lab: OAuthLab, location: str) -> str:
    """The provider's redirect, delivered to the callback: it sends the console's browser
    back to the console. Returns that page's path."""
    back = lab.http.get(location, follow_redirects=False)
    lab.assert_no_secret(back.text)
    assert back.status_code == 303, back.text
    assert back.headers["referrer-policy"] == "no-referrer"
    assert RETURN_COOKIE not in lab.http.cookies  # used once
    return back.headers["location"]


def oauth_settings(double: SpotifyDouble) -> dict[str, str]:
    base = double.base_url
    return {
        "setting:api_base_url": base,
        "setting:token_url": base + "/api/token",
        "setting:authorization_url": base + "/authorize",
    }


def test_connect_with_spotify_from_the_console(lab: OAuthLab) -> None:
    sign_in(lab)
    form = lab.http.get("/console/connect/spotify")
    assert form.status_code == 200
    assert 'action="/console/connect/spotify/oauth"' in form.text
    assert "Connect with Spotify</button>" in form.text and REDIRECT_URI in form.text
    forged = lab.http.post("/console/connect/spotify/oauth", data={"client_id": CLIENT_ID})
    assert forged.status_code == 400 and "form expired" in forged.text

    started = post(lab, "/console/connect/spotify", "/console/connect/spotify/oauth",
                   client_id=CLIENT_ID, display_name="Ann's Spotify",
                   **oauth_settings(lab.double))
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(lab.double.base_url + "/authorize?")
    assert query(location)["redirect_uri"] == REDIRECT_URI
    cookie = started.headers["set-cookie"]
    assert f"Path={CALLBACK_PATH}" in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie

    page = land(lab, lab.approve_url(location, "ann"))
    [ann] = [c.connection_id for c in lab.store.connections()]
    assert urlsplit(page).path == f"/console/connections/{ann}"
    lab.remember_secrets(ann)
    shown = lab.http.get(page)
    assert shown.status_code == 200
    lab.assert_no_secret(shown.text)
    assert f"Connected spotify as spotify_user_id=ann: Ann&#39;s Spotify ({ann})." in shown.text
    assert 'role="status"' in shown.text
    assert [e["operation"] for e in lab.audit()][:2] == ["connect", "connect_oauth_start"]
    assert [o.status for o in lab.ops.run(ann)] == ["succeeded"]


def test_a_declined_console_connect_lands_on_the_connect_form(lab: OAuthLab) -> None:
    sign_in(lab)
    started = post(lab, "/console/connect/spotify", "/console/connect/spotify/oauth",
                   client_id=CLIENT_ID, **oauth_settings(lab.double))
    page = land(lab, lab.approve_url(started.headers["location"], "ann", approve=False))
    assert urlsplit(page).path == "/console/connect/spotify"
    shown = lab.http.get(page)
    assert shown.status_code == 200
    assert "did not authorize the connection (access_denied)" in shown.text
    assert lab.store.connections() == []


def test_a_browser_that_did_not_start_in_the_console_gets_the_page(lab: OAuthLab) -> None:
    """The CLI's flow: no cookie, so the callback answers its own page."""
    sign_in(lab)
    page = lab.callback(lab.approve(lab.start(), "ann"))
    assert page.status_code == 200 and "You can close this window" in page.text


def test_a_reconnect_required_connection_is_reconnected_from_its_page(lab: OAuthLab) -> None:
    ann = lab.connect_oauth("ann")
    lab.double.revoke_access("ann", CLIENT_ID)
    [failed] = lab.ops.run(ann)
    assert failed.status == "failed"
    sign_in(lab)
    reconnect_form = '<form method="post" action="/console/connect/spotify/oauth"'
    run_page = lab.http.get(f"/console/connections/{ann}/runs/{failed.run_id}")
    assert run_page.status_code == 200 and reconnect_form in run_page.text  # the gap's action

    page = lab.http.get(f"/console/connections/{ann}")
    assert page.status_code == 200
    command = f"ownstream connect spotify --oauth --connection {ann}"
    assert f'<code class="remediation">{command}</code>' in page.text  # the id intact
    assert ann.replace("_", " ") not in page.text
    reconnect = re.search(
        r'<form method="post" action="/console/connect/spotify/oauth" class="inline reconnect">'
        r'.*?name="connection_id" value="([^"]+)".*?>Reconnect</button>',
        page.text,
        re.S,
    )
    assert reconnect is not None and reconnect.group(1) == ann
    assert page.text.count(reconnect_form) == 2  # the verdict's, and the failed run's gap's
    overview = lab.http.get("/console/")
    assert f'name="connection_id" value="{ann}"' in overview.text
    assert ">Reconnect</button>" in overview.text
    health = lab.ok("GET", f"/v1/owner/connections/{ann}/diagnostics")["health"]
    assert health["remediation"] == command
    assert health["action"] == {"code": "reconnect_oauth", "connector_key": "spotify"}

    # the button: the connection's own app and settings, no form to fill in
    started = post(lab, f"/console/connections/{ann}", "/console/connect/spotify/oauth",
                   connection_id=ann)
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(lab.double.base_url + "/authorize?")
    assert query(location)["client_id"] == CLIENT_ID
    back = land(lab, lab.approve_url(location, "ann"))
    assert urlsplit(back).path == f"/console/connections/{ann}"
    lab.remember_secrets(ann)
    shown = lab.http.get(back)
    lab.assert_no_secret(shown.text)
    assert "Reconnected spotify as spotify_user_id=ann" in shown.text
    assert [o.status for o in lab.ops.run(ann)] == ["succeeded"]
    assert lab.ops.health(lab.store.connection(ann)).state == "healthy"


def test_a_reconnect_as_another_account_is_refused_on_the_connection_page(
    lab: OAuthLab,
) -> None:
    ann = lab.connect_oauth("ann")
    sign_in(lab)
    started = post(lab, f"/console/connections/{ann}", "/console/connect/spotify/oauth",
                   connection_id=ann)
    back = land(lab, lab.approve_url(started.headers["location"], "ben"))
    assert urlsplit(back).path == f"/console/connections/{ann}"
    shown = lab.http.get(back)
    assert "proves a different spotify_user_id" in shown.text and 'role="alert"' in shown.text
    assert [c.connection_id for c in lab.store.connections()] == [ann]


def test_an_expired_refresh_token_requires_a_reconnect(lab: OAuthLab) -> None:
    """Not a revocation: the grant at Spotify lives on, only the refresh token is dead."""
    ann, ben = lab.connect_oauth("ann"), lab.connect_oauth("ben")
    refresh_token = lab.stored(ann, "refresh_token")
    lab.double.expire_access_tokens("ann")
    lab.double.expire_refresh_token(refresh_token)

    [failed] = lab.ops.run(ann)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["recovery_hint"]["action"] == "reconnect"
    assert lab.refreshes_with(refresh_token) == 1
    health = lab.ops.health(lab.store.connection(ann))
    assert (health.state, health.reason) == ("blocked", "reconnect_required")
    assert health.action is not None and health.action.code == "reconnect_oauth"
    assert health.remediation == f"ownstream connect spotify --oauth --connection {ann}"
    assert f"do: {health.remediation}" in lab.cli("connections", "show", ann).stdout
    assert lab.ops.health(lab.store.connection(ben)).state == "unknown"  # untouched

    # the console's Reconnect button works: the connection's app is reused
    sign_in(lab)
    page = lab.http.get(f"/console/connections/{ann}").text
    assert f'name="connection_id" value="{ann}"' in page and ">Reconnect</button>" in page
    started = post(lab, f"/console/connections/{ann}", "/console/connect/spotify/oauth",
                   connection_id=ann)
    assert query(started.headers["location"])["client_id"] == CLIENT_ID
    back = land(lab, lab.approve_url(started.headers["location"], "ann"))
    assert urlsplit(back).path == f"/console/connections/{ann}"
    lab.remember_secrets(ann)
    assert [o.status for o in lab.ops.run(ann)] == ["succeeded"]
    assert lab.refreshes_with(refresh_token) == 1  # the dead token is never tried again
    assert lab.ops.health(lab.store.connection(ann)).state == "healthy"


def test_a_failed_connect_never_echoes_a_secret(lab: OAuthLab) -> None:
    sign_in(lab)
    settings = {"setting:api_base_url": lab.double.base_url}
    rejected = "BQ-rejected-" + "x" * 20  # Spotify does not know it: HTTP 401
    lab.secrets.add(rejected)
    bad = post(lab, "/console/connect/spotify", "/console/connect/spotify",
               **{"secret:access_token": rejected}, **settings)
    assert bad.status_code == 400 and "rejected the access token" in bad.text
    assert lab.double.base_url in bad.text  # settings are kept, secrets are not

    token = lab.issue("ann")
    lab.double.inject_fault("/v1/me", 503, times=50)
    outage = post(lab, "/console/connect/spotify", "/console/connect/spotify",
                  **{"secret:access_token": token, "secret:client_secret": "shh-client-secret"},
                  **settings)
    lab.secrets.add("shh-client-secret")
    lab.assert_no_secret(outage.text)
    assert outage.status_code == 400 and "unavailable after 3 tries" in outage.text

    no_app = post(lab, "/console/connect/spotify", "/console/connect/spotify/oauth",
                  client_secret="shh-client-secret", **settings)
    lab.assert_no_secret(no_app.text)
    assert no_app.status_code == 400 and "give the client id" in no_app.text
    assert lab.store.connections() == []
