"""Owner endpoints (/v1/owner/...): grants, connections with provenance. Owner token only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ownstream.api.deps import bearer, check_params, home, int_param, owner
from ownstream.errors import InsufficientScope, InvalidArgument, InvalidRequest
from ownstream.grants.issue import issue_grant
from ownstream.operations import OwnerOperations, schedule_view
from ownstream.views import connection_detail, run_view

router = APIRouter()


def _grant_view(request: Request, grant_id: str) -> dict[str, Any]:
    grant = home(request).store.grant(grant_id)
    return {"object": "grant", **grant.to_dict(), "revoked_at": grant.revoked_at}


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


@router.post("/v1/owner/grants", status_code=201)
async def create_grant(request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    body = await _json_body(request)
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
    check_params(request, owner(request), ())
    store = home(request).store
    with store.transaction():
        store.revoke_grant(grant_id)
    return {"revoked": True, **_grant_view(request, grant_id)}


@router.post("/grants/{grant_id}/revoke")
def revoke_grant(grant_id: str, request: Request) -> dict[str, Any]:
    """PDPP revocation: the owner, or the grant's own client, may revoke it."""
    who = bearer(request)
    check_params(request, who, ())
    if who.kind == "client" and (who.grant is None or who.grant.grant_id != grant_id):
        raise InsufficientScope("a client may revoke only its own grant")
    store = home(request).store
    with store.transaction():
        store.revoke_grant(grant_id)
    return {"revoked": True}


def _ops(request: Request, allowed: tuple[str, ...] = ()) -> OwnerOperations:
    """Owner operations for an owner bearer; unknown query parameters are refused."""
    check_params(request, owner(request), allowed)
    return OwnerOperations(home(request))


@router.get("/v1/owner/connections")
def list_connections(request: Request) -> dict[str, Any]:
    ops = _ops(request)
    return {
        "object": "list",
        "data": [ops.connection_entry(c) for c in ops.home.store.connections()],
        "groups": ops.grouped_connections(),
        "has_more": False,
    }


@router.get("/v1/owner/connections/{connection_id}")
def get_connection(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    store = ops.home.store
    connection = store.connection(connection_id)
    return {**connection_detail(store, connection), **ops.connection_entry(connection)}


@router.patch("/v1/owner/connections/{connection_id}")
async def rename_connection(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    body = await _json_body(request)
    name = body.get("display_name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("display_name must be a non-empty string", param="display_name")
    return ops.connection_entry(ops.rename(connection_id, name.strip()))


@router.post("/v1/owner/connections/{connection_id}/run", status_code=202)
def run_connection(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request, ("connector_key",))
    run_ids = ops.start_run(connection_id, request.query_params.get("connector_key"))
    return {
        "object": "run",
        "connection_id": connection_id,
        "run_id": run_ids[0],
        "run_ids": run_ids,
        "status": "running",
    }


@router.post("/v1/owner/connectors/{connector_key}/run", status_code=202)
def run_connector(connector_key: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    connection = ops.connector_connection(connector_key)
    run_ids = ops.start_run(connection.connection_id, connector_key)
    return {
        "object": "run",
        "connection_id": connection.connection_id,
        "run_id": run_ids[0],
        "run_ids": run_ids,
        "status": "running",
    }


@router.post("/v1/owner/connections/{connection_id}/revoke")
def revoke_connection(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    return ops.connection_entry(ops.revoke(connection_id))


@router.post("/v1/owner/connections/{connection_id}/reactivate")
def reactivate_connection(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    return ops.connection_entry(ops.reactivate(connection_id))


@router.put("/v1/owner/connections/{connection_id}/schedule")
async def put_schedule(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    body = await _json_body(request)
    enabled, interval = body.get("enabled", True), body.get("interval_seconds")
    jitter = body.get("jitter_seconds", 0)
    if not isinstance(enabled, bool):
        raise InvalidArgument("enabled must be true or false", param="enabled")
    if not isinstance(interval, int) or isinstance(interval, bool):
        raise InvalidArgument("interval_seconds must be an integer", param="interval_seconds")
    if not isinstance(jitter, int) or isinstance(jitter, bool):
        raise InvalidArgument("jitter_seconds must be an integer", param="jitter_seconds")
    schedule = ops.put_schedule(
        connection_id, enabled=enabled, interval_seconds=interval, jitter_seconds=jitter
    )
    return {"object": "schedule", "connection_id": connection_id, **(schedule_view(schedule) or {})}


@router.post("/v1/owner/connections/{connection_id}/schedule/pause")
def pause_schedule(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    schedule = ops.pause_schedule(connection_id, True)
    return {"object": "schedule", "connection_id": connection_id, **(schedule_view(schedule) or {})}


@router.post("/v1/owner/connections/{connection_id}/schedule/resume")
def resume_schedule(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    schedule = ops.pause_schedule(connection_id, False)
    return {"object": "schedule", "connection_id": connection_id, **(schedule_view(schedule) or {})}


@router.get("/v1/owner/connections/{connection_id}/runs")
def connection_runs(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request, ("limit",))
    store = ops.home.store
    store.connection(connection_id)
    limit = int_param(request, "limit", 50)
    return {
        "object": "list",
        "data": [run_view(r) for r in store.runs(connection_id, limit=limit)],
        "has_more": False,
    }


@router.get("/v1/owner/connections/{connection_id}/diagnostics")
def diagnostics(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    return ops.diagnostics(connection_id)


@router.delete("/v1/owner/connections/{connection_id}")
def delete_connection(connection_id: str, request: Request) -> dict[str, Any]:
    ops = _ops(request)
    return ops.delete(connection_id)


@router.get("/v1/owner/audit")
def audit(request: Request) -> dict[str, Any]:
    ops = _ops(request, ("connection_id", "limit"))
    events = ops.home.store.audit_events(
        request.query_params.get("connection_id"), limit=int_param(request, "limit", 200)
    )
    return {"object": "list", "data": events, "has_more": False}


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
