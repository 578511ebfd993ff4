"""Authlib's OAuth 2 building blocks behind a small adapter of ours.

Authlib does client authentication (`none`, `client_secret_basic`), request validation of the
authorization and token endpoints, PKCE verification (RFC 7636), RFC 7591 metadata checks, the
device-flow endpoint (RFC 8628) and the introspection/revocation endpoints (RFC 7662 / 7009).
Ours: the request adapter (a Starlette request's parts, read before we get here), PAR and RAR,
token issuance into families, refresh-token reuse detection, and the storage behind each hook.
Errors are raised, never rendered here: `api/errors.py` renders every `OAuth2Error`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer as AuthlibServer
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    AuthorizationCodeMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import (
    AuthorizationPendingError,
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    ExpiredTokenError,
    SlowDownError,
)

from ownstream.auth import (
    AUTHORIZATION_SECONDS,
    DATA_ACCESS_TYPE,
    DEVICE_GRANT_TYPE,
    DEVICE_POLL_INTERVAL_SECONDS,
    SCOPE,
)
from ownstream.auth.audit import audit
from ownstream.auth.authorizations import (
    InvalidTarget,
    check_resource,
    is_expired,
    new_request,
    redeem,
)
from ownstream.auth.clients import OAuthClient, RegistrationEndpoint
from ownstream.auth.discovery import DEVICE_VERIFICATION, Endpoints
from ownstream.auth.issuance import new_family, token_response
from ownstream.auth.selection import parse_authorization_details, parse_client_display
from ownstream.clock import iso, now_iso, parse_iso, utc_now
from ownstream.errors import OwnstreamError
from ownstream.grants.tokens import authenticate, token_hash
from ownstream.model import Grant
from ownstream.registry import Catalog
from ownstream.store.auth import AuthCode, PendingAuthorization, RefreshTokenRecord
from ownstream.store.base import Store

PAR_URN = "urn:ietf:params:oauth:request_uri:"


# -- the adapter ------------------------------------------------------------------------------
class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[-1] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist

    def add(self, key: str, value: str) -> None:
        self._datalist[key].append(value)
        self._data[key] = value


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """A form or query request, already read from Starlette (`items` are query + form)."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        query: Sequence[tuple[str, str]],
        form: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload([*query, *form])
        self._args = dict(query)
        self._form = dict(form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class OAuthJsonRequest(JsonRequest):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: Mapping[str, str], data: Any) -> None:
        super().__init__(method, uri, headers)
        self.payload = _JsonPayload(data)


@dataclass(frozen=True)
class OAuthResponse:
    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


class AuthorizationServer(AuthlibServer):  # type: ignore[misc]
    """One per request: Authlib's server wired to this home's store and public URL."""

    def __init__(self, store: Store, catalog: Catalog, endpoints: Endpoints) -> None:
        super().__init__(scopes_supported=[SCOPE])
        self.store = store
        self.catalog = catalog
        self.endpoints = endpoints
        self.register_grant(CodeGrant, [S256Challenge(required=True)])
        self.register_grant(RefreshGrant)
        self.register_grant(DeviceGrant)
        self.register_endpoint(DeviceEndpoint(self))
        self.register_endpoint(IntrospectEndpoint(self))
        self.register_endpoint(RevokeEndpoint(self))
        self.register_endpoint(RegistrationEndpoint(store, endpoints))
        self.register_client_auth_method(
            "owner_bearer", lambda query_client, request: _authenticate_owner(store, request)
        )

    def query_client(self, client_id: str) -> OAuthClient | None:
        registered = self.store.client(client_id)
        return None if registered is None else OAuthClient(registered)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's signals carry nothing we need: every event worth keeping is audited
        where it happens."""

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def create_json_request(self, request: JsonRequest) -> JsonRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    def handle_error_response(self, request: Any, error: OAuth2Error) -> OAuthResponse:
        raise error

    # the endpoints, as the routes call them ---------------------------------------------------
    def token(self, request: OAuthRequest) -> OAuthResponse:
        response: OAuthResponse = self.create_token_response(request)
        return response

    def endpoint(self, name: str, request: OAuth2Request | JsonRequest) -> OAuthResponse:
        response: OAuthResponse = self.create_endpoint_response(name, request)
        return response

    def validate_code_request(self, request: OAuthRequest) -> PendingAuthorization:
        """Validate an authorization-code request (pushed or plain) into a pending request.

        Authlib checks the client, the redirect URI, the response type, the scope and the PKCE
        challenge; ours are the RFC 8707 resource, RFC 9396 details and `client_display`."""
        data = request.payload.data
        try:
            grant = self.get_authorization_grant(request)
            redirect_uri = grant.validate_authorization_request()
            client: OAuthClient = request.client
            try:
                resource = check_resource(self.endpoints, data.get("resource"))
                selection, claims = None, None
                if data.get("authorization_details"):
                    selection, claims = parse_authorization_details(
                        data["authorization_details"], self.store, self.catalog,
                        client.client_id,
                    )
                display = parse_client_display(data.get("client_display"))
            except OAuth2Error as error:
                error.redirect_uri = redirect_uri
                raise
        except OAuth2Error as error:
            error.state = data.get("state")
            raise
        return new_request(
            "code",
            client.registered,
            scope=SCOPE,
            resource=resource,
            selection=selection,
            client_claims=claims,
            client_display=display,
            redirect_uri=redirect_uri,
            state=data.get("state"),
            code_challenge=data["code_challenge"],
        )


def _authenticate_owner(store: Store, request: OAuth2Request) -> OwnerCaller | None:
    """`Authorization: Bearer <owner token>`: the owner may introspect any token."""
    header = request.headers.get("Authorization") or ""
    if not header.lower().startswith("bearer "):
        return None
    try:
        found = authenticate(store, header)
    except OwnstreamError:
        return None
    return OwnerCaller() if found.kind == "owner" else None


class OwnerCaller:
    """The owner, authenticated by an owner token, as Authlib's 'client' of an endpoint."""

    client_id = None

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "owner_bearer"


# -- PKCE: S256 only, always --------------------------------------------------------------------
class S256Challenge(CodeChallenge):  # type: ignore[misc]
    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("code_challenge is required (PKCE with S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: StoredCode) -> str | None:
        return authorization_code.code.authorization.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: StoredCode) -> str:
        return "S256"


# -- the token endpoint's grants ----------------------------------------------------------------
class StoredCode(AuthorizationCodeMixin):  # type: ignore[misc]
    def __init__(self, code: AuthCode) -> None:
        self.code = code

    def get_redirect_uri(self) -> str | None:
        return self.code.authorization.redirect_uri

    def get_scope(self) -> str:
        return self.code.authorization.scope


def _token_resource(request: OAuth2Request, bound: str, endpoints: Endpoints) -> None:
    """A `resource` at the token endpoint must be the one the authorization was for."""
    asked = request.payload.data.get("resource")
    if asked and check_resource(endpoints, asked) != bound:
        raise InvalidTarget("the authorization was for another resource")


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "none")
    server: AuthorizationServer

    def query_authorization_code(self, code: str, client: OAuthClient) -> StoredCode | None:
        """A known code of this client, unexpired and unused. A used code is a replay: what was
        issued from it is revoked (RFC 6749 §4.1.2, spec-core §9 item 19)."""
        store = self.server.store
        found = store.auth_code(token_hash(code))
        if found is None or found.authorization.client_id != client.client_id:
            return None
        if found.redeemed_at is not None:
            grant_id = found.authorization.grant_id
            assert grant_id is not None
            store.revoke_grant_families(grant_id, "authorization_code_replay")
            audit(
                store, "client", "authorization_code_replay", "refused",
                {"client_id": client.client_id, "grant_id": grant_id},
            )
            return None
        if found.expires_at <= now_iso():
            return None
        return StoredCode(found)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: AuthCode = self.request.authorization_code.code
        authorization = code.authorization
        _token_resource(self.request, authorization.resource, self.server.endpoints)
        store = self.server.store
        assert authorization.grant_id is not None
        grant = store.grant(authorization.grant_id)
        family = new_family(grant, authorization.client_id, authorization.resource,
                            authorization.scope)
        body = token_response(
            grant,
            authorization.scope,
            lambda tokens: store.redeem_code(code.code_hash, family, tokens),
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER


class StoredRefreshToken(TokenMixin):  # type: ignore[misc]
    def __init__(self, record: RefreshTokenRecord) -> None:
        self.record = record

    def check_client(self, client: OAuthClient) -> bool:
        return self.record.family.client_id == client.client_id

    def get_scope(self) -> str:
        return self.record.family.scope


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    """Rotation on every use; a superseded token presented again revokes the family and its
    grant (spec-core §10, RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "none")
    server: AuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> StoredRefreshToken | None:
        store = self.server.store
        record = store.refresh_token(token_hash(refresh_token))
        if record is None or record.family.revoked_at is not None:
            return None
        if record.superseded_at is not None:
            self._reuse(record)
            return None
        if record.expires_at is not None and record.expires_at <= now_iso():
            return None
        return StoredRefreshToken(record)

    def _reuse(self, record: RefreshTokenRecord) -> None:
        store = self.server.store
        family = record.family
        store.revoke_grant_families(family.grant_id, "refresh_token_reuse")
        audit(
            store, "client", "refresh_token_reuse", "refused",
            {"client_id": family.client_id, "grant_id": family.grant_id,
             "family_id": family.family_id},
        )

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        record: RefreshTokenRecord = self.request.refresh_token.record
        store = self.server.store
        _token_resource(self.request, record.family.resource, self.server.endpoints)
        grant = store.grant(record.family.grant_id)

        def rotate(tokens: Any) -> bool:
            rotated = store.rotate_refresh_token(record.token_hash, tokens)
            if not rotated:
                self._reuse(record)
            return rotated

        body = token_response(grant, record.family.scope, rotate)
        return 200, body, self.TOKEN_RESPONSE_HEADER


class DeviceCredential:
    """Authlib's view of a device-flow request."""

    def __init__(self, authorization: PendingAuthorization) -> None:
        self.authorization = authorization

    def get_client_id(self) -> str:
        return self.authorization.client_id

    def get_scope(self) -> str:
        return self.authorization.scope

    def get_user_code(self) -> str | None:
        return self.authorization.user_code

    def is_expired(self) -> bool:
        return is_expired(self.authorization)


class DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "none")
    server: AuthorizationServer

    def query_device_credential(self, device_code: str) -> DeviceCredential:
        found = self.server.store.authorization_by_device_code(token_hash(device_code))
        if found is None or found.flow != "device" or found.status == "redeemed":
            raise InvalidGrantError("unknown or already redeemed device_code")
        return DeviceCredential(found)

    def validate_device_credential(self, credential: DeviceCredential) -> PendingAuthorization:
        """RFC 8628 §3.5: approved, or why not yet; polling faster than the interval is
        `slow_down`, and the interval grows by 5 seconds."""
        authorization = credential.authorization
        if credential.is_expired():
            raise ExpiredTokenError()
        if authorization.status == "denied":
            raise AccessDeniedError()
        if authorization.status == "approved":
            return authorization
        store = self.server.store
        now = utc_now()
        previous = store.record_poll(authorization.authorization_id, iso(now))
        interval = authorization.interval_seconds or DEVICE_POLL_INTERVAL_SECONDS
        if previous is not None and (now - parse_iso(previous)).total_seconds() < interval:
            store.set_poll_interval(authorization.authorization_id, interval + 5)
            raise SlowDownError()
        raise AuthorizationPendingError()

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        authorization: PendingAuthorization = self.request.user
        _token_resource(self.request, authorization.resource, self.server.endpoints)
        assert authorization.grant_id is not None
        grant = self.server.store.grant(authorization.grant_id)
        return 200, redeem(self.server.store, authorization, grant), self.TOKEN_RESPONSE_HEADER


class DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    """RFC 8628 §3.1 to 3.2, with an optional `authorization_details` and `resource`."""

    CLIENT_AUTH_METHODS = ("client_secret_basic", "none")
    EXPIRES_IN = AUTHORIZATION_SECONDS
    INTERVAL = DEVICE_POLL_INTERVAL_SECONDS
    server: AuthorizationServer

    def get_verification_uri(self) -> str:
        return self.server.endpoints.url(DEVICE_VERIFICATION)

    def create_endpoint_response(
        self, request: OAuthRequest
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.authenticate_client(request)
        if not client.check_grant_type(DEVICE_GRANT_TYPE):
            raise InvalidClientError("this client is not registered for the device flow")
        self.server.validate_requested_scope(request.payload.scope)
        data = request.payload.data
        resource = check_resource(self.server.endpoints, data.get("resource"))
        selection, claims = None, None
        if data.get("authorization_details"):
            selection, claims = parse_authorization_details(
                data["authorization_details"], self.server.store, self.server.catalog,
                client.client_id,
            )
        device_code = self.generate_device_code()
        authorization = new_request(
            "device",
            client.registered,
            scope=SCOPE,
            resource=resource,
            selection=selection,
            client_claims=claims,
            user_code=self.generate_user_code(),
            interval_seconds=self.INTERVAL,
        )
        self.server.store.create_authorization(
            authorization, device_code_hash=token_hash(device_code)
        )
        verification_uri = self.get_verification_uri()
        body = {
            "device_code": device_code,
            "user_code": authorization.user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={authorization.user_code}",
            "expires_in": self.EXPIRES_IN,
            "interval": self.INTERVAL,
        }
        return 200, body, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


# -- introspection and revocation ---------------------------------------------------------------
@dataclass(frozen=True)
class TokenView(TokenMixin):  # type: ignore[misc]
    """An access or refresh token as introspection and revocation see it."""

    token_type: str
    kind: str
    grant: Grant | None
    client_id: str | None
    expires_at: str | None
    revoked: bool
    token_id: str | None = None
    resource: str | None = None
    scope: str = SCOPE

    def check_client(self, client: Any) -> bool:
        return self.client_id is not None and self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        now = now_iso()
        ends = [t for t in (self.expires_at, self.grant and self.grant.expires_at) if t]
        return any(t <= now for t in ends)

    def is_revoked(self) -> bool:
        return self.revoked or (self.grant is not None and self.grant.revoked_at is not None)


def find_token(store: Store, secret: str, hint: str | None) -> TokenView | None:
    digest = token_hash(secret)
    if hint != "refresh_token":
        row = store.token(digest)
        if row is not None:
            grant = store.grant(row.grant_id) if row.grant_id else None
            family = store.token_family(row.token_id)
            return TokenView(
                token_type="access_token",
                kind=row.kind,
                grant=grant,
                client_id=grant.client_id if grant else None,
                expires_at=row.expires_at,
                revoked=row.revoked_at is not None,
                token_id=row.token_id,
                resource=family.resource if family else None,
            )
    record = store.refresh_token(digest)
    if record is None:
        return None
    family = record.family
    return TokenView(
        token_type="refresh_token",
        kind="client",
        grant=store.grant(family.grant_id),
        client_id=family.client_id,
        expires_at=record.expires_at,
        revoked=record.superseded_at is not None or family.revoked_at is not None,
        resource=family.resource,
        scope=family.scope,
    )


class IntrospectEndpoint(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662 for a confidential client (its own tokens) or the owner (any token)."""

    CLIENT_AUTH_METHODS = ("client_secret_basic", "owner_bearer")
    server: AuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        return find_token(self.server.store, token_string, token_type_hint)

    def check_permission(self, token: TokenView, client: Any, request: Any) -> bool:
        return isinstance(client, OwnerCaller) or token.check_client(client)

    def introspect_token(self, token: TokenView) -> dict[str, Any]:
        body: dict[str, Any] = {
            "active": True,
            "token_type": token.token_type,
            "pdpp_token_kind": token.kind,
            "subject_id": "owner",
            "iss": self.server.endpoints.base,
            "scope": token.scope,
        }
        if token.expires_at:
            body["exp"] = int(parse_iso(token.expires_at).timestamp())
        if token.resource:
            body["aud"] = token.resource
        if token.grant is not None:
            grant = token.grant.to_dict()
            body.update(
                client_id=token.client_id,
                grant_id=token.grant.grant_id,
                authorization_details=[
                    {
                        "type": DATA_ACCESS_TYPE,
                        **{k: grant[k] for k in ("access_mode", "purpose_code", "streams")},
                    }
                ],
            )
        return body


class RevokeEndpoint(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009 for the client a token was issued to. Revoking an access token ends that
    token; revoking a refresh token ends the client's access (its family and grant)."""

    CLIENT_AUTH_METHODS = ("client_secret_basic", "none")
    server: AuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        found = find_token(self.server.store, token_string, token_type_hint)
        return found if found is not None and found.kind == "client" else None

    def revoke_token(self, token: TokenView, request: Any) -> None:
        store = self.server.store
        summary: dict[str, Any] = {"client_id": token.client_id, "token_type": token.token_type}
        if token.grant is not None:
            summary["grant_id"] = token.grant.grant_id
        if token.token_type == "refresh_token" and token.grant is not None:
            store.revoke_grant_families(token.grant.grant_id, "revoked_by_client")
        elif token.token_id is not None:
            store.revoke_token(token.token_id)
        audit(store, "client", "token_revoke", "succeeded", summary)
