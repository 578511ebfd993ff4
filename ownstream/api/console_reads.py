"""The console's reading pages: records of a stream across connections (with provenance),
access (clients, grants, tokens, pending requests; revoke), and the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from ownstream.api.console_auth import console_action, console_page, pending_requests
from ownstream.api.deps import home
from ownstream.auth.clients import client_view
from ownstream.console.pages import owner_page
from ownstream.errors import InvalidArgument
from ownstream.home import Home
from ownstream.owner import AccessOperations
from ownstream.owner.records import owner_scope, records_page, search_page
from ownstream.store.base import AuditEvent, Store, StoredRecord

router = APIRouter(include_in_schema=False)  # browser pages, not API operations
PAGE_SIZE = 25
SUMMARY_FIELDS = 4
AUDIT_PAGE = 200
ACTORS = ("owner", "client", "scheduler", "system")


# records -----------------------------------------------------------------------------------
@router.get("/console/records")
def records(request: Request) -> Response:
    return console_page(request, lambda s: _records(request, s))


def _records(request: Request, session_id: str) -> Response:
    h = home(request)
    query = request.query_params
    held = sorted({c.stream for c in h.store.stream_counts() if c.record_count})
    stream = query.get("stream") or (held[0] if held else None)
    connection_id = query.get("connection_id") or None
    q = (query.get("q") or "").strip()
    rows: list[dict[str, Any]] = []
    next_url = None
    readable: list[Any] = []
    if stream is not None:
        scope = owner_scope(h, stream, connection_id)
        readable = h.store.connections(connection_ids=list(owner_scope(h, stream).connection_ids))
        cursor = query.get("cursor")
        page = (
            search_page(h, scope, q, limit=PAGE_SIZE, cursor=cursor)
            if q
            else records_page(h, scope, limit=PAGE_SIZE, cursor=cursor)
        )
        names = {c.connection_id: c.display_name for c in readable}
        rows = [_row(h, r, names) for r in page.records]
        if page.next_cursor is not None:
            params = {"stream": stream, "connection_id": connection_id or "", "q": q,
                      "cursor": page.next_cursor}
            next_url = "/console/records?" + urlencode({k: v for k, v in params.items() if v})
    return owner_page(
        "records.html",
        session_id,
        title=f"Records · {stream}" if stream else "Records",
        nav="Records",
        streams=held,
        stream=stream,
        connections=readable,
        connection_id=connection_id,
        q=q,
        rows=rows,
        next_url=next_url,
        first_page=query.get("cursor") is None,
    )


def _row(h: Home, record: StoredRecord, names: dict[str, str]) -> dict[str, Any]:
    """A record with its connection and provenance: which paths evidenced it, and when."""
    definition = h.catalog.definition(record.stream)
    when_field = definition.consent_time_field or definition.cursor_field
    evidence: dict[str, dict[str, Any]] = {}
    for seen in h.store.record_provenance(record.connection_id, record.stream, record.record_key):
        path = evidence.setdefault(
            seen.connector_key,
            {"connector_key": seen.connector_key, "method": seen.acquisition_method,
             "first": seen.at, "last": seen.at, "times": 0},
        )
        path["first"], path["last"] = min(path["first"], seen.at), max(path["last"], seen.at)
        path["times"] += 1
    shown = [
        (name, record.data[name])
        for name in definition.fields
        if name != when_field and record.data.get(name) not in (None, "", [], {})
    ]
    return {
        "key": record.record_key,
        "connection_id": record.connection_id,
        "connection": names.get(record.connection_id, record.connection_id),
        "when": record.data.get(when_field) if when_field else None,
        "summary": shown[:SUMMARY_FIELDS],
        "rest": shown[SUMMARY_FIELDS:],
        "provenance": sorted(evidence.values(), key=lambda p: p["first"]),
    }


# access ------------------------------------------------------------------------------------
@router.get("/console/access")
def access(request: Request) -> Response:
    def build(session_id: str) -> Response:
        h = home(request)
        h.usage.flush()  # the last few seconds of use, counted in memory, are shown too
        store = h.store
        names = {c.connection_id: c.display_name for c in store.connections()}
        tokens = store.tokens()
        grants = []
        for grant in sorted(store.grants(), key=lambda g: g.issued_at, reverse=True):
            used = [t.last_used_at for t in tokens if t.grant_id == grant.grant_id
                    and t.last_used_at]
            grants.append({
                "g": grant,
                "streams": [
                    {
                        "name": s.name,
                        "fields": s.fields,
                        "window": _window(s.since, s.until),
                        "resources": s.resources,
                        "connections": [(c, names.get(c)) for c in s.instance_ids],
                    }
                    for s in grant.streams
                ],
                "last_used": max(used) if used else None,
                "tokens": sum(1 for t in tokens if t.grant_id == grant.grant_id),
            })
        return owner_page(
            "access.html",
            session_id,
            title="Access",
            nav="Access",
            pending=pending_requests(store),
            clients=[client_view(store, c) for c in store.clients()],
            grants=grants,
            owner_tokens=[t for t in tokens if t.kind == "owner"],
        )

    return console_page(request, build)


def _window(since: str | None, until: str | None) -> str:
    if since and until:
        return f"{since} to {until}"
    if since:
        return f"from {since}"
    if until:
        return f"until {until}"
    return "all time"


async def _access_action(
    request: Request, operation: Callable[[AccessOperations], Any]
) -> Response:
    """Run one access operation from the access page's form, then show the page."""

    def act(form: FormData, session_id: str) -> Response:
        operation(AccessOperations(home(request)))
        return RedirectResponse("/console/access", status_code=303)

    return await console_action(request, act, "/console/access")


@router.post("/console/grants/{grant_id}/revoke")
async def revoke_grant(grant_id: str, request: Request) -> Response:
    return await _access_action(request, lambda access: access.revoke_grant(grant_id))


@router.post("/console/tokens/{token_id}/revoke")
async def revoke_token(token_id: str, request: Request) -> Response:
    return await _access_action(request, lambda access: access.revoke_token(token_id))


# audit -------------------------------------------------------------------------------------
@router.get("/console/audit")
def audit(request: Request) -> Response:
    def build(session_id: str) -> Response:
        store = home(request).store
        chosen = {
            name: request.query_params.get(name) or None
            for name in ("connection_id", "actor_kind", "operation")
        }
        raw_before = request.query_params.get("before")
        if raw_before is not None and not raw_before.isdigit():
            raise InvalidArgument("before must be an audit event's number", param="before")
        before = int(raw_before) if raw_before is not None else None
        events, older = _audit_page(store, chosen, before)
        vocabulary = store.audit_vocabulary()
        names = {c.connection_id: c.display_name for c in store.connections()}
        filters = {k: v for k, v in chosen.items() if v}
        return owner_page(
            "audit.html",
            session_id,
            title="Audit",
            nav="Audit",
            events=events,
            chosen=chosen,
            names=names,
            connection_choices=sorted(
                set(vocabulary.connection_ids) | set(names), key=lambda c: names.get(c, c)
            ),
            actor_choices=sorted(set(ACTORS) | set(vocabulary.actor_kinds)),
            operation_choices=list(vocabulary.operations),
            limit=AUDIT_PAGE,
            older_url=f"/console/audit?{urlencode({**filters, 'before': older})}"
            if older is not None
            else None,
            newest_url=f"/console/audit?{urlencode(filters)}" if before is not None else None,
        )

    return console_page(request, build)


def _audit_page(
    store: Store, filters: dict[str, str | None], before: int | None
) -> tuple[list[AuditEvent], int | None]:
    """One page of the trail, newest first, of the events numbered below `before`, and the
    `before` of the next (older) page, if there is one."""
    found = store.audit_events(**filters, before=before, limit=AUDIT_PAGE + 1)
    page = found[:AUDIT_PAGE]
    return page, page[-1].seq if len(found) > AUDIT_PAGE else None
