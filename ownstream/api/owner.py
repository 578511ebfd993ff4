"""Owner endpoints (/v1/owner/...): grants, connections with provenance. Owner token only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ownstream.api.deps import bearer, check_params, home, owner
from ownstream.errors import InsufficientScope, InvalidRequest
from ownstream.grants.issue import issue_grant
from ownstream.views import connection_detail, connection_view

router = APIRouter()


def _grant_view(request: Request, grant_id: str) -> dict[str, Any]:
    grant = home(request).store.grant(grant_id)
    return {"object": "grant", **grant.to_dict(), "revoked_at": grant.revoked_at}


@router.post("/v1/owner/grants", status_code=201)
async def create_grant(request: Request) -> dict[str, Any]:
    owner(request)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    h = home(request)
    grant, token = issue_grant(h.store, h.catalog, str(body.get("client_id") or ""), body)
    return {"grant_id": grant.grant_id, "access_token": token, "grant": grant.to_dict()}


@router.get("/v1/owner/grants")
def list_grants(request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    grants = home(request).store.grants()
    return {
        "object": "list",
        "data": [{"object": "grant", **g.to_dict(), "revoked_at": g.revoked_at} for g in grants],
        "has_more": False,
    }


@router.get("/v1/owner/grants/{grant_id}")
def get_grant(grant_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    return _grant_view(request, grant_id)


@router.post("/v1/owner/grants/{grant_id}/revoke")
def revoke_grant_owner(grant_id: str, request: Request) -> dict[str, Any]:
    owner(request)
    store = home(request).store
    with store.transaction():
        store.revoke_grant(grant_id)
    return {"revoked": True, **_grant_view(request, grant_id)}


@router.post("/grants/{grant_id}/revoke")
def revoke_grant(grant_id: str, request: Request) -> dict[str, Any]:
    """PDPP revocation: the owner, or the grant's own client, may revoke it."""
    who = bearer(request)
    if who.kind == "client" and (who.grant is None or who.grant.grant_id != grant_id):
        raise InsufficientScope("a client may revoke only its own grant")
    store = home(request).store
    with store.transaction():
        store.revoke_grant(grant_id)
    return {"revoked": True}


@router.get("/v1/owner/connections")
def list_connections(request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    connections = home(request).store.connections()
    return {
        "object": "list",
        "data": [{"object": "owner_connection", **connection_view(c)} for c in connections],
        "has_more": False,
    }


@router.get("/v1/owner/connections/{connection_id}")
def get_connection(connection_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    store = home(request).store
    return {
        "object": "owner_connection",
        **connection_detail(store, store.connection(connection_id)),
    }


@router.get("/v1/owner/connections/{connection_id}/provenance/{stream}/{record_id:path}")
def record_provenance(
    connection_id: str, stream: str, record_id: str, request: Request
) -> dict[str, Any]:
    """Which runs and import batches (and so which acquisition paths) evidenced one record."""
    check_params(request, owner(request), ())
    store = home(request).store
    store.connection(connection_id)
    return {
        "object": "provenance",
        "connection_id": connection_id,
        "stream": stream,
        "id": record_id,
        "evidence": store.record_provenance(connection_id, stream, record_id),
    }
