"""Audit events of client access (registrations, decisions, revocations, detected reuse):
never a secret, only ids and what happened."""

from __future__ import annotations

from typing import Any

from ownstream.store.base import Store


def audit(
    store: Store, actor_kind: str, operation: str, outcome: str, summary: dict[str, Any]
) -> None:
    store.append_audit(
        actor_kind=actor_kind,
        connection_id=None,
        operation=operation,
        outcome=outcome,
        summary=summary,
    )
