"""Owner endpoints (/v1/owner/...): grants, connections with provenance. Owner token only."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool

from ownstream.api.deps import (
    MAX_INT_PARAM,
    bearer,
    check_params,
    home,
    int_value,
    owner,
    stream_body,
)
from ownstream.api.responses import JSONBody
from ownstream.errors import InsufficientScope, InvalidArgument, InvalidRequest
from ownstream.owner import AccessOperations, ConnectionOperations, WriteOperations, schedule_view
from ownstream.owner.access import grant_view, token_view
from ownstream.owner.uploads import Upload, check_declared_size, import_upload, max_upload_bytes
from ownstream.runtime.owner_writes import OWNER_PUSH, bounded_lines, pushable
from ownstream.runtime.session import RunOutcome
from ownstream.views import evidence_view, run_view

router = APIRouter(tags=["owner"])

# Handlers are plain `def`: FastAPI runs them in its thread pool, so a store call waiting on the
# database never blocks the event loop (and with it every other request).
Text = Annotated[str | None, Query()]
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _body(description: str, properties: dict[str, Any]) -> Any:
    """A JSON object body, documented with its members; the domain validates their values."""
    return Body(
        default_factory=dict,
        description=description,
        json_schema_extra={"type": "object", "properties": properties},
    )


GrantRequest = Annotated[
    dict[str, Any],
    _body(
        "A PDPP-style selection: the grant to issue",
        {
            "client_id": {"type": "string"},
            "purpose_code": {"type": "string"},
            "purpose_description": {"type": "string"},
            "access_mode": {"enum": ["single_use", "continuous"]},
            "expires_in": {"type": "integer"},
            "streams": {"type": "array", "items": {"type": "object"}},
        },
    ),
]
Rename = Annotated[
    dict[str, Any], _body("The connection's new label", {"display_name": {"type": "string"}})
]
StateBody = Annotated[
    dict[str, Any],
    _body(
        "The push path's sync state: any JSON cursor per stream",
        {"state": {"type": "object"}},
    ),
]
PUSH_MEDIA_TYPES = ("application/x-ndjson", "application/jsonl")
ScheduleBody = Annotated[
    dict[str, Any],
    _body(
        "How often the connection runs",
        {
            "enabled": {"type": "boolean"},
            "interval_seconds": {"type": "integer"},
            "jitter_seconds": {"type": "integer"},
        },
    ),
]


def _access(request: Request) -> AccessOperations:
    check_params(request, owner(request), ())
    return AccessOperations(home(request))


@router.post("/v1/owner/grants", status_code=201)
def create_grant(request: Request, body: GrantRequest) -> dict[str, Any]:
    grant, token = _access(request).issue_grant(str(body.get("client_id") or ""), body)
    return {"grant_id": grant.grant_id, "access_token": token, "grant": grant.to_dict()}


@router.get("/v1/owner/grants")
def list_grants(request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    grants = home(request).store.grants()
    return {"object": "list", "data": [grant_view(g) for g in grants], "has_more": False}


@router.get("/v1/owner/grants/{grant_id}")
def get_grant(grant_id: str, request: Request) -> dict[str, Any]:
    check_params(request, owner(request), ())
    return grant_view(home(request).store.grant(grant_id))


@router.post("/v1/owner/grants/{grant_id}/revoke")
def revoke_grant_owner(grant_id: str, request: Request) -> dict[str, Any]:
    grant = _access(request).revoke_grant(grant_id)
    return {"revoked": True, **grant_view(grant)}


@router.post("/grants/{grant_id}/revoke")
def revoke_grant(grant_id: str, request: Request) -> dict[str, Any]:
    """PDPP revocation: the owner, or the grant's own client, may revoke it."""
    who = bearer(request)
    check_params(request, who, ())
    if who.kind == "client" and (who.grant is None or who.grant.grant_id != grant_id):
        raise InsufficientScope("a client may revoke only its own grant")
    AccessOperations(home(request)).revoke_grant(grant_id, actor_kind=who.kind)
    return {"revoked": True}


@router.get("/v1/owner/tokens")
def list_tokens(request: Request) -> dict[str, Any]:
    tokens = _access(request).tokens()
    return {"object": "list", "data": [token_view(t) for t in tokens], "has_more": False}


@router.get("/v1/owner/access-log")
def access_log(request: Request, client_id: Text = None, since: Text = None) -> dict[str, Any]:
    """How much each client read, per stream, connection and day — never what it read."""
    check_params(request, owner(request), ("client_id", "since"))
    if since is not None and not DAY.fullmatch(since):
        raise InvalidArgument("since is a day, YYYY-MM-DD", param="since")
    h = home(request)
    h.usage.flush()
    entries = h.store.access_log(client_id=client_id, since=since)
    return {"object": "list", "data": [asdict(e) for e in entries], "has_more": False}


@router.post("/v1/owner/tokens/{token_id}/revoke")
def revoke_token(token_id: str, request: Request) -> dict[str, Any]:
    return {"revoked": True, **token_view(_access(request).revoke_token(token_id))}


def _ops(request: Request, allowed: tuple[str, ...] = ()) -> ConnectionOperations:
    """Owner operations for an owner bearer; unknown query parameters are refused."""
    check_params(request, owner(request), allowed)
    return ConnectionOperations(home(request))


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
    return _ops(request).detail(connection_id)


@router.patch("/v1/owner/connections/{connection_id}")
def rename_connection(connection_id: str, request: Request, body: Rename) -> dict[str, Any]:
    ops = _ops(request)
    name = body.get("display_name")
    if not isinstance(name, str):
        raise InvalidArgument("display_name must be a string", param="display_name")
    return ops.connection_entry(ops.rename(connection_id, name))


@router.post("/v1/owner/connections/{connection_id}/run", status_code=202)
def run_connection(
    connection_id: str, request: Request, connector_key: Text = None
) -> dict[str, Any]:
    ops = _ops(request, ("connector_key",))
    run_ids = ops.start_run(connection_id, connector_key)
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


def _integer(value: Any, name: str) -> int:
    """A JSON integer of a body, within what the store can hold."""
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_INT_PARAM:
        raise InvalidArgument(f"{name} must be an integer", param=name)
    return value


@router.put("/v1/owner/connections/{connection_id}/schedule")
def put_schedule(connection_id: str, request: Request, body: ScheduleBody) -> dict[str, Any]:
    ops = _ops(request)
    enabled, interval = body.get("enabled", True), body.get("interval_seconds")
    jitter = body.get("jitter_seconds", 0)
    if not isinstance(enabled, bool):
        raise InvalidArgument("enabled must be true or false", param="enabled")
    interval, jitter = _integer(interval, "interval_seconds"), _integer(jitter, "jitter_seconds")
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
def connection_runs(connection_id: str, request: Request, limit: Text = None) -> dict[str, Any]:
    ops = _ops(request, ("limit",))
    store = ops.home.store
    store.connection(connection_id)
    count = int_value(limit, "limit") or 50
    return {
        "object": "list",
        "data": [run_view(r) for r in store.runs(connection_id, limit=count)],
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


@router.post("/v1/owner/imports", status_code=201)
async def create_import(
    request: Request,
    connector: Annotated[str, Query(description="The importing connector's key")],
    connection_id: Text = None,
    filename: Text = None,
) -> JSONBody:
    """Import an archive sent as the request body (`?connector=KEY[&connection_id=ID]
    [&filename=NAME]`), streamed to a private file, never held in memory: 201 with the receipt
    (which connection it joined, and why), or 200 with the earlier receipt for bytes already
    imported. Over `OWNSTREAM_MAX_UPLOAD_BYTES` it is 413."""
    h = home(request)

    def check() -> None:
        check_params(request, owner(request), ("connector", "connection_id", "filename"))
        h.catalog.manifest(connector)  # an unknown connector is refused before the upload

    await run_in_threadpool(check)
    limit = max_upload_bytes()
    check_declared_size(request.headers.get("content-length"), limit)
    name = filename or "archive"
    upload = await run_in_threadpool(Upload, h.path, name, limit)
    try:
        await stream_body(request, upload.write)
    except BaseException:
        upload.discard()
        raise
    result = await run_in_threadpool(
        lambda: import_upload(
            ConnectionOperations(h), connector, upload, connection_id=connection_id
        )
    )
    return JSONBody(result.to_dict(), status_code=201 if result.status == "committed" else 200)


@router.get("/v1/owner/audit")
def audit(
    request: Request,
    connection_id: Text = None,
    actor_kind: Text = None,
    operation: Text = None,
    before: Text = None,
    limit: Text = None,
) -> dict[str, Any]:
    """The audit trail, newest first; `before` (an event's `seq`, as `next_before` gives it)
    continues below that event."""
    ops = _ops(request, ("connection_id", "actor_kind", "operation", "before", "limit"))
    size = int_value(limit, "limit", maximum=1000) or 200
    found = ops.home.store.audit_events(
        connection_id=connection_id,
        actor_kind=actor_kind,
        operation=operation,
        before=int_value(before, "before"),
        limit=size + 1,
    )
    page = found[:size]
    more = len(found) > size
    return {
        "object": "list",
        "data": [asdict(e) for e in page],
        "has_more": more,
        "next_before": page[-1].seq if more else None,
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
        "evidence": [
            evidence_view(e) for e in store.record_provenance(connection_id, stream, record_id)
        ],
    }


def _push_lines(h: Any, connection_id: str, stream: str, upload: Upload) -> RunOutcome:
    """Push the spooled body's lines (read one bounded line at a time)."""
    upload.artifact()  # the file is complete: close it for writing
    with upload.path.open("rb") as handle:
        return WriteOperations(h).push(connection_id, stream, bounded_lines(handle))


@router.post("/v1/owner/connections/{connection_id}/streams/{stream}/records")
async def push_records(connection_id: str, stream: str, request: Request) -> JSONBody:
    """Records of one stream pushed into one connection, as `application/x-ndjson` lines of
    `{"key", "data", "emitted_at"}`: validated against the shared definition and published as
    one stage of the `owner-push` path. A line that is not a valid record is counted in
    `rejections`, and the others are kept. The body streams to a private file first (size
    limited like imports); an unknown or deleted connection is 404 before any of it is read."""
    h = home(request)

    def check() -> None:
        check_params(request, owner(request), ())
        pushable(h.store, h.catalog, connection_id, stream)

    await run_in_threadpool(check)
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type not in PUSH_MEDIA_TYPES:
        raise InvalidRequest(
            "send the records as application/x-ndjson: one {key, data, emitted_at} per line",
            param="Content-Type",
        )
    limit = max_upload_bytes()
    check_declared_size(request.headers.get("content-length"), limit)
    upload = await run_in_threadpool(Upload, h.path, "push.ndjson", limit)
    try:
        await stream_body(request, upload.write)
        outcome = await run_in_threadpool(_push_lines, h, connection_id, stream, upload)
    finally:
        upload.discard()
    counts = outcome.tally.to_dict()
    return JSONBody(
        {
            "object": "push_receipt",
            "stream": stream,
            "connection_id": connection_id,
            "run_id": outcome.run_id,
            "records_accepted": counts["accepted"],
            "records_rejected": counts["rejected"],
            "rejections": counts["rejections"],
            "counts": counts,
        }
    )


def _state_view(connection_id: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "connection_state",
        "connection_id": connection_id,
        "connector_key": OWNER_PUSH,
        "state": state,
    }


@router.get("/v1/owner/connections/{connection_id}/state")
def get_push_state(connection_id: str, request: Request) -> dict[str, Any]:
    """The sync state a push client saved for this connection."""
    check_params(request, owner(request), ())
    return _state_view(connection_id, WriteOperations(home(request)).push_state(connection_id))


@router.put("/v1/owner/connections/{connection_id}/state")
def put_push_state(connection_id: str, request: Request, body: StateBody) -> dict[str, Any]:
    """Replace the push path's sync state (`{"state": {stream: cursor}}`)."""
    check_params(request, owner(request), ())
    if "state" not in body:
        raise InvalidArgument("the body is {\"state\": {stream: cursor}}", param="state")
    state = WriteOperations(home(request)).put_push_state(connection_id, body["state"])
    return _state_view(connection_id, state)
