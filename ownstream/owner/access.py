"""Grants and tokens: issue, list, revoke — audited, shared by the CLI, API and console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ownstream.errors import InvalidArgument
from ownstream.grants.issue import issue_grant
from ownstream.grants.tokens import new_token
from ownstream.home import Home
from ownstream.model import Grant
from ownstream.owner.audit import audited
from ownstream.store.base import Token

OWNER_TOKEN_TTL_SECONDS = 30 * 24 * 3600
MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600
MAX_LABEL_CHARS = 120


def token_view(token: Token) -> dict[str, Any]:
    """A token as the owner sees it: never the secret, never its hash."""
    return {
        "object": "token",
        "token_id": token.token_id,
        "kind": token.kind,
        "grant_id": token.grant_id,
        "label": token.label,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "last_used_at": token.last_used_at,
    }


def grant_view(grant: Grant) -> dict[str, Any]:
    return {"object": "grant", **grant.to_dict(), "revoked_at": grant.revoked_at}


@dataclass
class AccessOperations:
    home: Home
    actor_kind: str = "owner"

    def issue_grant(self, client_id: str, request: Any) -> tuple[Grant, str]:
        """Issue a grant from a selection; returns it and its client token (shown once)."""
        store = self.home.store
        with audited(store, self.actor_kind, "grant_create", None, {"client_id": client_id}) as s:
            grant, secret = issue_grant(store, self.home.catalog, client_id, request)
            s.update(
                grant_id=grant.grant_id,
                streams=[
                    {"name": g.name, "connections": list(g.instance_ids), "fields": list(g.fields)}
                    for g in grant.streams
                ],
                access_mode=grant.access_mode,
                expires_at=grant.expires_at,
            )
        return grant, secret

    def revoke_grant(self, grant_id: str, *, actor_kind: str | None = None) -> Grant:
        store = self.home.store
        with audited(
            store, actor_kind or self.actor_kind, "grant_revoke", None, {"grant_id": grant_id}
        ) as summary:
            grant = store.revoke_grant(grant_id)
            summary["client_id"] = grant.client_id
        return grant

    def mint_owner_token(
        self, *, ttl_seconds: int | None = OWNER_TOKEN_TTL_SECONDS, label: str | None = None
    ) -> tuple[str, Token]:
        """A new owner token (shown once). It expires (30 days by default) unless the owner
        explicitly asks for none."""
        if ttl_seconds is not None and not 60 <= ttl_seconds <= MAX_TOKEN_TTL_SECONDS:
            raise InvalidArgument(
                f"a token lives between 60 seconds and {MAX_TOKEN_TTL_SECONDS} seconds",
                param="ttl_seconds",
            )
        if label is not None and len(label) > MAX_LABEL_CHARS:
            raise InvalidArgument(
                f"label is longer than {MAX_LABEL_CHARS} characters", param="label"
            )
        store = self.home.store
        with audited(store, self.actor_kind, "token_mint", None, {"kind": "owner"}) as summary:
            secret, token = new_token(
                "owner", ttl_seconds=ttl_seconds, label=label, now=store.clock()
            )
            store.save_token(token)
            summary.update(token_id=token.token_id, expires_at=token.expires_at, label=label)
        return secret, token

    def tokens(self) -> list[Token]:
        return self.home.store.tokens()

    def revoke_token(self, token_id: str) -> Token:
        store = self.home.store
        with audited(store, self.actor_kind, "token_revoke", None, {"token_id": token_id}) as s:
            token = store.revoke_token(token_id)
            s.update(kind=token.kind, grant_id=token.grant_id)
        return token
