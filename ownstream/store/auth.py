"""The store's client-access seam: registered clients, pending authorizations, codes, token
families and owner console sessions. Result types and the `AuthStore` protocol; no SQL here.

Every secret (codes, tokens, polling codes, session ids, sign-in links, client secrets) crosses
this seam only as a SHA-256 hash. Each mutating method is one transaction of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ownstream.model import Grant

if TYPE_CHECKING:
    from ownstream.store.base import Token

Flow = Literal["code", "device", "agent"]
AuthorizationStatus = Literal["pending", "approved", "denied", "redeemed"]


@dataclass(frozen=True)
class RegisteredClient:
    """A client registered through RFC 7591 (self-registered, so unverified)."""

    client_id: str
    metadata: dict[str, Any]
    registered_at: str
    secret_hash: str | None = None

    @property
    def client_name(self) -> str | None:
        name = self.metadata.get("client_name")
        return name if isinstance(name, str) else None

    @property
    def auth_method(self) -> str:
        return str(self.metadata.get("token_endpoint_auth_method", "none"))

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        return tuple(self.metadata.get("redirect_uris") or ())

    @property
    def grant_types(self) -> tuple[str, ...]:
        return tuple(self.metadata.get("grant_types") or ())


@dataclass(frozen=True)
class PendingAuthorization:
    """One authorization request from its start to its decision and redemption.

    `request` holds what the client asked for: `selection` (a grant request, or None when the
    owner chooses at consent), `client_display` and `client_claims`."""

    authorization_id: str
    flow: Flow
    client_id: str
    status: AuthorizationStatus
    request: dict[str, Any]
    scope: str
    resource: str
    created_at: str
    expires_at: str
    redirect_uri: str | None = None
    state: str | None = None
    code_challenge: str | None = None
    user_code: str | None = None
    interval_seconds: int | None = None
    last_polled_at: str | None = None
    decided_at: str | None = None
    grant_id: str | None = None
    redeemed_at: str | None = None

    @property
    def selection(self) -> dict[str, Any] | None:
        found = self.request.get("selection")
        return found if isinstance(found, dict) else None


@dataclass(frozen=True)
class AuthCode:
    """An authorization code (by hash) and the approved authorization it redeems."""

    code_hash: str
    authorization: PendingAuthorization
    expires_at: str
    redeemed_at: str | None


@dataclass(frozen=True)
class TokenFamily:
    """The tokens issued from one authorization: who holds them and for which resource."""

    family_id: str
    grant_id: str
    client_id: str
    resource: str
    scope: str
    created_at: str
    revoked_at: str | None = None


@dataclass(frozen=True)
class RefreshTokenRecord:
    token_hash: str
    family: TokenFamily
    created_at: str
    expires_at: str | None
    superseded_at: str | None


@dataclass(frozen=True)
class IssuedTokens:
    """What one token response stores: an access token and, maybe, a refresh token's hash."""

    access: Token
    refresh_token_hash: str | None = None
    refresh_expires_at: str | None = None


@dataclass(frozen=True)
class ConsoleSession:
    session_hash: str
    created_at: str
    expires_at: str
    ended_at: str | None


class AuthStore(Protocol):
    # clients ------------------------------------------------------------------------------
    def save_client(self, client: RegisteredClient) -> None: ...

    def client(self, client_id: str) -> RegisteredClient | None: ...

    def clients(self) -> list[RegisteredClient]: ...

    def delete_client(self, client_id: str) -> list[str]:
        """Delete a client, deny its pending requests and revoke its grants (returned)."""
        ...

    # authorizations -------------------------------------------------------------------------
    def create_authorization(
        self,
        authorization: PendingAuthorization,
        *,
        request_uri_hash: str | None = None,
        device_code_hash: str | None = None,
    ) -> None: ...

    def authorization(self, authorization_id: str) -> PendingAuthorization | None: ...

    def authorization_by_request_uri(
        self, request_uri_hash: str
    ) -> PendingAuthorization | None: ...

    def authorization_by_device_code(
        self, device_code_hash: str
    ) -> PendingAuthorization | None: ...

    def authorization_by_user_code(self, user_code: str) -> PendingAuthorization | None: ...

    def authorizations(self, status: str | None = None) -> list[PendingAuthorization]: ...

    def approve_authorization(
        self,
        authorization_id: str,
        grant: Grant,
        *,
        code_hash: str | None = None,
        code_expires_at: str | None = None,
    ) -> bool:
        """Save the grant and mark the request approved (with its code, for the code flow),
        atomically, only if it is still pending and unexpired."""
        ...

    def deny_authorization(self, authorization_id: str) -> bool: ...

    def record_poll(self, authorization_id: str, polled_at: str) -> str | None:
        """Note a poll; return the previous poll's time."""
        ...

    def set_poll_interval(self, authorization_id: str, interval_seconds: int) -> None: ...

    # codes and tokens -----------------------------------------------------------------------
    def auth_code(self, code_hash: str) -> AuthCode | None: ...

    def redeem_code(self, code_hash: str, family: TokenFamily, tokens: IssuedTokens) -> bool:
        """Consume the code and store the tokens, or store nothing if it was already used."""
        ...

    def redeem_authorization(
        self, authorization_id: str, family: TokenFamily, tokens: IssuedTokens
    ) -> bool:
        """Consume an approved device/agent request and store its tokens, once."""
        ...

    def refresh_token(self, token_hash: str) -> RefreshTokenRecord | None: ...

    def rotate_refresh_token(self, token_hash: str, tokens: IssuedTokens) -> bool:
        """Supersede the refresh token and store its successors, or nothing if it was
        already superseded (a reuse)."""
        ...

    def token_family(self, token_id: str) -> TokenFamily | None:
        """The family an access token (by `tokens.token_id`) was issued in, if any."""
        ...

    def revoke_grant_families(self, grant_id: str, reason: str) -> None:
        """Revoke a grant, every token family issued for it and all their tokens."""
        ...

    # owner console ----------------------------------------------------------------------------
    def save_console_link(self, link_hash: str, expires_at: str) -> None: ...

    def use_console_link(self, link_hash: str, used_at: str) -> bool:
        """Mark a sign-in link used; False if unknown, expired or used before."""
        ...

    def create_console_session(self, session_hash: str, expires_at: str) -> None: ...

    def console_session(self, session_hash: str) -> ConsoleSession | None: ...

    def end_console_session(self, session_hash: str) -> None: ...

    def auth_setting(self, key: str) -> str | None: ...

    def put_auth_setting(self, key: str, value: str) -> None: ...
