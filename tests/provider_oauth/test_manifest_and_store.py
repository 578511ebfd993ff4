"""The manifest's `oauth` block, and the store's pending authorizations (single use)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ownstream.connectors.spotify
from ownstream.errors import InvalidManifest
from ownstream.owner.provider_oauth import state_hash
from ownstream.registry.manifests import parse_manifest

from . import OAuthLab, query

SPOTIFY = json.loads(
    (Path(ownstream.connectors.spotify.__file__).parent / "manifest.json").read_text()
)
STREAM = {
    "name": "x",
    "semantics": "append_only",
    "primary_key": ["id"],
    "schema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
}


def parse(oauth: Any, secrets: list[str] | None = None) -> Any:
    document = {**SPOTIFY, "oauth": oauth, "streams": [STREAM]}
    if secrets is not None:
        document["setup"] = {
            **SPOTIFY["setup"],
            "secrets": [{"name": n, "env": n.upper()} for n in secrets],
        }
    return parse_manifest(document, lambda name: None)


def test_the_spotify_manifest_declares_its_provider() -> None:
    provider = parse(SPOTIFY["oauth"]).oauth
    assert provider.pkce == "S256" and provider.rotates_refresh_tokens is True
    assert provider.authorization_url == "https://accounts.spotify.com/authorize"
    assert "user-read-recently-played" in provider.scopes and provider.client_id is None


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"pkce": "plain"}, "oauth.pkce"),
        ({"token_url": "http://accounts.example.org/token"}, "oauth.token_url"),
        ({"authorization_url": None}, "oauth.authorization_url"),
        ({"scopes": "one two"}, "oauth.scopes"),
        ({"rotates_refresh_tokens": "yes"}, "oauth.rotates_refresh_tokens"),
        ({"client_id": ""}, "oauth.client_id"),
        ({"client_secret_required": True}, "oauth"),  # and no client_secret declared
    ],
)
def test_a_bad_oauth_block_is_refused_naming_the_field(change: dict[str, Any], param: str) -> None:
    oauth = {**SPOTIFY["oauth"], **change}
    with pytest.raises(InvalidManifest) as raised:
        parse(oauth, ["access_token", "refresh_token", "client_id"])
    assert raised.value.param == param


def test_oauth_needs_the_secrets_it_fills_in() -> None:
    with pytest.raises(InvalidManifest, match="declare refresh_token, client_id"):
        parse(SPOTIFY["oauth"], ["access_token"])


def test_a_pending_authorization_is_claimed_once(lab: OAuthLab) -> None:
    started = lab.start()
    hashed = state_hash(query(started.authorization_url)["state"])
    store = lab.store
    claimed = store.claim_provider_authorization(hashed)
    assert claimed is not None and claimed.status == "completing"
    assert claimed.sealed_verifier is not None
    again = store.claim_provider_authorization(hashed)
    assert again is not None and again.status == "completing"  # seen, not claimed twice
    assert store.claim_provider_authorization(state_hash("other")) is None
    # only the holder of the expected status may end it
    ended = {"code": "x", "message": "y"}
    assert not store.finish_provider_authorization(
        started.authorization_id, expected="pending", status="expired",
        connection_id=None, outcome=ended,
    )
    assert store.finish_provider_authorization(
        started.authorization_id, expected="completing", status="refused",
        connection_id=None, outcome=ended,
    )
    finished = store.provider_authorization(started.authorization_id)
    assert finished.status == "refused" and finished.outcome == ended
    assert finished.sealed_verifier is None and finished.finished_at is not None
