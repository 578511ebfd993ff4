"""Grants, bearer tokens (stored only as hashes) and the per-day access counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ownstream.errors import NotFound
from ownstream.model import Grant
from ownstream.store.base import AccessCount, Token, TokenKind
from ownstream.store.postgres.database import PostgresBase, dumps
from ownstream.store.sqlite.access import grant_from_document

_TOKEN_COLUMNS = (
    "token_id, token_hash, kind, grant_id, label, created_at, expires_at, revoked_at, last_used_at"
)


def _token(row: Sequence[Any]) -> Token:
    return Token(*row)


class AccessRecords(PostgresBase):
    # grants ---------------------------------------------------------------------------------
    def save_grant(self, grant: Grant, token: Token | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO grants (grant_id, client_id, document, issued_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s)",
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
        row = self._row("SELECT document, revoked_at FROM grants WHERE grant_id = %s", (grant_id,))
        if row is None:
            raise NotFound(f"no grant {grant_id}", param="grant_id")
        return grant_from_document(orjson.loads(row[0]), row[1])

    def grants(self) -> list[Grant]:
        rows = self._rows(
            "SELECT document, revoked_at FROM grants ORDER BY issued_at DESC, grant_id"
        )
        return [grant_from_document(orjson.loads(doc), revoked) for doc, revoked in rows]

    def revoke_grant(self, grant_id: str) -> Grant:
        now = self._now()
        with self._tx() as db:
            self.grant(grant_id)
            db.execute(
                "UPDATE grants SET revoked_at = coalesce(revoked_at, %s) WHERE grant_id = %s",
                (now, grant_id),
            )
            db.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, %s) WHERE grant_id = %s",
                (now, grant_id),
            )
        return self.grant(grant_id)

    # tokens ---------------------------------------------------------------------------------
    def save_token(self, token: Token) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
        row = self._row(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE token_hash = %s", (token_hash,))
        return None if row is None else _token(row)

    def tokens(self, kind: TokenKind | None = None) -> list[Token]:
        where, params = self._where([("kind = %s", kind)])
        rows = self._rows(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens{where} ORDER BY created_at DESC, token_id",
            params,
        )
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: str) -> Token:
        with self._tx() as db:
            row = db.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, %s) WHERE token_id = %s "
                f"RETURNING {_TOKEN_COLUMNS}",
                (self._now(), token_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no token {token_id}", param="token_id")
        return _token(row)

    def note_token_use(self, last_used: dict[str, str]) -> None:
        if not last_used:
            return
        with self._tx() as db:
            db.execute(
                "UPDATE tokens t SET last_used_at = greatest(t.last_used_at, u.at) "
                "FROM unnest(%s::text[], %s::text[]) AS u (token_id, at) "
                "WHERE t.token_id = u.token_id",
                (list(last_used), list(last_used.values())),
            )

    # access counts --------------------------------------------------------------------------
    def add_access_counts(self, counts: Sequence[AccessCount]) -> None:
        if not counts:
            return
        with self._tx() as db:
            db.cursor().executemany(
                "INSERT INTO access_counts (day, client_id, grant_id, stream, connection_id, "
                "reads, records) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
                "(day, client_id, grant_id, stream, connection_id) DO UPDATE SET "
                "reads = access_counts.reads + excluded.reads, "
                "records = access_counts.records + excluded.records",
                [
                    (c.day, c.client_id, c.grant_id, c.stream, c.connection_id, c.reads, c.records)
                    for c in counts
                ],
            )

    def access_log(
        self, *, client_id: str | None = None, since: str | None = None
    ) -> list[AccessCount]:
        where, params = self._where([("client_id = %s", client_id), ("day >= %s", since)])
        rows = self._rows(
            "SELECT day, client_id, grant_id, stream, connection_id, reads, records "
            f"FROM access_counts{where} ORDER BY day DESC, client_id, stream, connection_id",
            params,
        )
        return [AccessCount(*row) for row in rows]
