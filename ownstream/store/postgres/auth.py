"""Client access in PostgreSQL: clients, authorizations, codes, token families, sessions.

Every mutating method is one transaction; "consume once" steps are conditional UPDATEs whose
row count decides: of two serve processes racing for one code or refresh token, the second's
UPDATE waits for the first to commit, re-reads the row, no longer matches, and loses.
"""

from __future__ import annotations

from typing import Any

import orjson

from ownstream.model import Grant
from ownstream.store.auth import (
    AuthCode,
    ConsoleSession,
    IssuedTokens,
    PendingAuthorization,
    RefreshTokenRecord,
    RegisteredClient,
    TokenFamily,
)
from ownstream.store.postgres.database import PostgresBase

_AUTHORIZATION_COLUMNS = (
    "authorization_id, flow, client_id, status, request, scope, resource, created_at, "
    "expires_at, redirect_uri, state, code_challenge, user_code, interval_seconds, "
    "last_polled_at, decided_at, grant_id, redeemed_at"
)
_FAMILY_COLUMNS = "family_id, grant_id, client_id, resource, scope, created_at, revoked_at"
_FAMILY_SELECT = ", ".join(f"f.{column.strip()}" for column in _FAMILY_COLUMNS.split(","))


def _authorization(row: tuple[Any, ...]) -> PendingAuthorization:
    return PendingAuthorization(row[0], row[1], row[2], row[3], orjson.loads(row[4]), *row[5:])


class AuthRecords(PostgresBase):
    """Mixed into PostgresStore, beside the grant and token records it links to."""

    save_grant: Any  # AccessRecords'
    save_token: Any
    revoke_grant: Any

    # clients ----------------------------------------------------------------------------------
    def save_client(self, client: RegisteredClient) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO oauth_clients (client_id, secret_hash, metadata, registered_at) "
                "VALUES (%s, %s, %s, %s)",
                (client.client_id, client.secret_hash, orjson.dumps(client.metadata),
                 client.registered_at),
            )

    def client(self, client_id: str) -> RegisteredClient | None:
        row = self._row(
            "SELECT client_id, metadata, registered_at, secret_hash FROM oauth_clients "
            "WHERE client_id = %s AND deleted_at IS NULL",
            (client_id,),
        )
        if row is None:
            return None
        return RegisteredClient(row[0], orjson.loads(row[1]), row[2], row[3])

    def clients(self) -> list[RegisteredClient]:
        rows = self._rows(
            "SELECT client_id, metadata, registered_at, secret_hash FROM oauth_clients "
            "WHERE deleted_at IS NULL ORDER BY registered_at DESC, client_id"
        )
        return [RegisteredClient(c, orjson.loads(m), at, s) for c, m, at, s in rows]

    def delete_client(self, client_id: str) -> list[str]:
        now = self._now()
        with self._tx() as db:
            db.execute(
                "UPDATE oauth_clients SET deleted_at = %s WHERE client_id = %s "
                "AND deleted_at IS NULL",
                (now, client_id),
            )
            db.execute(
                "UPDATE oauth_authorizations SET status = 'denied', decided_at = %s "
                "WHERE client_id = %s AND status = 'pending'",
                (now, client_id),
            )
            grant_ids = [
                row[0]
                for row in db.execute(
                    "SELECT grant_id FROM grants WHERE client_id = %s AND revoked_at IS NULL",
                    (client_id,),
                )
            ]
            for grant_id in grant_ids:
                self.revoke_grant_families(grant_id, "client_deleted")
        return grant_ids

    # authorizations -----------------------------------------------------------------------------
    def create_authorization(
        self,
        authorization: PendingAuthorization,
        *,
        request_uri_hash: str | None = None,
        device_code_hash: str | None = None,
    ) -> None:
        a = authorization
        with self._tx() as db:
            db.execute(
                f"INSERT INTO oauth_authorizations ({_AUTHORIZATION_COLUMNS}, request_uri_hash, "
                "device_code_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s, %s)",
                (a.authorization_id, a.flow, a.client_id, a.status, orjson.dumps(a.request),
                 a.scope, a.resource, a.created_at, a.expires_at, a.redirect_uri, a.state,
                 a.code_challenge, a.user_code, a.interval_seconds, a.last_polled_at,
                 a.decided_at, a.grant_id, a.redeemed_at, request_uri_hash, device_code_hash),
            )

    def _authorization_where(self, clause: str, value: Any) -> PendingAuthorization | None:
        row = self._row(
            f"SELECT {_AUTHORIZATION_COLUMNS} FROM oauth_authorizations WHERE {clause} "
            "ORDER BY created_at DESC LIMIT 1",
            (value,),
        )
        return None if row is None else _authorization(row)

    def authorization(self, authorization_id: str) -> PendingAuthorization | None:
        return self._authorization_where("authorization_id = %s", authorization_id)

    def authorization_by_request_uri(self, request_uri_hash: str) -> PendingAuthorization | None:
        return self._authorization_where("request_uri_hash = %s", request_uri_hash)

    def authorization_by_device_code(self, device_code_hash: str) -> PendingAuthorization | None:
        return self._authorization_where("device_code_hash = %s", device_code_hash)

    def authorization_by_user_code(self, user_code: str) -> PendingAuthorization | None:
        return self._authorization_where("user_code = %s AND status = 'pending'", user_code)

    def authorizations(self, status: str | None = None) -> list[PendingAuthorization]:
        where, params = self._where([("status = %s", status)])
        rows = self._rows(
            f"SELECT {_AUTHORIZATION_COLUMNS} FROM oauth_authorizations{where} "
            "ORDER BY created_at DESC, authorization_id",
            params,
        )
        return [_authorization(row) for row in rows]

    def approve_authorization(
        self,
        authorization_id: str,
        grant: Grant,
        *,
        code_hash: str | None = None,
        code_expires_at: str | None = None,
    ) -> bool:
        now = self._now()
        with self._tx() as db:
            changed = db.execute(
                "UPDATE oauth_authorizations SET status = 'approved', decided_at = %s, "
                "grant_id = %s WHERE authorization_id = %s AND status = 'pending' "
                "AND expires_at > %s",
                (now, grant.grant_id, authorization_id, now),
            ).rowcount
            if changed != 1:
                return False
            self.save_grant(grant, None)
            if code_hash is not None:
                db.execute(
                    "INSERT INTO oauth_codes (code_hash, authorization_id, created_at, "
                    "expires_at) VALUES (%s, %s, %s, %s)",
                    (code_hash, authorization_id, now, code_expires_at),
                )
        return True

    def deny_authorization(self, authorization_id: str) -> bool:
        now = self._now()
        with self._tx() as db:
            changed = db.execute(
                "UPDATE oauth_authorizations SET status = 'denied', decided_at = %s "
                "WHERE authorization_id = %s AND status = 'pending' AND expires_at > %s",
                (now, authorization_id, now),
            ).rowcount
        return changed == 1

    def record_poll(self, authorization_id: str, polled_at: str) -> str | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT last_polled_at FROM oauth_authorizations WHERE authorization_id = %s "
                "FOR UPDATE",
                (authorization_id,),
            ).fetchone()
            db.execute(
                "UPDATE oauth_authorizations SET last_polled_at = %s WHERE authorization_id = %s",
                (polled_at, authorization_id),
            )
        return None if row is None else row[0]

    def set_poll_interval(self, authorization_id: str, interval_seconds: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE oauth_authorizations SET interval_seconds = %s "
                "WHERE authorization_id = %s",
                (interval_seconds, authorization_id),
            )

    # codes and tokens ---------------------------------------------------------------------------
    def auth_code(self, code_hash: str) -> AuthCode | None:
        row = self._row(
            "SELECT authorization_id, expires_at, redeemed_at FROM oauth_codes "
            "WHERE code_hash = %s",
            (code_hash,),
        )
        if row is None:
            return None
        authorization = self.authorization(row[0])
        if authorization is None:
            return None
        return AuthCode(code_hash, authorization, row[1], row[2])

    def _store_tokens(self, family_id: str, tokens: IssuedTokens) -> None:
        self.save_token(tokens.access)
        with self._tx() as db:
            db.execute(
                "INSERT INTO family_access_tokens (token_id, family_id) VALUES (%s, %s)",
                (tokens.access.token_id, family_id),
            )
            if tokens.refresh_token_hash is not None:
                db.execute(
                    "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (tokens.refresh_token_hash, family_id, self._now(),
                     tokens.refresh_expires_at),
                )

    def _redeem(
        self, consume: str, params: tuple[Any, ...], family: TokenFamily, tokens: IssuedTokens
    ) -> bool:
        """Run the consuming UPDATE; only if it changed its one row, store family and tokens."""
        with self._tx() as db:
            if db.execute(consume, params).rowcount != 1:
                return False
            db.execute(
                f"INSERT INTO token_families ({_FAMILY_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (family.family_id, family.grant_id, family.client_id, family.resource,
                 family.scope, family.created_at, family.revoked_at),
            )
            self._store_tokens(family.family_id, tokens)
        return True

    def redeem_code(self, code_hash: str, family: TokenFamily, tokens: IssuedTokens) -> bool:
        return self._redeem(
            "UPDATE oauth_codes SET redeemed_at = %s WHERE code_hash = %s "
            "AND redeemed_at IS NULL",
            (self._now(), code_hash),
            family,
            tokens,
        )

    def redeem_authorization(
        self, authorization_id: str, family: TokenFamily, tokens: IssuedTokens
    ) -> bool:
        return self._redeem(
            "UPDATE oauth_authorizations SET status = 'redeemed', redeemed_at = %s "
            "WHERE authorization_id = %s AND status = 'approved'",
            (self._now(), authorization_id),
            family,
            tokens,
        )

    def refresh_token(self, token_hash: str) -> RefreshTokenRecord | None:
        row = self._row(
            f"SELECT r.token_hash, r.created_at, r.expires_at, r.superseded_at, {_FAMILY_SELECT} "
            "FROM refresh_tokens r JOIN token_families f ON f.family_id = r.family_id "
            "WHERE r.token_hash = %s",
            (token_hash,),
        )
        if row is None:
            return None
        return RefreshTokenRecord(row[0], TokenFamily(*row[4:]), row[1], row[2], row[3])

    def rotate_refresh_token(self, token_hash: str, tokens: IssuedTokens) -> bool:
        with self._tx() as db:
            row = db.execute(
                "UPDATE refresh_tokens SET superseded_at = %s WHERE token_hash = %s "
                "AND superseded_at IS NULL RETURNING family_id",
                (self._now(), token_hash),
            ).fetchone()
            if row is None:
                return False
            self._store_tokens(row[0], tokens)
        return True

    def token_family(self, token_id: str) -> TokenFamily | None:
        row = self._row(
            f"SELECT {_FAMILY_SELECT} FROM family_access_tokens t "
            "JOIN token_families f ON f.family_id = t.family_id WHERE t.token_id = %s",
            (token_id,),
        )
        return None if row is None else TokenFamily(*row)

    def revoke_grant_families(self, grant_id: str, reason: str) -> None:
        now = self._now()
        with self._tx() as db:
            db.execute(
                "UPDATE token_families SET revoked_at = coalesce(revoked_at, %s), "
                "revoked_reason = coalesce(revoked_reason, %s) WHERE grant_id = %s",
                (now, reason, grant_id),
            )
            db.execute(
                "UPDATE refresh_tokens SET superseded_at = coalesce(superseded_at, %s) "
                "WHERE family_id IN (SELECT family_id FROM token_families WHERE grant_id = %s)",
                (now, grant_id),
            )
            self.revoke_grant(grant_id)

    # owner console ------------------------------------------------------------------------------
    def save_console_link(self, link_hash: str, expires_at: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO console_links (link_hash, created_at, expires_at) "
                "VALUES (%s, %s, %s)",
                (link_hash, self._now(), expires_at),
            )

    def use_console_link(self, link_hash: str, used_at: str) -> bool:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE console_links SET used_at = %s WHERE link_hash = %s "
                "AND used_at IS NULL AND expires_at > %s",
                (used_at, link_hash, used_at),
            ).rowcount
        return changed == 1

    def create_console_session(self, session_hash: str, expires_at: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO console_sessions (session_hash, created_at, expires_at) "
                "VALUES (%s, %s, %s)",
                (session_hash, self._now(), expires_at),
            )

    def console_session(self, session_hash: str) -> ConsoleSession | None:
        row = self._row(
            "SELECT session_hash, created_at, expires_at, ended_at FROM console_sessions "
            "WHERE session_hash = %s",
            (session_hash,),
        )
        return None if row is None else ConsoleSession(*row)

    def end_console_session(self, session_hash: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE console_sessions SET ended_at = coalesce(ended_at, %s) "
                "WHERE session_hash = %s",
                (self._now(), session_hash),
            )

    def auth_setting(self, key: str) -> str | None:
        row = self._row("SELECT value FROM auth_settings WHERE key = %s", (key,))
        return None if row is None else str(row[0])

    def put_auth_setting(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO auth_settings (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
