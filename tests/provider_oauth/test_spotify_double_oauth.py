"""The double's accounts service behaves as Spotify documents the code flow with PKCE."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from ownstream.dev.spotify_data import SpotifyUser
from ownstream.dev.spotify_double import SpotifyDouble

from . import CLIENT_ID, REDIRECT_URI, query

VERIFIER = "v" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as client:
        yield client


def authorize_url(double: SpotifyDouble, **overrides: str) -> str:
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "state": "st4te",
        "scope": "user-read-private user-read-email",
        "code_challenge_method": "S256",
        "code_challenge": CHALLENGE.decode(),
        **overrides,
    }
    return f"{double.base_url}/authorize?{urlencode(params)}"


def exchange(
    http: httpx.Client, double: SpotifyDouble, code: str, **overrides: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "code_verifier": VERIFIER,
        **overrides,
    }
    return http.post(f"{double.base_url}/api/token", data=form)


def refresh(http: httpx.Client, double: SpotifyDouble, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT_ID}
    return http.post(f"{double.base_url}/api/token", data=form)


def test_an_approved_code_trades_once_for_tokens(double: SpotifyDouble, http: httpx.Client) -> None:
    location = double.consent(authorize_url(double), "ann")
    assert location.startswith(REDIRECT_URI + "?") and query(location)["state"] == "st4te"
    code = query(location)["code"]
    answer = exchange(http, double, code)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["scope"] == "user-read-private user-read-email" and tokens["refresh_token"]
    me = http.get(
        f"{double.base_url}/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["id"] == "ann"
    again = exchange(http, double, code)
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid authorization code",
    }


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"code_verifier": "w" * 64}, "code_verifier was incorrect"),
        ({"redirect_uri": REDIRECT_URI + "x"}, "Invalid redirect URI"),
    ],
)
def test_a_code_needs_its_verifier_and_redirect_uri(
    double: SpotifyDouble, http: httpx.Client, overrides: dict[str, str], description: str
) -> None:
    code = query(double.consent(authorize_url(double), "ann"))["code"]
    answer = exchange(http, double, code, **overrides)
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant", "error_description": description}


def test_bad_authorization_requests(double: SpotifyDouble, http: httpx.Client) -> None:
    for overrides, text in (
        ({"client_id": "nobody"}, "Invalid client"),
        ({"redirect_uri": "http://127.0.0.1:1/elsewhere"}, "Invalid redirect URI"),
    ):
        page = http.get(authorize_url(double, **overrides))
        assert page.status_code == 400 and text in page.text  # never redirected elsewhere
    for overrides, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ):
        location = double.consent(authorize_url(double, **overrides), "ann")
        assert query(location) == {"error": error, "state": "st4te"}
    denied = double.consent(authorize_url(double), "ann", approve=False)
    assert query(denied) == {"error": "access_denied", "state": "st4te"}


@pytest.mark.parametrize("rotate", [True, False])
def test_refresh_rotates_when_configured(
    users: dict[str, SpotifyUser], http: httpx.Client, rotate: bool
) -> None:
    with SpotifyDouble(list(users.values()), rotate_refresh_tokens=rotate) as double:
        double.register_client(CLIENT_ID, [REDIRECT_URI])
        code = query(double.consent(authorize_url(double), "ann"))["code"]
        first = exchange(http, double, code).json()["refresh_token"]
        answer = refresh(http, double, first).json()
        assert answer["access_token"]
        if rotate:
            assert answer["refresh_token"] != first
            assert refresh(http, double, first).json()["error"] == "invalid_grant"
            assert refresh(http, double, answer["refresh_token"]).status_code == 200
        else:
            assert "refresh_token" not in answer
            assert refresh(http, double, first).status_code == 200


def test_revoking_access_kills_every_token_of_that_grant(
    double: SpotifyDouble, http: httpx.Client
) -> None:
    tokens = {}
    for user in ("ann", "ben"):
        code = query(double.consent(authorize_url(double), user))["code"]
        tokens[user] = exchange(http, double, code).json()
    double.revoke_access("ann", CLIENT_ID)
    me = f"{double.base_url}/v1/me"
    for user, expected in (("ann", 401), ("ben", 200)):
        bearer = {"Authorization": f"Bearer {tokens[user]['access_token']}"}
        assert http.get(me, headers=bearer).status_code == expected
    assert refresh(http, double, tokens["ann"]["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(http, double, tokens["ben"]["refresh_token"]).status_code == 200


def test_a_grant_without_pkce_refreshes_only_with_the_client_secret(
    double: SpotifyDouble, http: httpx.Client
) -> None:
    token = double.issue_refresh_token("ann", client_id="confidential", client_secret="s3cret")
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "confidential"}
    assert http.post(f"{double.base_url}/api/token", data=form).json()["error"] == "invalid_client"
    basic = http.post(f"{double.base_url}/api/token", data=form, auth=("confidential", "s3cret"))
    assert basic.status_code == 200


def test_access_tokens_expire(double: SpotifyDouble, http: httpx.Client) -> None:
    code = query(double.consent(authorize_url(double), "ann"))["code"]
    access = exchange(http, double, code).json()["access_token"]
    double.expire_access_tokens("ann")
    expired = http.get(f"{double.base_url}/v1/me", headers={"Authorization": f"Bearer {access}"})
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "The access token expired"
