"""Token responses: short-lived access tokens and, for continuous grants, rotating refresh
tokens, all issued in a token family bound to one client and one resource.

The access token lives `ACCESS_TOKEN_SECONDS` at most and never past its grant; a refresh token
lives as long as its grant. Whatever consumes the code, the approved request or the old refresh
token does so in the same transaction that stores the new tokens (`redeem`), so a lost race
stores nothing and is reported as a reuse.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError

from ownstream.auth import ACCESS_TOKEN_SECONDS
from ownstream.clock import now_iso, parse_iso, random_id, utc_now
from ownstream.grants.tokens import new_token, token_hash
from ownstream.model import Grant
from ownstream.store.auth import IssuedTokens, TokenFamily

REFRESH_PREFIX = "osr_"


@dataclass(frozen=True)
class TokenPair:
    """The secrets of one token response (shown once) and what the store keeps of them."""

    access_token: str
    refresh_token: str | None
    stored: IssuedTokens
    expires_in: int


def new_family(grant: Grant, client_id: str, resource: str, scope: str) -> TokenFamily:
    return TokenFamily(random_id("tfm"), grant.grant_id, client_id, resource, scope, now_iso())


def mint_pair(grant: Grant) -> TokenPair:
    """New token secrets for a live grant: the access token always, a refresh token only for a
    continuous grant. A revoked or expired grant gets nothing (`invalid_grant`)."""
    now = utc_now()
    if grant.revoked_at is not None:
        raise InvalidGrantError("the grant was revoked")
    lifetime = ACCESS_TOKEN_SECONDS
    if grant.expires_at is not None:
        remaining = int((parse_iso(grant.expires_at) - now).total_seconds())
        if remaining <= 0:
            raise InvalidGrantError("the grant has expired")
        lifetime = min(lifetime, remaining)
    access_token, access = new_token(
        "client", grant_id=grant.grant_id, ttl_seconds=lifetime, now=now
    )
    refresh_token = (
        REFRESH_PREFIX + secrets.token_urlsafe(32) if grant.access_mode == "continuous" else None
    )
    stored = IssuedTokens(
        access=access,
        refresh_token_hash=token_hash(refresh_token) if refresh_token else None,
        refresh_expires_at=grant.expires_at if refresh_token else None,
    )
    return TokenPair(access_token, refresh_token, stored, lifetime)


def token_response(
    grant: Grant, scope: str, redeem: Callable[[IssuedTokens], bool]
) -> dict[str, Any]:
    """Mint tokens, store them through `redeem` (which consumes what they were issued for) and
    answer RFC 6749 §5.1. `redeem` returning False means someone redeemed it first."""
    pair = mint_pair(grant)
    if not redeem(pair.stored):
        raise InvalidGrantError("this was already redeemed")
    body: dict[str, Any] = {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "scope": scope,
        "grant_id": grant.grant_id,
    }
    if pair.refresh_token is not None:
        body["refresh_token"] = pair.refresh_token
    return body
