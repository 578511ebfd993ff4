"""Grants and bearer tokens. Tokens are stored only as hashes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from ownstream.clock import now_iso
from ownstream.errors import NotFound
from ownstream.model import Grant, StreamGrant


def grant_from_document(document: dict[str, Any], revoked_at: str | None) -> Grant:
    streams = []
    for entry in document["streams"]:
        constraint = entry.get("time_constraint") or {}
        resources = entry.get("resources")
        streams.append(
            StreamGrant(
                name=entry["name"],
                instance_ids=tuple(entry["instance_ids"]),
                fields=tuple(entry["fields"]),
                time_field=constraint.get("field"),
                since=constraint.get("since"),
                until=constraint.get("until"),
                resources=tuple(resources) if resources is not None else None,
            )
        )
    return Grant(
        grant_id=document["grant_id"],
        client_id=document["client"]["client_id"],
        client_display=document["client"].get("client_display"),
        purpose_code=document["purpose_code"],
        purpose_description=document.get("purpose_description"),
        access_mode=document["access_mode"],
        issued_at=document["issued_at"],
        expires_at=document.get("expires_at"),
        streams=tuple(streams),
        subject_id=document["subject"]["id"],
        revoked_at=revoked_at,
    )


class AccessRecords:
    """Mixed into SQLiteStore; relies on its per-thread `_db()` and `transaction()`."""

    _db: Callable[[], sqlite3.Connection]

    def save_grant(self, grant: Grant) -> None:
        self._db().execute(
            "INSERT INTO grants (grant_id, client_id, document, issued_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                grant.grant_id,
                grant.client_id,
                orjson.dumps(grant.to_dict()),
                grant.issued_at,
                grant.expires_at,
            ),
        )

    def grant(self, grant_id: str) -> Grant:
        row = (
            self._db()
            .execute("SELECT document, revoked_at FROM grants WHERE grant_id = ?", (grant_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no grant {grant_id}", param="grant_id")
        return grant_from_document(orjson.loads(row[0]), row[1])

    def grants(self) -> list[Grant]:
        rows = self._db().execute(
            "SELECT document, revoked_at FROM grants ORDER BY issued_at DESC, grant_id"
        )
        return [grant_from_document(orjson.loads(doc), revoked) for doc, revoked in rows]

    def revoke_grant(self, grant_id: str) -> Grant:
        self.grant(grant_id)
        now = now_iso()
        db = self._db()
        db.execute(
            "UPDATE grants SET revoked_at = coalesce(revoked_at, ?) WHERE grant_id = ?",
            (now, grant_id),
        )
        db.execute(
            "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE grant_id = ?",
            (now, grant_id),
        )
        return self.grant(grant_id)

    def save_token(
        self,
        *,
        token_hash: str,
        token_id: str,
        kind: str,
        grant_id: str | None,
        expires_at: str | None,
    ) -> None:
        self._db().execute(
            "INSERT INTO tokens (token_hash, token_id, kind, grant_id, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token_hash, token_id, kind, grant_id, now_iso(), expires_at),
        )

    def token(self, token_hash: str) -> dict[str, Any] | None:
        row = (
            self._db()
            .execute(
                "SELECT token_hash, token_id, kind, grant_id, expires_at, revoked_at FROM tokens "
                "WHERE token_hash = ?",
                (token_hash,),
            )
            .fetchone()
        )
        if row is None:
            return None
        keys = ("token_hash", "token_id", "kind", "grant_id", "expires_at", "revoked_at")
        return dict(zip(keys, row, strict=True))

    def revoke_token(self, token_id: str) -> None:
        self._db().execute(
            "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE token_id = ?",
            (now_iso(), token_id),
        )
