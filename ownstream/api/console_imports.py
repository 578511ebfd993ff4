"""The console's import: upload an archive (streamed to a private file, never held in memory,
as `POST /v1/owner/imports` does), follow the import's progress, read its receipt.

Without JavaScript the form posts and the answer is the receipt. With it, `console.js` shows
the upload's progress, then the import's (server-sent events keyed by a progress id the page
made up), and the receipt replaces the form.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from ownstream.api.console import follow
from ownstream.api.console_auth import console_page, current_session, signed_out
from ownstream.api.deps import home, stream_body
from ownstream.auth import console
from ownstream.console.pages import PAGE_HEADERS, owner_page
from ownstream.errors import InvalidRequest, OwnstreamError
from ownstream.home import Home
from ownstream.owner import ConnectionOperations
from ownstream.owner.uploads import (
    FormUpload,
    Upload,
    check_declared_size,
    import_upload,
    max_upload_bytes,
)

router = APIRouter(include_in_schema=False)  # browser pages, not API operations
PROGRESS_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _progress_key(progress_id: str) -> str:
    return f"import:{progress_id}"


@router.get("/console/import")
def import_page(request: Request) -> Response:
    return console_page(
        request,
        lambda s: _form(
            home(request),
            s,
            request.query_params.get("connection_id"),
            request.query_params.get("connector"),
            None,
        ),
    )


def _form(
    h: Home,
    session_id: str,
    target: str | None,
    chosen: str | None,
    error: str | None,
    *,
    status_code: int = 200,
) -> Response:
    importers = sorted(
        (m for m in h.catalog.manifests.values() if m.acquisition_method == "owner_artifact"),
        key=lambda m: m.display_name,
    )
    sources = {m.source for m in importers}
    return owner_page(
        "import.html",
        session_id,
        status_code=status_code,
        title="Import an archive",
        nav="Import",
        importers=importers,
        chosen=chosen,
        connections=[c for c in h.store.connections() if c.source in sources],
        target=target,
        error=error,
        max_bytes=max_upload_bytes(),
    )


@router.post("/console/import")
async def upload(request: Request) -> Response:
    """The form's CSRF token is checked before the first byte of the file is written."""
    session_id = await run_in_threadpool(current_session, request)
    if session_id is None:
        return signed_out(request)
    h = home(request)
    limit = max_upload_bytes()

    def open_file(fields: dict[str, str], filename: str) -> Upload:
        if not console.csrf_matches(session_id, fields.get("csrf_token")):
            raise InvalidRequest("The form expired; reload the page and try again.")
        return Upload(h.path, filename, limit)

    form: FormUpload | None = None
    try:
        check_declared_size(request.headers.get("content-length"), limit)
        form = FormUpload(request.headers.get("content-type"), "archive", open_file)
        await stream_body(request, form.write)
        await run_in_threadpool(form.finish)
    except OwnstreamError as exc:
        if form is not None:
            form.discard()
        message, status = exc.message, exc.status
        return await run_in_threadpool(
            lambda: _form(h, session_id, None, None, message, status_code=status)
        )
    except BaseException:
        if form is not None:
            form.discard()
        raise
    return await run_in_threadpool(_import, h, session_id, form)


def _import(h: Home, session_id: str, form: FormUpload) -> Response:
    fields = form.fields
    connector = fields.get("connector") or ""
    target = fields.get("connection_id") or None
    if not console.csrf_matches(session_id, fields.get("csrf_token")):
        form.discard()
        return _form(h, session_id, target, connector, "The form expired; reload the page and "
                     "try again.", status_code=400)
    if form.upload is None:
        return _form(h, session_id, target, connector, "Choose an archive to upload.",
                     status_code=400)
    progress_id = fields.get("progress_id") or ""
    # without a (well-formed) progress id nobody follows the import: progress goes nowhere
    key = _progress_key(progress_id if PROGRESS_ID.fullmatch(progress_id) else "unfollowed")
    h.progress.begin(key)
    finished: dict[str, Any] = {"status": "failed"}
    try:
        result = import_upload(
            ConnectionOperations(h),
            connector,
            form.upload,
            connection_id=target,
            on_progress=lambda event: h.progress.update(key, event),
        )
        finished = {"status": result.status}
    except OwnstreamError as exc:
        finished = {"status": "failed", "error": exc.to_dict()}
        return _form(h, session_id, target, connector, exc.message, status_code=exc.status)
    finally:
        h.progress.finish(key, finished)
    receipt = result.to_dict()
    return owner_page(
        "receipt.html",
        session_id,
        status_code=201 if result.status == "committed" else 200,
        title="Import receipt",
        nav="Import",
        r=receipt,
        connection=h.store.connection(receipt["connection_id"]),
    )


@router.get("/console/imports/{progress_id}/events")
async def import_events(progress_id: str, request: Request) -> Response:
    """The import's progress while the upload's request runs (it answers with the receipt)."""
    if await run_in_threadpool(current_session, request) is None:
        return Response(status_code=401, headers=PAGE_HEADERS)
    if not PROGRESS_ID.fullmatch(progress_id):
        return Response(status_code=404, headers=PAGE_HEADERS)
    stream = follow(request, home(request).progress, _progress_key(progress_id))
    return StreamingResponse(
        stream, media_type="text/event-stream", headers={**PAGE_HEADERS, "X-Accel-Buffering": "no"}
    )
