"""Bearer tokens: random, shown once, stored only as a SHA-256 hash, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from ownstream.clock import iso, random_id, utc_now
from ownstream.errors import AuthenticationError, GrantExpired, GrantRevoked
from ownstream.model import Bearer
from ownstream.store.base import Store, Token, TokenKind

PREFIX = {"owner": "oso_", "client": "osc_"}


def token_hash(secret: str) -> str:
    """The SHA-256 hex digest under which a token (or any other bearer secret) is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(
    kind: TokenKind,
    *,
    grant_id: str | None = None,
    ttl_seconds: int | None = None,
    label: str | None = None,
    now: datetime | None = None,
) -> tuple[str, Token]:
    """A fresh bearer token (the secret, shown once) and the record the store keeps of it."""
    moment = now or utc_now()
    secret = PREFIX[kind] + secrets.token_urlsafe(32)
    return secret, Token(
        token_id=random_id("tok"),
        token_hash=token_hash(secret),
        kind=kind,
        grant_id=grant_id,
        label=label,
        created_at=iso(moment),
        expires_at=iso(moment + timedelta(seconds=ttl_seconds)) if ttl_seconds else None,
        revoked_at=None,
        last_used_at=None,
    )


def authenticate(
    store: Store, authorization: str | None, *, resource: str | None = None
) -> Bearer:
    """Resolve `Authorization: Bearer …`; expiry and revocation apply on every request.

    `resource` is the protected resource being served: a client token issued through OAuth for
    another resource (RFC 8707, e.g. the MCP endpoint) is not accepted here."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthenticationError("send Authorization: Bearer <token>")
    token = authorization[7:].strip()
    digest = token_hash(token)
    row = store.token(digest)
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise AuthenticationError("the bearer token is not valid")
    now = iso(store.clock())
    if row.kind == "client":
        # The grant's lifecycle is reported first (403 grant_revoked / grant_expired): a client
        # token's expiry mirrors its grant's, so checking the token first would turn every
        # expired grant into a bare 401.
        assert row.grant_id is not None
        grant = store.grant(row.grant_id)
        if grant.revoked_at is not None:
            raise GrantRevoked(f"grant {grant.grant_id} was revoked", grant_id=grant.grant_id)
        if grant.expires_at is not None and grant.expires_at <= now:
            raise GrantExpired(f"grant {grant.grant_id} expired at {grant.expires_at}")
    if row.revoked_at is not None:
        raise AuthenticationError("the bearer token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError("the bearer token has expired")
    if row.kind == "owner":
        return Bearer("owner", row.token_id)
    if resource is not None:
        family = store.token_family(row.token_id)
        if family is not None and family.resource != resource:
            raise AuthenticationError("the access token was issued for another resource")
    return Bearer("client", row.token_id, grant)
