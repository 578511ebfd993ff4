"""The owner's console: the overview, one connection (runs, schedule, rename, run now with live
progress, pause and resume, revoke, delete) and connecting an account.

Every action calls `ConnectionOperations`, as the CLI and the owner API do, so each rule lives
once and each action leaves the same audit event. Pages are plain HTML forms (they work without
JavaScript); htmx and `console.js` only enhance them. Handlers that read the store are plain
`def`, or hand their work to the thread pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response, StreamingResponse

from ownstream.api.console_auth import (
    console_action,
    console_page,
    current_session,
    form_text,
    pending_requests,
)
from ownstream.api.deps import home, public_url
from ownstream.auth.console import csrf_token
from ownstream.background import ProgressHub
from ownstream.clock import parse_iso
from ownstream.console import charts
from ownstream.console.pages import PAGE_HEADERS, message_page, owner_page
from ownstream.errors import InvalidArgument, NotFound, OwnstreamError
from ownstream.health import gap_action
from ownstream.home import Home
from ownstream.model import SetupField
from ownstream.owner import ConnectionOperations, ProviderOAuth
from ownstream.owner.provider_oauth import AUTHORIZATION_SECONDS, CALLBACK_PATH, outcome_message
from ownstream.owner.records import owner_scope
from ownstream.store.base import ProviderAuthorization, RunRecord, Store
from ownstream.views import batch_view, run_view

router = APIRouter(include_in_schema=False)  # browser pages, not API operations
ACTIVITY_DAYS = (30, 90, 365)
RUN_POLL_SECONDS = 0.2  # how often a live view looks at this process's progress hub
STORED_POLL_SECONDS = 1.0  # …and at the database, for a run in another process
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 6 * 3600.0
# Names, for the provider's callback, the authorization this browser started in the console.
OAUTH_RETURN_COOKIE = "ownstream_oauth_return"


def _ops(request: Request) -> ConnectionOperations:
    return ConnectionOperations(home(request))


def _back(connection_id: str) -> str:
    return f"/console/connections/{connection_id}"


# the overview ------------------------------------------------------------------------------
@router.get("/console/")
def overview(request: Request) -> Response:
    def build(session_id: str) -> Response:
        ops = _ops(request)
        store = ops.home.store
        cards = {c.connection_id: _card(ops, c.connection_id) for c in store.connections()}
        groups = []
        placed: set[str] = set()
        for group in ops.grouped_connections():
            connectors = []
            for entry in group["connectors"]:
                ids = entry["connection_ids"]
                connectors.append({
                    "connector_key": entry["connector_key"],
                    "display_name": _connector_name(ops.home, entry["connector_key"]),
                    "cards": [cards[i] for i in ids if i not in placed],
                    "also": [cards[i] for i in ids if i in placed],
                })
                placed.update(ids)
            groups.append({"source": group["source"], "connectors": connectors})
        return owner_page(
            "overview.html",
            session_id,
            title="Overview",
            nav="Overview",
            groups=groups,
            pending=pending_requests(store),
            activity=_activity(ops.home, request),
        )

    return console_page(request, build)


def _connector_name(h: Home, connector_key: str) -> str:
    manifest = h.catalog.manifests.get(connector_key)
    return manifest.display_name if manifest else connector_key


def _card(ops: ConnectionOperations, connection_id: str) -> dict[str, Any]:
    """A connection as the console shows it: its detail, with its coverage drawn."""
    detail = ops.detail(connection_id)
    runnable = [
        p["connector_key"] for p in detail["acquisition_paths"]
        if p["acquisition_method"] != "owner_artifact"
    ]
    schedule = detail["schedule"]
    paths = {p["connector_key"]: i for i, p in enumerate(detail["acquisition_paths"])}
    return {
        **detail,
        "runnable": runnable,
        "last_run": detail["recent_runs"][0] if detail["recent_runs"] else None,
        "next_run": schedule["next_due_at"]
        if schedule and schedule["enabled"] and not schedule["paused"]
        else None,
        "coverage_chart": charts.timeline(
            f"cov-{connection_id}",
            f"What each acquisition path of {detail['display_name']} covers",
            [
                charts.Span(f"{c['connector_key']} · {c['stream']}", c["window_start"],
                            c["window_end"], paths.get(c["connector_key"], len(paths)))
                for c in sorted(detail["coverage"],
                                key=lambda c: (paths.get(c["connector_key"], 0), c["stream"]))
            ],
        )
        if detail["coverage"]
        else None,
    }


def _activity(h: Home, request: Request) -> dict[str, Any] | None:
    """Records per day per connection of one stream, for the chosen recent days."""
    counts = h.store.stream_counts()
    dated = {d.name for d in h.catalog.all_definitions() if d.consent_time_field}
    totals: dict[str, int] = {}
    for count in counts:
        if count.stream in dated:
            totals[count.stream] = totals.get(count.stream, 0) + count.record_count
    if not totals:
        return None
    stream = request.query_params.get("stream")
    if stream not in totals:
        stream = max(sorted(totals), key=lambda name: totals[name])
    days_param = request.query_params.get("days", "90")
    days = int(days_param) if days_param in {str(d) for d in ACTIVITY_DAYS} else 90
    scope = owner_scope(h, stream)
    # the chart ends at the newest record any path has covered (an old archive is drawn too)
    ends = [
        c.window_end
        for connection_id in scope.connection_ids
        for c in h.store.coverage(connection_id)
        if c.stream == stream and c.window_end
    ]
    today = h.store.clock().date()
    last = min(today, parse_iso(max(ends)).date()) if ends else today
    first = last - timedelta(days=days - 1)
    day_list = charts.day_range(first, days)
    found = h.store.daily_counts(
        scope, since=f"{first.isoformat()}T00:00:00.000Z",
        until=f"{(last + timedelta(days=1)).isoformat()}T00:00:00.000Z",
    )
    names = {c.connection_id: c.display_name for c in h.store.connections()}
    series: dict[str, dict[str, int]] = {}
    for row in found:
        series.setdefault(row.connection_id, {})[row.day] = row.records
    chart = charts.activity(
        "activity",
        f"{stream}: records per day and connection, {days} days to {last.isoformat()}",
        day_list,
        [charts.Series(names.get(c, c), v) for c, v in sorted(series.items())],
    )
    return {
        "stream": stream,
        "streams": sorted(totals),
        "days": days,
        "last": last.isoformat(),
        "day_choices": ACTIVITY_DAYS,
        "chart": chart,
        "empty": not series,
    }


# one connection ----------------------------------------------------------------------------
@router.get("/console/connections/{connection_id}")
def connection_page(connection_id: str, request: Request) -> Response:
    return console_page(request, lambda s: _connection(request, s, connection_id))


def _connection(
    request: Request, session_id: str, connection_id: str, *, error: str | None = None
) -> Response:
    ops = _ops(request)
    card = _card(ops, connection_id)
    return owner_page(
        "connection.html",
        session_id,
        status_code=400 if error else 200,
        title=card["display_name"],
        nav="Overview",
        c=card,
        timeline=_timeline(ops.home, connection_id),
        error=error,
        oauth=_oauth_result(
            ops.home, request, lambda a: a.connection_id == connection_id
        ),
        reconnect_key=card["runnable"][0] if card["runnable"] else None,
    )


def _timeline(h: Home, connection_id: str) -> list[dict[str, Any]]:
    """Runs and import batches, newest first; an import's run is shown as its batch. Each
    known gap carries the action its recovery hint asks for, as the health verdict does."""
    store = h.store
    batches = {b.batch_id: batch_view(b) for b in store.batches(connection_id=connection_id)}
    entries = []
    for run in store.runs(connection_id, limit=50):
        entry = run_view(run)
        entry["known_gaps"] = _with_actions(h, run.known_gaps)
        if run.batch_id is not None and run.batch_id in batches:
            entry["batch"] = batches.pop(run.batch_id)
        entries.append(entry)
    for batch in batches.values():  # a batch whose run is older than the runs shown
        entries.append({**batch, "started_at": batch["created_at"]})
    entries.sort(key=lambda e: e.get("started_at") or "", reverse=True)
    return entries


def _with_actions(h: Home, gaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Known gaps, each with the action its recovery hint asks for (`action`, or None)."""
    oauth_paths = {key for key, m in h.catalog.manifests.items() if m.oauth is not None}
    shown = []
    for gap in gaps:
        action = gap_action(gap, oauth_paths)
        shown.append({**gap, "action": action.to_dict() if action else None})
    return shown


async def _then_back(
    request: Request, connection_id: str, operation: Callable[[ConnectionOperations, FormData], Any]
) -> Response:
    """Run one owner operation on a connection from its page's form, then show the page."""

    def act(form: FormData, session_id: str) -> Response:
        operation(_ops(request), form)
        return RedirectResponse(_back(connection_id), status_code=303)

    return await console_action(request, act, _back(connection_id))


@router.post("/console/connections/{connection_id}/rename")
async def rename(connection_id: str, request: Request) -> Response:
    return await _then_back(
        request,
        connection_id,
        lambda ops, form: ops.rename(connection_id, form_text(form, "display_name") or ""),
    )


@router.post("/console/connections/{connection_id}/revoke")
async def revoke(connection_id: str, request: Request) -> Response:
    """Stop collecting; the records stay."""
    return await _then_back(request, connection_id, lambda ops, _: ops.revoke(connection_id))


@router.post("/console/connections/{connection_id}/reactivate")
async def reactivate(connection_id: str, request: Request) -> Response:
    return await _then_back(request, connection_id, lambda ops, _: ops.reactivate(connection_id))


@router.post("/console/connections/{connection_id}/schedule/{change}")
async def schedule_action(connection_id: str, change: str, request: Request) -> Response:
    def operation(ops: ConnectionOperations, form: FormData) -> None:
        if change in ("pause", "resume"):
            ops.pause_schedule(connection_id, change == "pause")
        elif change == "set":
            ops.put_schedule(
                connection_id,
                enabled=form_text(form, "enabled") == "on",
                interval_seconds=_int_field(form, "interval_minutes") * 60,
            )
        else:
            raise InvalidArgument(f"no such schedule change {change!r}", param="change")

    return await _then_back(request, connection_id, operation)


def _int_field(form: FormData, name: str) -> int:
    raw = (form_text(form, name) or "").strip()
    if not raw.isdigit():
        raise InvalidArgument(f"{name.replace('_', ' ')} must be a whole number", param=name)
    return int(raw)


# runs and their live progress -----------------------------------------------------------
@router.post("/console/connections/{connection_id}/run")
async def run_now(connection_id: str, request: Request) -> Response:
    def act(form: FormData, session_id: str) -> Response:
        run_ids = _ops(request).start_run(connection_id)
        return RedirectResponse(f"{_back(connection_id)}/runs/{run_ids[0]}", status_code=303)

    return await console_action(request, act, _back(connection_id))


def _stored_run(store: Store, connection_id: str, run_id: str) -> RunRecord | None:
    return next((r for r in store.runs(connection_id, limit=50) if r.run_id == run_id), None)


@router.get("/console/connections/{connection_id}/runs/{run_id}")
def run_page(connection_id: str, run_id: str, request: Request) -> Response:
    def build(session_id: str) -> Response:
        h = home(request)
        connection = h.store.connection(connection_id)
        run = _stored_run(h.store, connection_id, run_id)
        snapshot = h.progress.snapshot(run_id)
        if run is not None and run.status != "running":
            finished: dict[str, Any] | None = run_view(run)
        else:
            finished = snapshot.finished if snapshot is not None else None
        if finished is not None:
            finished = {
                **finished,
                "known_gaps": _with_actions(h, finished.get("known_gaps") or []),
            }
        return owner_page(
            "run.html",
            session_id,
            title=f"Run of {connection.display_name}",
            nav="Overview",
            connection=connection,
            run_id=run_id,
            finished=finished,
            progress=snapshot.progress if snapshot else None,
        )

    return console_page(request, build)


def event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


async def follow(
    request: Request, hub: ProgressHub, key: str, stored: Any | None = None
) -> AsyncIterator[bytes]:
    """Server-sent events of one piece of work: `progress`, then `finished` (then it ends).

    Work of this process is read from the progress hub, a dictionary lookup between short
    sleeps (the event loop never waits on a lock or the database). Work this process does not
    know (a run started by another `serve` process, or by the worker) is followed in the
    database by `stored()`, in the thread pool, until it has ended."""
    version = -1
    quiet = 0.0
    waited = 0.0
    while waited < MAX_STREAM_SECONDS and not await request.is_disconnected():
        snapshot = hub.snapshot(key)
        pause = RUN_POLL_SECONDS
        if snapshot is not None and snapshot.version != version:
            version, quiet = snapshot.version, 0.0
            if snapshot.finished is not None:
                yield event("finished", snapshot.finished)
                return
            if snapshot.progress is not None:
                yield event("progress", snapshot.progress)
        elif snapshot is None and stored is not None:
            found = await run_in_threadpool(stored)
            if found is not None:
                kind, data = found
                yield event(kind, data)
                if kind == "finished":
                    return
                quiet = 0.0
            pause = STORED_POLL_SECONDS
        if quiet >= KEEPALIVE_SECONDS:
            yield b": still working\n\n"
            quiet = 0.0
        await anyio.sleep(pause)
        quiet += pause
        waited += pause


@router.get("/console/connections/{connection_id}/runs/{run_id}/events")
async def run_events(connection_id: str, run_id: str, request: Request) -> Response:
    if await run_in_threadpool(current_session, request) is None:
        return Response(status_code=401, headers=PAGE_HEADERS)
    h = home(request)

    def stored() -> tuple[str, dict[str, Any]] | None:
        run = _stored_run(h.store, connection_id, run_id)
        if run is None:
            return None
        view = run_view(run)
        if run.status != "running":
            return "finished", view
        return "progress", {
            "message": "running (followed from the database)",
            "records": (run.counts or {}).get("parsed"),
        }

    return StreamingResponse(
        follow(request, h.progress, run_id, stored),
        media_type="text/event-stream",
        headers={**PAGE_HEADERS, "X-Accel-Buffering": "no"},
    )


# delete ------------------------------------------------------------------------------------
@router.get("/console/connections/{connection_id}/delete")
def delete_page(connection_id: str, request: Request) -> Response:
    return console_page(request, lambda s: _delete_form(request, s, connection_id))


def _delete_form(
    request: Request, session_id: str, connection_id: str, *, error: str | None = None
) -> Response:
    preview = _ops(request).deletion_preview(connection_id)
    return owner_page(
        "delete.html",
        session_id,
        status_code=400 if error else 200,
        title=f"Delete {preview['connection']['display_name']}",
        nav="Overview",
        p=preview,
        error=error,
    )


@router.post("/console/connections/{connection_id}/delete")
async def delete(connection_id: str, request: Request) -> Response:
    """Refused (400) unless the owner typed the connection's name (or its id)."""

    def act(form: FormData, session_id: str) -> Response:
        ops = _ops(request)
        connection = ops.home.store.connection(connection_id)
        typed = (form_text(form, "confirm") or "").strip()
        if typed not in (connection.display_name.strip(), connection_id):
            return _delete_form(
                request,
                session_id,
                connection_id,
                error="Type the connection's name exactly as shown to confirm.",
            )
        result = ops.delete(connection_id)
        return message_page(
            request,
            "Connection deleted",
            f"{connection.display_name} ({connection_id}) and its {result['records']} records "
            "are gone. Grants that named it read nothing from it; the audit trail keeps "
            "what happened.",
            csrf_token=csrf_token(session_id),
            back="/console/",
        )

    return await console_action(request, act, f"{_back(connection_id)}/delete")


# connect -----------------------------------------------------------------------------------
@router.get("/console/connect")
def connect_list(request: Request) -> Response:
    def build(session_id: str) -> Response:
        manifests = sorted(home(request).catalog.manifests.values(), key=lambda m: m.display_name)
        return owner_page(
            "connect_list.html",
            session_id,
            title="Connect",
            nav="Connect",
            connectors=[m for m in manifests if m.acquisition_method != "owner_artifact"],
            importers=[m for m in manifests if m.acquisition_method == "owner_artifact"],
        )

    return console_page(request, build)


@router.get("/console/connect/{connector_key}")
def connect_form(connector_key: str, request: Request) -> Response:
    def build(session_id: str) -> Response:
        oauth = _oauth_result(
            home(request),
            request,
            lambda a: a.connector_key == connector_key and a.status != "connected",
        )
        return _connect_form(
            request,
            session_id,
            connector_key,
            request.query_params.get("connection_id"),
            {},
            oauth["message"] if oauth else None,
            status_code=200,  # what the provider's callback said, not an error of this request
        )

    return console_page(request, build)


def _connect_form(
    request: Request,
    session_id: str,
    connector_key: str,
    connection_id: str | None,
    settings: dict[str, str],
    error: str | None,
    display_name: str = "",
    *,
    status_code: int | None = None,
) -> Response:
    h = home(request)
    manifest = h.catalog.manifest(connector_key)
    target = h.store.connection(connection_id) if connection_id else None
    return owner_page(
        "connect_form.html",
        session_id,
        status_code=status_code or (400 if error else 200),
        title=f"Connect {manifest.display_name}",
        nav="Connect",
        m=manifest,
        target=target,
        settings=settings,
        display_name=display_name,
        error=error,
        redirect_uri=public_url(request).rstrip("/") + CALLBACK_PATH,
    )


def _fields(form: FormData, kind: str, declared: Sequence[SetupField]) -> dict[str, str]:
    """The manifest's secrets or settings the form filled in (`secret:NAME`, `setting:NAME`)."""
    return {
        field.name: value
        for field in declared
        if (value := (form_text(form, f"{kind}:{field.name}") or "").strip())
    }


@router.post("/console/connect/{connector_key}")
async def connect(connector_key: str, request: Request) -> Response:
    """Secrets go to `connect` and are never echoed back: a failed attempt shows the form
    again with its settings and empty secret fields."""

    def act(form: FormData, session_id: str) -> Response:
        manifest = home(request).catalog.manifest(connector_key)
        settings = _fields(form, "setting", manifest.settings)
        connection_id = form_text(form, "connection_id") or None
        display_name = (form_text(form, "display_name") or "").strip()
        try:
            result = _ops(request).connect(
                connector_key,
                secrets=_fields(form, "secret", manifest.secrets),
                settings=settings,
                display_name=display_name or None,
                connection_id=connection_id,
            )
        except OwnstreamError as exc:
            return _connect_form(
                request, session_id, connector_key, connection_id, settings, exc.message,
                display_name,
            )
        return RedirectResponse(_back(result.connection.connection_id), status_code=303)

    return await console_action(request, act, f"/console/connect/{connector_key}")


@router.post("/console/connect/{connector_key}/oauth")
async def connect_oauth(connector_key: str, request: Request) -> Response:
    """Connect (or, with `connection_id`, reconnect) by the provider's OAuth: start the
    authorization as `POST /v1/owner/connect/oauth` does and send the browser to approve it.
    A cookie tells the callback to bring this browser back to the console. A failed start
    shows the connect form again, its client secret field empty."""

    def act(form: FormData, session_id: str) -> Response:
        h = home(request)
        settings = _fields(form, "setting", h.catalog.manifest(connector_key).settings)
        connection_id = form_text(form, "connection_id") or None
        display_name = (form_text(form, "display_name") or "").strip()
        try:
            started = ProviderOAuth(h).start(
                connector_key,
                redirect_base=public_url(request),
                client_id=(form_text(form, "client_id") or "").strip() or None,
                client_secret=(form_text(form, "client_secret") or "").strip() or None,
                settings=settings,
                display_name=display_name or None,
                connection_id=connection_id,
            )
        except OwnstreamError as exc:
            return _connect_form(
                request, session_id, connector_key, connection_id, settings, exc.message,
                display_name,
            )
        response = RedirectResponse(started.authorization_url, status_code=303)
        response.set_cookie(
            OAUTH_RETURN_COOKIE,
            started.authorization_id,
            max_age=AUTHORIZATION_SECONDS,
            path=CALLBACK_PATH,
            httponly=True,
            samesite="lax",  # sent on the provider's redirect, a top-level cross-site GET
            secure=public_url(request).startswith("https://"),
        )
        return response

    return await console_action(request, act, f"/console/connect/{connector_key}")


def console_return(request: Request) -> Response | None:
    """Where the provider's callback sends a browser that started the authorization in the
    console (`connect_oauth`'s cookie names it), once it has ended: to the connection, or to
    the connect form when nothing was connected. None for any other browser (the CLI's)."""
    authorization_id = request.cookies.get(OAUTH_RETURN_COOKIE)
    if not authorization_id:
        return None
    try:
        authorization = home(request).store.provider_authorization(authorization_id)
    except NotFound:
        return None
    if authorization.status in ("pending", "completing"):  # this redirect was not for it
        return None
    page = (
        _back(authorization.connection_id)
        if authorization.connection_id
        else f"/console/connect/{authorization.connector_key}"
    )
    response = RedirectResponse(
        f"{page}?{urlencode({'authorization': authorization_id})}",
        status_code=303,
        headers={"Referrer-Policy": "no-referrer"},
    )
    response.delete_cookie(OAUTH_RETURN_COOKIE, path=CALLBACK_PATH)
    return response


def _oauth_result(
    h: Home, request: Request, concerns: Callable[[ProviderAuthorization], bool]
) -> dict[str, Any] | None:
    """What the authorization the callback sent the browser back with came to, when it
    concerns this page (`?authorization=ID`)."""
    authorization_id = request.query_params.get("authorization")
    if not authorization_id:
        return None
    try:
        authorization = h.store.provider_authorization(authorization_id)
    except NotFound:
        return None
    if not concerns(authorization):
        return None
    return {
        "connected": authorization.status == "connected",
        "message": outcome_message(authorization),
    }
