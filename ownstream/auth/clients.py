"""Registered clients: RFC 7591 registration on Authlib's endpoint, and the client model Authlib's
grants and client authentication call into.

Public clients use `token_endpoint_auth_method: "none"`; confidential ones
`client_secret_basic` (the secret is shown once and stored hashed). A client without
`redirect_uris` (what the PDPP CLI registers) may use only the device and agent-connect flows.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc7591 import (
    ClientRegistrationEndpoint,
    InvalidClientMetadataError,
    InvalidRedirectURIError,
)

from ownstream.auth import DEVICE_GRANT_TYPE, SCOPE
from ownstream.auth.audit import audit
from ownstream.auth.discovery import Endpoints, authorization_server_metadata
from ownstream.clock import now_iso, random_id
from ownstream.errors import NotFound
from ownstream.grants.tokens import token_hash
from ownstream.store.auth import RegisteredClient
from ownstream.store.base import Store

REDIRECT_GRANT_TYPES = ("authorization_code", "refresh_token")
DEVICE_GRANT_TYPES = (DEVICE_GRANT_TYPE, "refresh_token")


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_matches(registered: str, requested: str) -> bool:
    """Exact string match, except that a loopback redirect may use any port (RFC 8252 §7.3)."""
    if registered == requested:
        return True
    want, got = urlsplit(registered), urlsplit(requested)
    if want.scheme != "http" or not is_loopback(want.hostname):
        return False
    return (want.scheme, want.hostname, want.path, want.query) == (
        got.scheme, got.hostname, got.path, got.query
    ) and got.fragment == "" and got.username is None


class OAuthClient(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a registered client."""

    def __init__(self, registered: RegisteredClient) -> None:
        self.registered = registered
        self.client_id = registered.client_id

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.registered.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return SCOPE

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(redirect_matches(uri, redirect_uri) for uri in self.registered.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        stored = self.registered.secret_hash
        return stored is not None and hmac.compare_digest(stored, token_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.registered.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.registered.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.registered.grant_types


def _check_redirect_uri(uri: Any) -> None:
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is None or parts.fragment or not parts.hostname:
        raise InvalidRedirectURIError(f"{uri!r} is not an absolute URL without a fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return
    raise InvalidRedirectURIError("redirect URIs must be https, or http on a loopback address")


class RegistrationEndpoint(ClientRegistrationEndpoint):  # type: ignore[misc]
    """Open dynamic registration: anyone may register; the owner decides at consent."""

    def __init__(self, store: Store, endpoints: Endpoints) -> None:
        super().__init__()
        self.store = store
        self.endpoints = endpoints

    def authenticate_token(self, request: Any) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        return authorization_server_metadata(self.endpoints)

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        """Authlib validates the RFC 7591 members; this adds the redirect and grant policy."""
        metadata: dict[str, Any] = super().extract_client_metadata(request)
        redirect_uris = metadata.get("redirect_uris") or []
        for uri in redirect_uris:
            _check_redirect_uri(uri)
        allowed = (
            (*REDIRECT_GRANT_TYPES, DEVICE_GRANT_TYPE) if redirect_uris else DEVICE_GRANT_TYPES
        )
        grant_types = metadata.get("grant_types") or (
            REDIRECT_GRANT_TYPES if redirect_uris else DEVICE_GRANT_TYPES
        )
        if not set(grant_types) <= set(allowed):
            raise InvalidClientMetadataError(
                "without redirect_uris a client may use only the device and agent-connect flows"
            )
        metadata["grant_types"] = list(grant_types)
        metadata["response_types"] = ["code"] if "authorization_code" in grant_types else []
        metadata["scope"] = SCOPE
        return metadata

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "client_id": random_id("cli"),
            "client_id_issued_at": int(time.time()),
        }
        if request.payload.data.get("token_endpoint_auth_method", "client_secret_basic") != "none":
            info["client_secret"] = secrets.token_urlsafe(32)
            info["client_secret_expires_at"] = 0
        return info

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any
    ) -> RegisteredClient:
        secret = client_info.get("client_secret")
        client = RegisteredClient(
            client_id=client_info["client_id"],
            metadata=client_metadata,
            registered_at=now_iso(),
            secret_hash=token_hash(secret) if secret else None,
        )
        self.store.save_client(client)
        audit(
            self.store,
            "client",
            "client_register",
            "succeeded",
            {
                "client_id": client.client_id,
                "client_name": client.client_name,
                "token_endpoint_auth_method": client.auth_method,
                "redirect_uris": list(client.redirect_uris),
            },
        )
        return client


def client_view(store: Store, client: RegisteredClient) -> dict[str, Any]:
    """What the owner sees of a client (never its secret)."""
    return {
        "object": "client",
        "client_id": client.client_id,
        "client_name": client.client_name,
        "registration": "self_registered_unverified",
        "token_endpoint_auth_method": client.auth_method,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "registered_at": client.registered_at,
        "metadata": {
            key: client.metadata[key]
            for key in ("client_uri", "logo_uri", "policy_uri", "tos_uri", "contacts")
            if key in client.metadata
        },
        "active_grants": [
            g.grant_id for g in store.grants() if g.client_id == client.client_id
            and g.revoked_at is None
        ],
    }


def delete_client(store: Store, client_id: str) -> dict[str, Any]:
    """Delete a client: its pending requests are denied and every grant it holds is revoked."""
    find_client(store, client_id)
    revoked = store.delete_client(client_id)
    audit(store, "owner", "client_delete", "succeeded",
          {"client_id": client_id, "revoked_grants": revoked})
    return {"deleted": True, "client_id": client_id, "revoked_grants": revoked}


def find_client(store: Store, client_id: str) -> RegisteredClient:
    found = store.client(client_id)
    if found is None:
        raise NotFound(f"no client {client_id}", param="client_id")
    return found
