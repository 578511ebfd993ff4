"""One audit event per owner operation, whatever its outcome."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from ownstream.errors import OwnstreamError
from ownstream.store.base import Store

log = logging.getLogger("ownstream.audit")


@contextmanager
def audited(
    store: Store,
    actor_kind: str,
    operation: str,
    connection_id: str | None,
    summary: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run an operation and record its outcome; the body may fill in `summary`.

    The event is filed under the connection the body resolved (`summary["connection_id"]`, as
    connect and import learn it), else the one named by the caller. `summary["_outcome"]`
    overrides "succeeded". Summaries never hold secrets or record contents.
    """
    summary = {} if summary is None else summary
    try:
        yield summary
    except OwnstreamError as exc:
        store.append_audit(
            actor_kind=actor_kind,
            connection_id=summary.get("connection_id") or connection_id,
            operation=operation,
            outcome="refused" if exc.status in (400, 404, 409) else "failed",
            summary={**summary, "error": exc.code},
        )
        raise
    except Exception:
        # An unexpected failure (a store error, say) is still an outcome the owner sees.
        with suppress(Exception):
            store.append_audit(
                actor_kind=actor_kind,
                connection_id=summary.get("connection_id") or connection_id,
                operation=operation,
                outcome="failed",
                summary={**summary, "error": "internal_error"},
            )
        raise
    outcome = summary.pop("_outcome", "succeeded")
    store.append_audit(
        actor_kind=actor_kind,
        connection_id=summary.get("connection_id") or connection_id,
        operation=operation,
        outcome=outcome,
        summary=summary,
    )
    log.info("%s %s: %s", operation, connection_id or summary.get("connection_id") or "-", outcome)
