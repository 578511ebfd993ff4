"""The outbound OAuth 2 client: the authorization URL with PKCE, and the token requests.

Authlib builds the pieces (random state and verifier, the S256 code challenge, the
authorization URL, the token request body and the client authentication); httpx sends them.
The runtime exchanges an authorization code when the provider redirects back; a connector
refreshes with `refresh` during its runs and hands the answer back with CREDENTIALS (the SDK's
`credentials`). Token values never appear in an exception or a repr.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

STATE_CHARS = 43
VERIFIER_CHARS = 64  # RFC 7636 allows 43 to 128 unreserved characters
MAX_ERROR_CHARS = 80


class TokenRequestRefused(Exception):
    """The token endpoint answered an OAuth error. `invalid_grant` means the code or refresh
    token is not (or no longer) valid: used, expired, revoked, or a PKCE verifier mismatch."""

    def __init__(self, error: str, status: int) -> None:
        super().__init__(f"the token endpoint refused the request (HTTP {status} {error})")
        self.error = error
        self.status = status


class TokenEndpointUnavailable(Exception):
    """The token endpoint could not be reached, failed, or answered something unusable."""


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)  # None: keep using the one you have
    expires_in: int | None
    scope: str | None

    def secrets(self) -> dict[str, str]:
        """The values to store (or hand back): the access token, and a new refresh token."""
        found = {"access_token": self.access_token}
        if self.refresh_token:
            found["refresh_token"] = self.refresh_token
        return found


def new_state() -> str:
    return str(generate_token(STATE_CHARS))


def new_verifier() -> str:
    return str(generate_token(VERIFIER_CHARS))


def authorization_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    state: str,
    verifier: str,
) -> str:
    """Where the owner's browser goes to approve: the code flow with an S256 challenge."""
    return str(
        prepare_grant_uri(
            endpoint,
            client_id=client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=list(scopes) or None,
            state=state,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
    )


def exchange_code(
    http: httpx.Client,
    token_url: str,
    *,
    client_id: str,
    client_secret: str | None,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> TokenResponse:
    body = prepare_token_request(
        "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
    )
    return _token_request(http, token_url, body, client_id, client_secret)


def refresh(
    http: httpx.Client,
    token_url: str,
    *,
    client_id: str,
    client_secret: str | None,
    refresh_token: str,
) -> TokenResponse:
    body = prepare_token_request("refresh_token", refresh_token=refresh_token)
    return _token_request(http, token_url, body, client_id, client_secret)


def _token_request(
    http: httpx.Client, token_url: str, body: str, client_id: str, client_secret: str | None
) -> TokenResponse:
    """A confidential client authenticates with HTTP Basic; a public (PKCE) one sends only
    its client_id."""
    method = "client_secret_basic" if client_secret else "none"
    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    url, headers, body = ClientAuth(client_id, client_secret, method).prepare(
        "POST", token_url, headers, body
    )
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.TransportError as exc:
        raise TokenEndpointUnavailable(
            f"the token endpoint was unreachable ({type(exc).__name__})"
        ) from None
    if response.status_code >= 500:
        raise TokenEndpointUnavailable(
            f"the token endpoint failed with HTTP {response.status_code}"
        )
    answer: Any
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise TokenEndpointUnavailable(
            f"the token endpoint answered HTTP {response.status_code} without a JSON object"
        )
    if response.status_code != 200 or "error" in answer:
        error = answer.get("error")
        raise TokenRequestRefused(
            error[:MAX_ERROR_CHARS] if isinstance(error, str) else "invalid_request",
            response.status_code,
        )
    access, refreshed = answer.get("access_token"), answer.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise TokenEndpointUnavailable("the token endpoint answered without an access token")
    expires_in, scope = answer.get("expires_in"), answer.get("scope")
    return TokenResponse(
        access_token=access,
        refresh_token=refreshed if isinstance(refreshed, str) and refreshed else None,
        expires_in=expires_in if isinstance(expires_in, int) else None,
        scope=scope if isinstance(scope, str) else None,
    )
