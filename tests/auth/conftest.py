"""Client-access fixtures: a standard world (Spotify + notes connections) served at a loopback
public URL, with helpers that act as a client application and as the signed-in owner."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.auth import DATA_ACCESS_TYPE
from ownstream.auth.console import mint_link
from tests.api.conftest import World, make_notes

BASE = "http://127.0.0.1:8765"
REDIRECT = "http://127.0.0.1:4444/callback"


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def notes_details(**extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "type": DATA_ACCESS_TYPE,
            "purpose_description": "Show your notes in Notes App",
            "access_mode": "continuous",
            "streams": [{"name": "notes", "fields": ["note_id", "title", "tag", "updated_at"]}],
            **extra,
        }
    ]


@dataclass
class Registered:
    client_id: str
    secret: str | None

    @property
    def auth(self) -> httpx2.Auth:
        """HTTP Basic for a confidential client; nothing (the base `Auth`) for a public one."""
        return httpx2.BasicAuth(self.client_id, self.secret) if self.secret else httpx2.Auth()

    def form(self, **fields: Any) -> dict[str, Any]:
        """A token-endpoint form: a public client names itself, a confidential one uses Basic."""
        return fields if self.secret else {"client_id": self.client_id, **fields}


@dataclass
class Flows:
    """One owner's server, the owner's browser session and a client's HTTP calls."""

    world: World
    http: httpx2.Client  # a TestClient on the app

    @property
    def store(self) -> Any:
        return self.world.store

    @property
    def owner_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.owner_token}"}

    def conns(self, *names: str) -> list[str]:
        return [self.world.conns[n] for n in names]

    # the client -----------------------------------------------------------------------------
    def register(self, **metadata: Any) -> Registered:
        body = {"client_name": "Notes App", "token_endpoint_auth_method": "none", **metadata}
        response = self.http.post("/oauth/register", json=body)
        assert response.status_code == 201, response.text
        found = response.json()
        return Registered(found["client_id"], found.get("client_secret"))

    def web_client(self, *, confidential: bool = False) -> Registered:
        return self.register(
            redirect_uris=["http://127.0.0.1/callback"],
            token_endpoint_auth_method="client_secret_basic" if confidential else "none",
        )

    def par(self, client: Registered, challenge: str, **fields: Any) -> httpx2.Response:
        form = {
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st-1",
            "authorization_details": json.dumps(notes_details()),
            **fields,
        }
        return self.http.post("/oauth/par", data=client.form(**form), auth=client.auth)

    def authorize(self, client: Registered, challenge: str, **params: Any) -> httpx2.Response:
        """A plain authorization request (no PAR), as an MCP client sends it."""
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st-1",
            **params,
        }
        return self.http.get("/oauth/authorize", params=query, follow_redirects=False)

    def consent_path(self, client: Registered, request_uri: str) -> str:
        response = self.http.get(
            "/oauth/authorize",
            params={"client_id": client.client_id, "request_uri": request_uri},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        return urlsplit(response.headers["location"]).path

    def token(self, client: Registered, **fields: Any) -> httpx2.Response:
        return self.http.post("/oauth/token", data=client.form(**fields), auth=client.auth)

    def exchange(self, client: Registered, code: str, verifier: str) -> httpx2.Response:
        return self.token(
            client,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )

    def read(self, token: str, path: str, **params: Any) -> httpx2.Response:
        return self.http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    # the owner ------------------------------------------------------------------------------
    def sign_in(self) -> None:
        link = mint_link(self.store, BASE)
        response = self.http.get(link.removeprefix(BASE), follow_redirects=False)
        assert response.status_code == 303, response.text

    def consent_form(self, path: str) -> tuple[str, str]:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found is not None
        return page.text, found.group(1)

    def decide(self, path: str, **form: Any) -> httpx2.Response:
        _, csrf = self.consent_form(path)
        return self.http.post(path, data={"csrf_token": csrf, **form}, follow_redirects=False)

    def notes_form(
        self, fields: list[str], connections: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """The consent form with `notes` ticked, these fields and connections (default all)."""
        return {
            "stream": "notes",
            "field:notes": fields,
            "connection:notes": connections or self.conns("alice", "bob", "carol"),
            **extra,
        }

    def approve_in_browser(self, path: str, **form: Any) -> str:
        """Approve on the consent page; the code the browser is redirected back with."""
        response = self.decide(path, decision="approve", **form)
        assert response.status_code == 303, response.text
        location = urlsplit(response.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
        query = parse_qs(location.query)
        assert query["state"] == ["st-1"]
        return query["code"][0]

    def code_flow(self, client: Registered, **approval: Any) -> tuple[str, dict[str, Any]]:
        """PAR, consent (approved as asked unless `approval` narrows), code exchange."""
        verifier, challenge = pkce()
        request_uri = self.par(client, challenge).json()["request_uri"]
        path = self.consent_path(client, request_uri)
        self.sign_in()
        form = approval or self.notes_form(["note_id", "title", "tag", "updated_at"])
        code = self.approve_in_browser(path, **form)
        response = self.exchange(client, code, verifier)
        assert response.status_code == 200, response.text
        return code, response.json()

    def owner(self, method: str, path: str, **kw: Any) -> httpx2.Response:
        return self.http.request(method, path, headers=self.owner_headers, **kw)

    def audit(self, operation: str) -> list[dict[str, Any]]:
        events = self.owner("GET", "/v1/owner/audit").json()["data"]
        return [e for e in events if e["operation"] == operation]


def notes_world(root: Path) -> World:
    """Three notes connections over two acquisition paths (alice and bob by API, carol by
    export), the data every client-access test reads."""
    world = World.create(root)
    world.install_notes()
    world.connect_notes("alice", make_notes("alice"), label="Alice notebook")
    world.connect_notes("bob", make_notes("bob", month_offset=3), label="Bob notebook")
    world.import_notes("carol", make_notes("carol", month_offset=6))
    return world


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Flows]:
    world = notes_world(tmp_path)
    with TestClient(create_app(world.home, BASE), base_url=BASE) as http:
        yield Flows(world, http)
