"""Connecting an account by OAuth at its provider: start, the provider's callback, waiting.

`start` records a pending authorization in the database, because the process the provider
redirects to (`ownstream serve`, maybe one of several) is not the one that started it (the
CLI, the console), and returns the URL the owner opens. `complete` runs when the provider
redirects back: the state names the authorization (only its hash is stored, and it works once),
the code is exchanged with the sealed PKCE verifier, and the tokens connect the account through
`ConnectionOperations.connect_authorized`: the identity probe, the connection's resolution, the
audit and the schedule are those of every connect. `wait` is the CLI's side: it polls the
database until the callback ended the authorization.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from ownstream.clock import iso, random_id
from ownstream.errors import (
    CredentialUnavailable,
    InternalError,
    InvalidArgument,
    InvalidRequest,
    OwnstreamError,
    ProviderAuthorizationPending,
    ProviderAuthorizationRefused,
)
from ownstream.home import Home
from ownstream.model import ConnectorManifest, OAuthProvider
from ownstream.owner.audit import audited
from ownstream.owner.connections import ConnectionOperations
from ownstream.registry.manifests import secure_endpoint
from ownstream.runtime import oauth_client
from ownstream.runtime.runner import Runtime
from ownstream.store.base import ProviderAuthorization

CALLBACK_PATH = "/connect/oauth/callback"
# the server's public base URL for the CLI: the provider redirects the owner's browser back
# to it (the server itself uses its own, `serve --public-url`)
SERVER_URL_ENV = "OWNSTREAM_SERVER_URL"
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
AUTHORIZATION_SECONDS = 600  # how long the owner has to approve at the provider
COMPLETION_GRACE_SECONDS = 60.0  # a callback already exchanging the code may finish
POLL_SECONDS = 0.25
TOKEN_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

_ENDED = {
    "completing": "this authorization is being completed by another request",
    "connected": "this authorization was already used",
    "refused": "this authorization was already refused",
    "expired": "this authorization expired; start again",
}


@dataclass(frozen=True)
class StartedAuthorization:
    authorization_id: str
    authorization_url: str  # carries the state: show it to the owner, never log it
    redirect_uri: str
    expires_at: str


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def authorization_view(authorization: ProviderAuthorization) -> dict[str, Any]:
    """What the owner may see of an authorization: never its state, verifier or secrets."""
    return {
        "object": "provider_authorization",
        "authorization_id": authorization.authorization_id,
        "connector_key": authorization.connector_key,
        "status": authorization.status,
        "connection_id": authorization.connection_id,
        "display_name": authorization.display_name,
        "client_id": authorization.client_id,
        "redirect_uri": authorization.redirect_uri,
        "created_at": authorization.created_at,
        "expires_at": authorization.expires_at,
        "finished_at": authorization.finished_at,
        "outcome": authorization.outcome,
    }


def outcome_message(authorization: ProviderAuthorization) -> str:
    """What became of an authorization, in a sentence for the owner: connected as whom, or
    why not (the callback's page and the console say the same)."""
    outcome = authorization.outcome or {}
    if authorization.status == "connected":
        identity = outcome.get("identity")
        who = f" as {identity['claim']}={identity['value']}" if identity else ""
        verb = "Connected" if outcome.get("created") else "Reconnected"
        return (
            f"{verb} {authorization.connector_key}{who}: {outcome.get('display_name')} "
            f"({authorization.connection_id})."
        )
    if authorization.status in ("refused", "expired"):
        return str(outcome.get("message") or _ENDED[authorization.status])
    return "Waiting for the provider to send the browser back."


def _endpoint(provider: OAuthProvider, settings: dict[str, str], name: str) -> str:
    """A provider endpoint, unless the connection's setting of the same name overrides it."""
    url = settings.get(name) or getattr(provider, name)
    if not secure_endpoint(url):
        raise InvalidArgument(f"{name} must be an https URL (http only on loopback)", param=name)
    return str(url)


@dataclass
class ProviderOAuth:
    home: Home
    actor_kind: str = "owner"

    def _provider(self, connector_key: str) -> tuple[ConnectorManifest, OAuthProvider]:
        manifest = self.home.catalog.manifest(connector_key)
        if manifest.oauth is None:
            raise InvalidRequest(
                f"{connector_key} does not connect by OAuth; give its secrets instead",
                param="connector_key",
            )
        return manifest, manifest.oauth

    # starting -----------------------------------------------------------------------------
    def start(
        self,
        connector_key: str,
        *,
        redirect_base: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        settings: dict[str, str] | None = None,
        display_name: str | None = None,
        connection_id: str | None = None,
        allow_recreate: bool = False,
    ) -> StartedAuthorization:
        """A pending authorization, and the URL where the owner approves it. A reconnect
        (`connection_id`) reuses the connection's stored settings and app (client id and
        secret) unless given others, so the remediation `ownstream connect KEY --oauth
        --connection ID` needs nothing more."""
        store, vault = self.home.store, self.home.vault
        with audited(
            store,
            self.actor_kind,
            "connect_oauth_start",
            connection_id,
            {"connector_key": connector_key},
        ) as summary:
            manifest, provider = self._provider(connector_key)
            given = dict(settings or {})
            Runtime.check_setup_names(manifest, "setting", given)
            if connection_id is not None:
                store.connection(connection_id)
                config = store.connection_config(connection_id, connector_key)
                given = {**config.settings, **given}
                stored = {
                    name: vault.open(connection_id, connector_key, name, sealed)
                    for name, sealed in config.sealed_secrets.items()
                    if name in ("client_id", "client_secret")
                }
                client_id = client_id or stored.get("client_id")
                client_secret = client_secret or stored.get("client_secret")
            client_id = client_id or provider.client_id
            if not client_id:
                raise InvalidRequest(
                    f"give the client id of the app registered at {manifest.display_name}",
                    param="client_id",
                )
            if client_secret and "client_secret" not in {s.name for s in manifest.secrets}:
                raise InvalidRequest(
                    f"{connector_key} takes no client_secret", param="client_secret"
                )
            if provider.client_secret_required and not client_secret:
                raise CredentialUnavailable(
                    f"{connector_key} needs the client_secret of the registered app",
                    param="client_secret",
                )
            effective = {
                **{s.name: s.default for s in manifest.settings if s.default is not None},
                **given,
            }
            redirect_uri = redirect_base.rstrip("/") + CALLBACK_PATH
            if not secure_endpoint(redirect_uri):
                raise InvalidArgument(
                    "the server URL must be https (http only on loopback)", param="server_url"
                )
            authorize_at = _endpoint(provider, effective, "authorization_url")
            _endpoint(provider, effective, "token_url")
            authorization_id = random_id("pa")
            state, verifier = oauth_client.new_state(), oauth_client.new_verifier()
            now = store.clock()
            expires_at = iso(now + timedelta(seconds=AUTHORIZATION_SECONDS))
            store.create_provider_authorization(
                ProviderAuthorization(
                    authorization_id=authorization_id,
                    connector_key=connector_key,
                    status="pending",
                    redirect_uri=redirect_uri,
                    client_id=client_id,
                    settings=given,
                    display_name=display_name,
                    connection_id=connection_id,
                    allow_recreate=allow_recreate,
                    created_at=iso(now),
                    expires_at=expires_at,
                    sealed_verifier=vault.seal(
                        authorization_id, connector_key, "code_verifier", verifier
                    ),
                    sealed_client_secret=vault.seal(
                        authorization_id, connector_key, "client_secret", client_secret
                    )
                    if client_secret
                    else None,
                ),
                state_hash(state),
            )
            summary.update(authorization_id=authorization_id, _outcome="started")
        url = oauth_client.authorization_url(
            authorize_at,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=provider.scopes,
            state=state,
            verifier=verifier,
        )
        return StartedAuthorization(authorization_id, url, redirect_uri, expires_at)

    # the provider's callback --------------------------------------------------------------
    def complete(
        self, *, state: str | None, code: str | None, error: str | None
    ) -> ProviderAuthorization:
        """End the authorization the callback's state names: connected, or refused (raised)."""
        store = self.home.store
        if not state:
            raise ProviderAuthorizationRefused("the provider's redirect carries no state")
        authorization = store.claim_provider_authorization(state_hash(state))
        if authorization is None:
            raise ProviderAuthorizationRefused(
                "this authorization was not started here (unknown state)"
            )
        if authorization.status != "completing":
            raise ProviderAuthorizationRefused(
                _ENDED.get(authorization.status, "this authorization has ended"),
                authorization_id=authorization.authorization_id,
            )
        ops = ConnectionOperations(self.home, self.actor_kind)
        try:
            result = ops.connect_authorized(
                authorization, lambda: self._secrets(authorization, code, error)
            )
        except Exception as exc:
            refusal = (
                exc
                if isinstance(exc, OwnstreamError)
                else InternalError("the connection could not be made")
            )
            store.finish_provider_authorization(
                authorization.authorization_id,
                expected="completing",
                status="refused",
                connection_id=None,
                outcome={"code": refusal.code, "message": refusal.message},
            )
            raise
        identity = result.identity
        store.finish_provider_authorization(
            authorization.authorization_id,
            expected="completing",
            status="connected",
            connection_id=result.connection.connection_id,
            outcome={
                "created": result.created,
                "display_name": result.connection.display_name,
                "identity": None
                if identity is None
                else {"claim": identity.claim, "value": identity.value},
            },
        )
        return store.provider_authorization(authorization.authorization_id)

    def _secrets(
        self, authorization: ProviderAuthorization, code: str | None, error: str | None
    ) -> dict[str, str]:
        """Trade the code for tokens (with the PKCE verifier): the connection's secrets."""
        manifest, provider = self._provider(authorization.connector_key)
        if error:
            raise ProviderAuthorizationRefused(
                f"{manifest.display_name} did not authorize the connection ({error[:80]})"
            )
        if not code:
            raise ProviderAuthorizationRefused("the provider's redirect carries no code")
        vault, key, authorization_id = (
            self.home.vault,
            authorization.connector_key,
            authorization.authorization_id,
        )
        assert authorization.sealed_verifier is not None  # dropped only when it ends
        verifier = vault.open(authorization_id, key, "code_verifier", authorization.sealed_verifier)
        client_secret = (
            vault.open(authorization_id, key, "client_secret", authorization.sealed_client_secret)
            if authorization.sealed_client_secret
            else None
        )
        settings = {
            **{s.name: s.default for s in manifest.settings if s.default is not None},
            **authorization.settings,
        }
        with httpx.Client(trust_env=False, timeout=TOKEN_TIMEOUT) as http:
            try:
                tokens = oauth_client.exchange_code(
                    http,
                    _endpoint(provider, settings, "token_url"),
                    client_id=authorization.client_id,
                    client_secret=client_secret,
                    code=code,
                    redirect_uri=authorization.redirect_uri,
                    verifier=verifier,
                )
            except oauth_client.TokenRequestRefused as exc:
                raise ProviderAuthorizationRefused(
                    f"{manifest.display_name} refused the authorization code ({exc.error}); "
                    "start again"
                ) from None
            except oauth_client.TokenEndpointUnavailable as exc:
                raise ProviderAuthorizationRefused(
                    f"{manifest.display_name}: {exc}; start again"
                ) from None
        if tokens.refresh_token is None:
            raise ProviderAuthorizationRefused(
                f"{manifest.display_name} answered no refresh token, so the connection would "
                "stop when the access token expires"
            )
        secrets = {**tokens.secrets(), "client_id": authorization.client_id}
        if client_secret:
            secrets["client_secret"] = client_secret
        return secrets

    # waiting (the CLI) ----------------------------------------------------------------------
    def wait(self, authorization_id: str, timeout: float) -> ProviderAuthorization:
        """Poll until the callback ended the authorization. One still pending at the timeout
        is expired, so a late approval connects nothing the owner no longer expects."""
        store = self.home.store
        deadline = time.monotonic() + timeout
        graced = False
        while True:
            authorization = store.provider_authorization(authorization_id)
            if authorization.status == "connected":
                return authorization
            if authorization.status in ("refused", "expired"):
                outcome = authorization.outcome or {}
                raise ProviderAuthorizationRefused(
                    str(outcome.get("message") or _ENDED[authorization.status]),
                    authorization_id=authorization_id,
                    reason=outcome.get("code"),
                )
            if time.monotonic() >= deadline:
                if store.finish_provider_authorization(
                    authorization_id,
                    expected="pending",
                    status="expired",
                    connection_id=None,
                    outcome={
                        "code": ProviderAuthorizationPending.code,
                        "message": f"not approved at the provider within {timeout:g}s",
                    },
                ):
                    raise ProviderAuthorizationPending(
                        f"the provider did not redirect back within {timeout:g}s; "
                        "the authorization is cancelled, start again",
                        authorization_id=authorization_id,
                    )
                elif graced:
                    raise ProviderAuthorizationPending(
                        "the provider redirected back, but the connection is still being made; "
                        "see `ownstream connections list`",
                        authorization_id=authorization_id,
                    )
                else:  # a callback is exchanging the code and probing the account
                    graced, deadline = True, deadline + COMPLETION_GRACE_SECONDS
            time.sleep(POLL_SECONDS)
