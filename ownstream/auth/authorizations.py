"""Authorization requests from their start to the owner's decision: the agent-connect flow
(start and poll), approval and denial (console, owner API and CLI alike), and their views.

Every request lives in the database (`oauth_authorizations`), so any serve process can show,
decide or redeem it. Approval builds the grant with `grants.issue.build_grant` from the
requested selection, as narrowed (or, for a scope-only request, chosen) by the owner; the
connections are resolved then and listed explicitly in the grant.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc8628.endpoint import create_string_user_code

from ownstream.auth import (
    AUTHORIZATION_SECONDS,
    CODE_SECONDS,
    DEVICE_GRANT_TYPE,
    POLL_INTERVAL_SECONDS,
    SCOPE,
)
from ownstream.auth.audit import audit
from ownstream.auth.discovery import Endpoints, normalize_public_url
from ownstream.auth.issuance import new_family, token_response
from ownstream.auth.selection import narrow
from ownstream.clock import iso, now_iso, parse_iso, random_id, utc_now
from ownstream.errors import AuthorizationNotPending, InvalidArgument, NotFound, OwnstreamError
from ownstream.grants.issue import build_grant
from ownstream.grants.tokens import token_hash
from ownstream.model import Grant
from ownstream.registry import Catalog
from ownstream.store.auth import Flow, PendingAuthorization, RegisteredClient
from ownstream.store.base import Store

POLLING_PREFIX = "osp_"
MAX_POLL_INTERVAL_SECONDS = 60


class InvalidTarget(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is not one this server protects."""

    error = "invalid_target"


def check_resource(endpoints: Endpoints, resource: Any) -> str:
    """The RFC 8707 resource a token will be bound to (default: the REST surface)."""
    if resource is None or resource == "":
        return endpoints.base
    try:
        normalized = normalize_public_url(str(resource))
    except InvalidArgument:
        raise InvalidTarget("resource must be an http(s) URL") from None
    if normalized not in endpoints.resources:
        raise InvalidTarget(f"this server protects {' and '.join(endpoints.resources)}")
    return normalized


def check_scope(scope: Any) -> str:
    if scope in (None, "", SCOPE):
        return SCOPE
    raise InvalidScopeError(f"the only scope is {SCOPE}")


def is_expired(authorization: PendingAuthorization) -> bool:
    """A request expires while it waits for the owner; a decided one keeps its outcome."""
    return authorization.status == "pending" and authorization.expires_at <= now_iso()


def status_of(authorization: PendingAuthorization) -> str:
    return "expired" if is_expired(authorization) else authorization.status


def new_request(
    flow: Flow,
    client: RegisteredClient,
    *,
    scope: str,
    resource: str,
    selection: dict[str, Any] | None = None,
    client_claims: list[str] | None = None,
    client_display: dict[str, str] | None = None,
    **fields: Any,
) -> PendingAuthorization:
    now = utc_now()
    return PendingAuthorization(
        authorization_id=random_id("azr"),
        flow=flow,
        client_id=client.client_id,
        status="pending",
        request={
            "selection": selection,
            "client_claims": client_claims or [],
            "client_display": client_display,
        },
        scope=scope,
        resource=resource,
        created_at=iso(now),
        expires_at=iso(now + timedelta(seconds=AUTHORIZATION_SECONDS)),
        **fields,
    )


def client_name(store: Store, authorization: PendingAuthorization) -> str:
    """Requester identity by precedence (spec-core §6): registration, inline display, id."""
    registered = store.client(authorization.client_id)
    if registered is not None and registered.client_name:
        return registered.client_name
    display = authorization.request.get("client_display") or {}
    return str(display.get("name") or authorization.client_id)


def approval_url(endpoints: Endpoints, authorization_id: str) -> str:
    return endpoints.url(f"/console/authorizations/{authorization_id}")


# -- agent connect ------------------------------------------------------------------------------
def start_agent_connect(store: Store, endpoints: Endpoints, body: Any) -> dict[str, Any]:
    """`POST` agent-connect: a scope-only request the owner completes at consent."""
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object")
    resource = check_resource(endpoints, body.get("resource"))
    scope = check_scope(body.get("scope"))
    client_id = body.get("client_id")
    client = store.client(client_id) if isinstance(client_id, str) else None
    if client is None:
        raise InvalidClientError("register first (registration_endpoint) and send its client_id")
    if DEVICE_GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClientError("this client is not registered for device-style flows")
    display_name = body.get("client_name")
    polling_code = POLLING_PREFIX + secrets.token_urlsafe(32)
    authorization = new_request(
        "agent",
        client,
        scope=scope,
        resource=resource,
        client_display={"name": display_name} if isinstance(display_name, str) else None,
        user_code=create_string_user_code(),
        interval_seconds=POLL_INTERVAL_SECONDS,
    )
    store.create_authorization(authorization, device_code_hash=token_hash(polling_code))
    return {
        "authorization_id": authorization.authorization_id,
        "approval_url": approval_url(endpoints, authorization.authorization_id),
        "poll_url": endpoints.url("/oauth/agent-connect/poll"),
        "user_code": authorization.user_code,
        "polling_code": polling_code,
        "interval_ms": POLL_INTERVAL_SECONDS * 1000,
        "expires_in": AUTHORIZATION_SECONDS,
    }


def poll_agent_connect(store: Store, body: Any) -> dict[str, Any]:
    """Always a status (`pending`, `approved` with the credential, `denied`, `expired`).

    A poller faster than its interval is told `pending` with a longer `interval_ms`: the PDPP
    CLI treats `slow_down` as a contract error."""
    polling_code = body.get("polling_code") if isinstance(body, dict) else None
    if not isinstance(polling_code, str) or not polling_code:
        raise InvalidRequestError("polling_code is required")
    authorization = store.authorization_by_device_code(token_hash(polling_code))
    if authorization is None or authorization.flow != "agent":
        return {"status": "expired"}
    status = status_of(authorization)
    if status == "approved":
        return _deliver(store, authorization)
    if status != "pending":
        return {"status": "denied" if status == "denied" else "expired"}
    now = utc_now()
    previous = store.record_poll(authorization.authorization_id, iso(now))
    interval = authorization.interval_seconds or POLL_INTERVAL_SECONDS
    if previous is not None and (now - parse_iso(previous)).total_seconds() < interval:
        interval = min(interval * 2, MAX_POLL_INTERVAL_SECONDS)
        store.set_poll_interval(authorization.authorization_id, interval)
    return {"status": "pending", "interval_ms": interval * 1000}


def _deliver(store: Store, authorization: PendingAuthorization) -> dict[str, Any]:
    assert authorization.grant_id is not None
    grant = store.grant(authorization.grant_id)
    try:
        body = redeem(store, authorization, grant)
    except OAuth2Error:
        return {"status": "expired"}
    credential = {
        "access_token": body["access_token"],
        "token_type": body["token_type"],
        "expires_at": iso(utc_now() + timedelta(seconds=body["expires_in"])),
        "expires_in": body["expires_in"],
        "grant_id": grant.grant_id,
        "scope": body["scope"],
    }
    if "refresh_token" in body:
        credential["refresh_token"] = body["refresh_token"]
    return {"status": "approved", "credential": credential, "grant_id": grant.grant_id}


def redeem(store: Store, authorization: PendingAuthorization, grant: Grant) -> dict[str, Any]:
    """The token response for an approved device or agent-connect request, once."""
    family = new_family(grant, authorization.client_id, authorization.resource, authorization.scope)
    return token_response(
        grant,
        authorization.scope,
        lambda tokens: store.redeem_authorization(authorization.authorization_id, family, tokens),
    )


# -- the owner's decision -----------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """The outcome of a decision; `redirect_to` sends the browser back to a web-app client."""

    authorization: PendingAuthorization
    grant: Grant | None
    redirect_to: str | None


def _pending(store: Store, authorization_id: str) -> PendingAuthorization:
    authorization = store.authorization(authorization_id)
    if authorization is None:
        raise NotFound(f"no authorization request {authorization_id}", param="authorization_id")
    if status_of(authorization) != "pending":
        raise AuthorizationNotPending(
            f"authorization request {authorization_id} is {status_of(authorization)}"
        )
    return authorization


def approve(store: Store, catalog: Catalog, authorization_id: str, decision: Any) -> Decision:
    """Approve a pending request, as asked or narrowed (`decision` has the shape of a grant
    request's `streams`, `expires_in`, `access_mode`)."""
    summary: dict[str, Any] = {"authorization_id": authorization_id}
    try:
        authorization = _pending(store, authorization_id)
        summary.update(client_id=authorization.client_id, flow=authorization.flow)
        selection = narrow(authorization.selection, decision)
        grant = build_grant(
            store,
            catalog,
            authorization.client_id,
            {**selection, "client_display": client_name(store, authorization)},
        )
        code = secrets.token_urlsafe(32) if authorization.flow == "code" else None
        approved = store.approve_authorization(
            authorization_id,
            grant,
            code_hash=token_hash(code) if code else None,
            code_expires_at=iso(utc_now() + timedelta(seconds=CODE_SECONDS)) if code else None,
        )
        if not approved:
            raise AuthorizationNotPending(f"authorization request {authorization_id} was decided")
    except OwnstreamError as exc:
        audit(store, "owner", "authorization_approve", "refused", {**summary, "error": exc.code})
        raise
    audit(
        store,
        "owner",
        "authorization_approve",
        "succeeded",
        {**summary, "grant_id": grant.grant_id, "streams": [s.name for s in grant.streams]},
    )
    redirect_to = None
    if code is not None:
        redirect_to = _redirect(authorization, [("code", code)])
    return Decision(authorization, grant, redirect_to)


def deny(store: Store, authorization_id: str) -> Decision:
    summary: dict[str, Any] = {"authorization_id": authorization_id}
    try:
        authorization = _pending(store, authorization_id)
        summary.update(client_id=authorization.client_id, flow=authorization.flow)
        if not store.deny_authorization(authorization_id):
            raise AuthorizationNotPending(f"authorization request {authorization_id} was decided")
    except OwnstreamError as exc:
        audit(store, "owner", "authorization_deny", "refused", {**summary, "error": exc.code})
        raise
    audit(store, "owner", "authorization_deny", "succeeded", summary)
    redirect_to = None
    if authorization.flow == "code":
        redirect_to = _redirect(authorization, [("error", "access_denied")])
    return Decision(authorization, None, redirect_to)


def _redirect(authorization: PendingAuthorization, params: list[tuple[str, str]]) -> str:
    """Back to the redirect URI validated when the request was made."""
    assert authorization.redirect_uri is not None
    if authorization.state:
        params.append(("state", authorization.state))
    redirect: str = add_params_to_uri(authorization.redirect_uri, params)
    return redirect


def authorization_view(store: Store, authorization: PendingAuthorization) -> dict[str, Any]:
    return {
        "object": "authorization",
        "id": authorization.authorization_id,
        "flow": authorization.flow,
        "status": status_of(authorization),
        "client_id": authorization.client_id,
        "client_name": client_name(store, authorization),
        "client_registration": "self_registered_unverified",
        "user_code": authorization.user_code,
        "scope": authorization.scope,
        "resource": authorization.resource,
        "requested": authorization.selection,
        "client_display": authorization.request.get("client_display"),
        "client_claims": authorization.request.get("client_claims") or [],
        "created_at": authorization.created_at,
        "expires_at": authorization.expires_at,
        "decided_at": authorization.decided_at,
        "grant_id": authorization.grant_id,
    }
