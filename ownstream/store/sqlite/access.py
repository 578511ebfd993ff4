"""Grants, bearer tokens (stored only as hashes) and the per-day access counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ownstream.errors import NotFound
from ownstream.model import Grant, StreamGrant
from ownstream.store.base import AccessCount, Token, TokenKind
from ownstream.store.sqlite.database import SQLiteBase, dumps

_TOKEN_COLUMNS = (
    "token_id, token_hash, kind, grant_id, label, created_at, expires_at, revoked_at, last_used_at"
)


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


def _token(row: Sequence[Any]) -> Token:
    return Token(*row)


class AccessRecords(SQLiteBase):
    # grants ---------------------------------------------------------------------------------
    def save_grant(self, grant: Grant, token: Token | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO grants (grant_id, client_id, document, issued_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    grant.grant_id,
                    grant.client_id,
                    dumps(grant.to_dict()),
                    grant.issued_at,
                    grant.expires_at,
                ),
            )
            if token is not None:
                self.save_token(token)

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
        now = self._now()
        with self._tx() as db:
            self.grant(grant_id)
            db.execute(
                "UPDATE grants SET revoked_at = coalesce(revoked_at, ?) WHERE grant_id = ?",
                (now, grant_id),
            )
            db.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE grant_id = ?",
                (now, grant_id),
            )
        return self.grant(grant_id)

    # tokens ---------------------------------------------------------------------------------
    def save_token(self, token: Token) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token.token_id,
                    token.token_hash,
                    token.kind,
                    token.grant_id,
                    token.label,
                    token.created_at,
                    token.expires_at,
                    token.revoked_at,
                    token.last_used_at,
                ),
            )

    def token(self, token_hash: str) -> Token | None:
        row = (
            self._db()
            .execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?", (token_hash,))
            .fetchone()
        )
        return None if row is None else _token(row)

    def tokens(self, kind: TokenKind | None = None) -> list[Token]:
        where, params = self._where([("kind = ?", kind)])
        rows = self._db().execute(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens{where} ORDER BY created_at DESC, token_id",
            params,
        )
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: str) -> Token:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE token_id = ?",
                (self._now(), token_id),
            )
            if cursor.rowcount != 1:
                raise NotFound(f"no token {token_id}", param="token_id")
            row = db.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
        return _token(row)

    def note_token_use(self, last_used: dict[str, str]) -> None:
        if not last_used:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, ''), ?) "
                "WHERE token_id = ?",
                [(at, token_id) for token_id, at in last_used.items()],
            )

    # access counts --------------------------------------------------------------------------
    def add_access_counts(self, counts: Sequence[AccessCount]) -> None:
        if not counts:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO access_counts (day, client_id, grant_id, stream, connection_id, "
                "reads, records) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "reads = reads + excluded.reads, records = records + excluded.records",
                [
                    (c.day, c.client_id, c.grant_id, c.stream, c.connection_id, c.reads, c.records)
                    for c in counts
                ],
            )

    def access_log(
        self, *, client_id: str | None = None, since: str | None = None
    ) -> list[AccessCount]:
        where, params = self._where([("client_id = ?", client_id), ("day >= ?", since)])
        rows = self._db().execute(
            "SELECT day, client_id, grant_id, stream, connection_id, reads, records "
            f"FROM access_counts{where} ORDER BY day DESC, client_id, stream, connection_id",
            params,
        )
        return [AccessCount(*row) for row in rows]
