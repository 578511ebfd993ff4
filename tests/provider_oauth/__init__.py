"""Connecting by OAuth against the Spotify double: start, consent, callback, refreshes, health.

`OAuthLab` is the owner `Lab` whose server runs at a loopback URL registered with the double
as the callback of the app `CLIENT_ID`; the owner's browser is `approve` (the consent page of
the double, over HTTP) followed by `callback` (the redirect delivered to the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2

from ownstream.owner import ProviderOAuth
from ownstream.owner.provider_oauth import CALLBACK_PATH, StartedAuthorization
from tests.owner import Lab

CLIENT_ID = "ownstream-test"
SERVER = "http://127.0.0.1:8765"
REDIRECT_URI = SERVER + CALLBACK_PATH


@dataclass
class OAuthLab(Lab):
    @property
    def flow(self) -> ProviderOAuth:
        return ProviderOAuth(self.home)

    def oauth_settings(self) -> dict[str, str]:
        return {**self.settings(), "authorization_url": self.double.base_url + "/authorize"}

    def start(self, **kwargs: Any) -> StartedAuthorization:
        kwargs.setdefault("settings", self.oauth_settings())
        return self.flow.start(
            "spotify", redirect_base=SERVER, client_id=CLIENT_ID, **kwargs
        )

    def approve(self, started: StartedAuthorization, user: str, *, approve: bool = True) -> str:
        return self.approve_url(started.authorization_url, user, approve=approve)

    def approve_url(self, url: str, user: str, *, approve: bool = True) -> str:
        """The owner approves at Spotify as `user`: where Spotify sends the browser back."""
        location = self.double.consent(url, user, approve=approve)
        assert location.startswith(REDIRECT_URI + "?"), location
        return location

    def callback(self, location: str) -> httpx2.Response:
        """The browser follows Spotify's redirect to the server's callback."""
        response: httpx2.Response = self.http.get(location)
        self.assert_no_secret(response.text)
        return response

    def connect_oauth(self, user: str, **kwargs: Any) -> str:
        response = self.callback(self.approve(self.start(**kwargs), user))
        assert response.status_code == 200, response.text
        [connection] = [
            c for c in self.home.store.connections() if c.identity and c.identity.value == user
        ]
        self.remember_secrets(connection.connection_id)
        return connection.connection_id

    def stored(self, connection_id: str, name: str) -> str:
        """A connection's stored secret, opened; tokens are remembered, so that a test fails
        wherever one shows up (`assert_no_secret`)."""
        sealed = self.store.connection_config(connection_id, "spotify").sealed_secrets[name]
        value: str = self.home.vault.open(connection_id, "spotify", name, sealed)
        if name != "client_id":  # public: it is in every authorization URL
            self.secrets.add(value)
        return value

    def remember_secrets(self, connection_id: str) -> None:
        for name in ("access_token", "refresh_token"):
            self.stored(connection_id, name)

    def sealed_rows(self, connection_id: str) -> list[tuple[Any, ...]]:
        with self.db() as db:
            return db.execute(
                "SELECT name, sealed, fingerprint, created_at, rotated_at "
                "FROM connection_credentials WHERE connection_id = ? ORDER BY name",
                (connection_id,),
            ).fetchall()

    def refreshes_with(self, refresh_token: str) -> int:
        """How often the double was asked to refresh with this refresh token."""
        return self.double.token_requests.count(("refresh_token", refresh_token))


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
