"""Owner endpoints for client access: registered clients and pending authorization requests
(`/v1/owner/clients…`, `/v1/owner/authorizations…`). Owner token only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ownstream.api.deps import check_params, home, owner
from ownstream.auth.authorizations import approve, authorization_view, deny, status_of
from ownstream.auth.clients import client_view, delete_client, find_client
from ownstream.errors import InvalidArgument, InvalidRequest, NotFound

router = APIRouter()
STATUSES = ("pending", "approved", "denied", "redeemed", "expired")


@router.get("/v1/owner/clients")
def list_clients(request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    store = home(request).store
    return {
        "object": "list",
        "data": [client_view(store, c) for c in store.clients()],
        "has_more": False,
    }


@router.get("/v1/owner/clients/{client_id}")
def get_client(client_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    store = home(request).store
    return client_view(store, find_client(store, client_id))


@router.delete("/v1/owner/clients/{client_id}")
def remove_client(client_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    return delete_client(home(request).store, client_id)


@router.get("/v1/owner/authorizations")
def list_authorizations(request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ("status",))
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(STATUSES)}", param="status")
    store = home(request).store
    found = store.authorizations(None if status == "expired" else status)
    return {
        "object": "list",
        "data": [
            authorization_view(store, a)
            for a in found
            if status is None or status_of(a) == status
        ],
        "has_more": False,
    }


@router.get("/v1/owner/authorizations/{authorization_id}")
def get_authorization(authorization_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    store = home(request).store
    found = store.authorization(authorization_id)
    if found is None:
        raise NotFound(f"no authorization request {authorization_id}", param="authorization_id")
    return authorization_view(store, found)


async def _optional_json(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return None
    try:
        return await request.json()
    except ValueError:
        raise InvalidRequest("the body must be JSON") from None


@router.post("/v1/owner/authorizations/{authorization_id}/approve")
async def approve_authorization(authorization_id: str, request: Request) -> dict[str, Any]:
    """Approve as requested, or with a body that narrows (or, for a scope-only request,
    chooses) the selection: `streams`, `expires_in`, `access_mode` as in a grant request."""
    decision = await _optional_json(request)

    def decide() -> dict[str, Any]:
        check_params(request, owner(request), ())
        h = home(request)
        outcome = approve(h.store, h.catalog, authorization_id, decision)
        assert outcome.grant is not None
        current = h.store.authorization(authorization_id) or outcome.authorization
        return {**authorization_view(h.store, current), "grant": outcome.grant.to_dict()}

    result: dict[str, Any] = await run_in_threadpool(decide)
    return result


@router.post("/v1/owner/authorizations/{authorization_id}/deny")
def deny_authorization(authorization_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    store = home(request).store
    outcome = deny(store, authorization_id)
    current = store.authorization(authorization_id) or outcome.authorization
    return authorization_view(store, current)
