"""`ownstream connect spotify --oauth` and the owner endpoints the console's connect button uses."""

from __future__ import annotations

import json
import webbrowser

import pytest

from ownstream.auth.console import PUBLIC_URL_SETTING

from . import CLIENT_ID, REDIRECT_URI, SERVER, OAuthLab, query


def oauth_args(lab: OAuthLab, *extra: str, server: bool = True) -> list[str]:
    args = ["connect", "spotify", "--oauth", "--client-id", CLIENT_ID]
    args += ["--server-url", SERVER] if server else []
    for name, value in lab.oauth_settings().items():
        args += ["--setting", f"{name}={value}"]
    return [*args, *extra]


def test_the_cli_prints_the_url_opens_a_browser_and_waits_for_the_callback(
    lab: OAuthLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    def browser(url: str) -> bool:
        """The owner's browser: approve at Spotify as ann, follow the redirect to `serve`."""
        opened.append(url)
        assert lab.callback(lab.approve_url(url, "ann")).status_code == 200
        return True

    monkeypatch.setattr(webbrowser, "open", browser)
    result = lab.cli(*oauth_args(lab, "--name", "Ann", "--json"))
    payload = json.loads(result.stdout)
    assert payload["created"] is True
    assert payload["identity"] == {"claim": "spotify_user_id", "value": "ann"}
    assert payload["connection"]["display_name"] == "Ann"
    [url] = opened
    assert url in result.stderr.replace("\n", "")  # printed, for a browser elsewhere
    lab.remember_secrets(payload["connection_id"])
    assert [o.status for o in lab.ops.run(payload["connection_id"])] == ["succeeded"]


def test_the_cli_gives_up_after_wait_and_cancels_the_authorization(lab: OAuthLab) -> None:
    lab.store.put_auth_setting(PUBLIC_URL_SETTING, SERVER)  # as `ownstream serve` announces it
    args = oauth_args(lab, "--no-browser", "--wait", "1", "--json", server=False)
    result = lab.cli(*args, code=1)
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "provider_authorization_pending"
    authorization = lab.store.provider_authorization(error["authorization_id"])
    assert authorization.status == "expired" and authorization.sealed_verifier is None
    assert authorization.redirect_uri == REDIRECT_URI
    url = result.stderr.replace("\n", "").split("):", 1)[1].strip()
    late = lab.callback(lab.approve_url(url, "ann"))  # approving later connects nothing
    assert late.status_code == 400 and "expired" in late.text
    assert lab.store.connections() == []


def test_the_cli_refuses_tokens_with_oauth(lab: OAuthLab) -> None:
    error = json.loads(
        lab.cli(*oauth_args(lab, "--secret", "access_token=x", "--json"), code=1).stdout
    )["error"]
    assert error["code"] == "invalid_request" and "give only client_secret" in error["message"]
    missing = json.loads(
        lab.cli("connect", "spotify", "--oauth", "--server-url", SERVER, "--json", code=1).stdout
    )["error"]
    assert missing["param"] == "client_id"
    plain = json.loads(
        lab.cli(*oauth_args(lab, "--json"), "--server-url", "http://example.org", code=1).stdout
    )["error"]
    assert plain["param"] == "server_url"
    assert lab.store.connections() == []


def test_the_owner_api_starts_an_authorization_and_reports_on_it(lab: OAuthLab) -> None:
    body = {
        "connector_key": "spotify",
        "client_id": CLIENT_ID,
        "settings": lab.oauth_settings(),
        "display_name": "From the console",
    }
    started = lab.ok("POST", "/v1/owner/connect/oauth", 201, json=body)
    assert started["status"] == "pending" and started["redirect_uri"].startswith(SERVER)
    assert query(started["authorization_url"])["code_challenge_method"] == "S256"
    path = f"/v1/owner/connect/oauth/{started['authorization_id']}"
    assert "authorization_url" not in lab.ok("GET", path)

    assert lab.callback(lab.approve_url(started["authorization_url"], "ben")).status_code == 200
    done = lab.ok("GET", path)
    assert done["status"] == "connected"
    assert done["outcome"]["identity"] == {"claim": "spotify_user_id", "value": "ben"}
    assert lab.store.connection(done["connection_id"]).display_name == "From the console"

    unauthenticated = lab.http.post("/v1/owner/connect/oauth", json=body)
    assert unauthenticated.status_code == 401
    lab.error("POST", "/v1/owner/connect/oauth", 400, "invalid_argument", json={})
    lab.error(
        "POST",
        "/v1/owner/connect/oauth",
        400,
        "invalid_request",
        json={"connector_key": "spotify-export", "client_id": CLIENT_ID},
    )
    lab.error("GET", "/v1/owner/connect/oauth/pa_unknown", 404, "not_found")
