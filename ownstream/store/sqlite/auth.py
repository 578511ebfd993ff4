"""Client access in SQLite: clients, authorizations, codes, token families, console sessions.

Every mutating method is one transaction; "consume once" steps are conditional UPDATEs whose
row count decides, so two serve processes racing for one code or refresh token cannot both win.
"""

from __future__ import annotations

from importlib import resources
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
from ownstream.store.sqlite.database import SQLiteBase, run_script

_AUTHORIZATION_COLUMNS = (
    "authorization_id, flow, client_id, status, request, scope, resource, created_at, "
    "expires_at, redirect_uri, state, code_challenge, user_code, interval_seconds, "
    "last_polled_at, decided_at, grant_id, redeemed_at"
)
_FAMILY_COLUMNS = "family_id, grant_id, client_id, resource, scope, created_at, revoked_at"
_FAMILY_SELECT = ", ".join(f"f.{column.strip()}" for column in _FAMILY_COLUMNS.split(","))


def _authorization(row: tuple[Any, ...]) -> PendingAuthorization:
    (authorization_id, flow, client_id, status, request, scope, resource, created_at,
     expires_at, redirect_uri, state, code_challenge, user_code, interval_seconds,
     last_polled_at, decided_at, grant_id, redeemed_at) = row
    return PendingAuthorization(
        authorization_id=authorization_id,
        flow=flow,
        client_id=client_id,
        status=status,
        request=orjson.loads(request),
        scope=scope,
        resource=resource,
        created_at=created_at,
        expires_at=expires_at,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=code_challenge,
        user_code=user_code,
        interval_seconds=interval_seconds,
        last_polled_at=last_polled_at,
        decided_at=decided_at,
        grant_id=grant_id,
        redeemed_at=redeemed_at,
    )


def _family(row: tuple[Any, ...]) -> TokenFamily:
    family_id, grant_id, client_id, resource, scope, created_at, revoked_at = row
    return TokenFamily(family_id, grant_id, client_id, resource, scope, created_at, revoked_at)


class AuthRecords(SQLiteBase):
    """Mixed into SQLiteStore, beside the grant and token records it links to."""

    save_grant: Any  # AccessRecords'
    save_token: Any
    revoke_grant: Any

    def _prepare(self) -> None:
        """The store's schema first, then the client-access tables (`auth.sql`)."""
        super()._prepare()
        with self._tx() as db:
            run_script(db, resources.files(__package__).joinpath("auth.sql").read_text())

    # clients ----------------------------------------------------------------------------------
    def save_client(self, client: RegisteredClient) -> None:
        with self._tx():
            self._db().execute(
                "INSERT INTO oauth_clients (client_id, secret_hash, metadata, registered_at) "
                "VALUES (?, ?, ?, ?)",
                (client.client_id, client.secret_hash, orjson.dumps(client.metadata),
                 client.registered_at),
            )

    def client(self, client_id: str) -> RegisteredClient | None:
        row = self._db().execute(
            "SELECT client_id, metadata, registered_at, secret_hash FROM oauth_clients "
            "WHERE client_id = ? AND deleted_at IS NULL",
            (client_id,),
        ).fetchone()
        if row is None:
            return None
        return RegisteredClient(row[0], orjson.loads(row[1]), row[2], row[3])

    def clients(self) -> list[RegisteredClient]:
        rows = self._db().execute(
            "SELECT client_id, metadata, registered_at, secret_hash FROM oauth_clients "
            "WHERE deleted_at IS NULL ORDER BY registered_at DESC, client_id"
        )
        return [RegisteredClient(c, orjson.loads(m), at, s) for c, m, at, s in rows]

    def delete_client(self, client_id: str) -> list[str]:
        now = self._now()
        with self._tx():
            db = self._db()
            db.execute(
                "UPDATE oauth_clients SET deleted_at = ? WHERE client_id = ? "
                "AND deleted_at IS NULL",
                (now, client_id),
            )
            db.execute(
                "UPDATE oauth_authorizations SET status = 'denied', decided_at = ? "
                "WHERE client_id = ? AND status = 'pending'",
                (now, client_id),
            )
            grant_ids = [
                row[0]
                for row in db.execute(
                    "SELECT grant_id FROM grants WHERE client_id = ? AND revoked_at IS NULL",
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
        with self._tx():
            self._db().execute(
                f"INSERT INTO oauth_authorizations ({_AUTHORIZATION_COLUMNS}, request_uri_hash, "
                "device_code_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)",
                (a.authorization_id, a.flow, a.client_id, a.status, orjson.dumps(a.request),
                 a.scope, a.resource, a.created_at, a.expires_at, a.redirect_uri, a.state,
                 a.code_challenge, a.user_code, a.interval_seconds, a.last_polled_at,
                 a.decided_at, a.grant_id, a.redeemed_at, request_uri_hash, device_code_hash),
            )

    def _authorization_where(self, clause: str, value: Any) -> PendingAuthorization | None:
        row = self._db().execute(
            f"SELECT {_AUTHORIZATION_COLUMNS} FROM oauth_authorizations WHERE {clause} "
            "ORDER BY created_at DESC LIMIT 1",
            (value,),
        ).fetchone()
        return None if row is None else _authorization(row)

    def authorization(self, authorization_id: str) -> PendingAuthorization | None:
        return self._authorization_where("authorization_id = ?", authorization_id)

    def authorization_by_request_uri(self, request_uri_hash: str) -> PendingAuthorization | None:
        return self._authorization_where("request_uri_hash = ?", request_uri_hash)

    def authorization_by_device_code(self, device_code_hash: str) -> PendingAuthorization | None:
        return self._authorization_where("device_code_hash = ?", device_code_hash)

    def authorization_by_user_code(self, user_code: str) -> PendingAuthorization | None:
        return self._authorization_where("user_code = ? AND status = 'pending'", user_code)

    def authorizations(self, status: str | None = None) -> list[PendingAuthorization]:
        sql = f"SELECT {_AUTHORIZATION_COLUMNS} FROM oauth_authorizations"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        rows = self._db().execute(sql + " ORDER BY created_at DESC, authorization_id", params)
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
        with self._tx():
            db = self._db()
            changed = db.execute(
                "UPDATE oauth_authorizations SET status = 'approved', decided_at = ?, "
                "grant_id = ? WHERE authorization_id = ? AND status = 'pending' "
                "AND expires_at > ?",
                (now, grant.grant_id, authorization_id, now),
            ).rowcount
            if changed != 1:
                return False
            self.save_grant(grant, None)
            if code_hash is not None:
                db.execute(
                    "INSERT INTO oauth_codes (code_hash, authorization_id, created_at, "
                    "expires_at) VALUES (?, ?, ?, ?)",
                    (code_hash, authorization_id, now, code_expires_at),
                )
        return True

    def deny_authorization(self, authorization_id: str) -> bool:
        now = self._now()
        with self._tx():
            changed = self._db().execute(
                "UPDATE oauth_authorizations SET status = 'denied', decided_at = ? "
                "WHERE authorization_id = ? AND status = 'pending' AND expires_at > ?",
                (now, authorization_id, now),
            ).rowcount
        return bool(changed == 1)

    def record_poll(self, authorization_id: str, polled_at: str) -> str | None:
        with self._tx():
            db = self._db()
            row = db.execute(
                "SELECT last_polled_at FROM oauth_authorizations WHERE authorization_id = ?",
                (authorization_id,),
            ).fetchone()
            db.execute(
                "UPDATE oauth_authorizations SET last_polled_at = ? WHERE authorization_id = ?",
                (polled_at, authorization_id),
            )
        return None if row is None else row[0]

    def set_poll_interval(self, authorization_id: str, interval_seconds: int) -> None:
        with self._tx():
            self._db().execute(
                "UPDATE oauth_authorizations SET interval_seconds = ? WHERE authorization_id = ?",
                (interval_seconds, authorization_id),
            )

    # codes and tokens ---------------------------------------------------------------------------
    def auth_code(self, code_hash: str) -> AuthCode | None:
        row = self._db().execute(
            "SELECT authorization_id, expires_at, redeemed_at FROM oauth_codes "
            "WHERE code_hash = ?",
            (code_hash,),
        ).fetchone()
        if row is None:
            return None
        authorization = self.authorization(row[0])
        if authorization is None:
            return None
        return AuthCode(code_hash, authorization, row[1], row[2])

    def _store_tokens(self, family_id: str, tokens: IssuedTokens) -> None:
        self.save_token(tokens.access)
        db = self._db()
        db.execute(
            "INSERT INTO family_access_tokens (token_id, family_id) VALUES (?, ?)",
            (tokens.access.token_id, family_id),
        )
        if tokens.refresh_token_hash is not None:
            db.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (tokens.refresh_token_hash, family_id, self._now(), tokens.refresh_expires_at),
            )

    def _insert_family(self, family: TokenFamily) -> None:
        self._db().execute(
            f"INSERT INTO token_families ({_FAMILY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (family.family_id, family.grant_id, family.client_id, family.resource, family.scope,
             family.created_at, family.revoked_at),
        )

    def _redeem(
        self, consume: str, params: tuple[Any, ...], family: TokenFamily, tokens: IssuedTokens
    ) -> bool:
        """Run the consuming UPDATE; only if it changed its one row, store family and tokens."""
        with self._tx():
            if self._db().execute(consume, params).rowcount != 1:
                return False
            self._insert_family(family)
            self._store_tokens(family.family_id, tokens)
        return True

    def redeem_code(self, code_hash: str, family: TokenFamily, tokens: IssuedTokens) -> bool:
        return self._redeem(
            "UPDATE oauth_codes SET redeemed_at = ? WHERE code_hash = ? AND redeemed_at IS NULL",
            (self._now(), code_hash),
            family,
            tokens,
        )

    def redeem_authorization(
        self, authorization_id: str, family: TokenFamily, tokens: IssuedTokens
    ) -> bool:
        return self._redeem(
            "UPDATE oauth_authorizations SET status = 'redeemed', redeemed_at = ? "
            "WHERE authorization_id = ? AND status = 'approved'",
            (self._now(), authorization_id),
            family,
            tokens,
        )

    def refresh_token(self, token_hash: str) -> RefreshTokenRecord | None:
        row = self._db().execute(
            f"SELECT r.token_hash, r.created_at, r.expires_at, r.superseded_at, {_FAMILY_SELECT} "
            "FROM refresh_tokens r JOIN token_families f ON f.family_id = r.family_id "
            "WHERE r.token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return RefreshTokenRecord(row[0], _family(row[4:]), row[1], row[2], row[3])

    def rotate_refresh_token(self, token_hash: str, tokens: IssuedTokens) -> bool:
        with self._tx():
            db = self._db()
            row = db.execute(
                "SELECT family_id FROM refresh_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            superseded = db.execute(
                "UPDATE refresh_tokens SET superseded_at = ? WHERE token_hash = ? "
                "AND superseded_at IS NULL",
                (self._now(), token_hash),
            ).rowcount
            if row is None or superseded != 1:
                return False
            self._store_tokens(row[0], tokens)
        return True

    def token_family(self, token_id: str) -> TokenFamily | None:
        row = self._db().execute(
            f"SELECT {_FAMILY_SELECT} FROM family_access_tokens t "
            "JOIN token_families f ON f.family_id = t.family_id WHERE t.token_id = ?",
            (token_id,),
        ).fetchone()
        return None if row is None else _family(row)

    def revoke_grant_families(self, grant_id: str, reason: str) -> None:
        now = self._now()
        with self._tx():
            db = self._db()
            db.execute(
                "UPDATE token_families SET revoked_at = coalesce(revoked_at, ?), "
                "revoked_reason = coalesce(revoked_reason, ?) WHERE grant_id = ?",
                (now, reason, grant_id),
            )
            db.execute(
                "UPDATE refresh_tokens SET superseded_at = coalesce(superseded_at, ?) "
                "WHERE family_id IN (SELECT family_id FROM token_families WHERE grant_id = ?)",
                (now, grant_id),
            )
            self.revoke_grant(grant_id)

    # owner console ------------------------------------------------------------------------------
    def save_console_link(self, link_hash: str, expires_at: str) -> None:
        with self._tx():
            self._db().execute(
                "INSERT INTO console_links (link_hash, created_at, expires_at) VALUES (?, ?, ?)",
                (link_hash, self._now(), expires_at),
            )

    def use_console_link(self, link_hash: str, used_at: str) -> bool:
        with self._tx():
            changed = self._db().execute(
                "UPDATE console_links SET used_at = ? WHERE link_hash = ? AND used_at IS NULL "
                "AND expires_at > ?",
                (used_at, link_hash, used_at),
            ).rowcount
        return bool(changed == 1)

    def create_console_session(self, session_hash: str, expires_at: str) -> None:
        with self._tx():
            self._db().execute(
                "INSERT INTO console_sessions (session_hash, created_at, expires_at) "
                "VALUES (?, ?, ?)",
                (session_hash, self._now(), expires_at),
            )

    def console_session(self, session_hash: str) -> ConsoleSession | None:
        row = self._db().execute(
            "SELECT session_hash, created_at, expires_at, ended_at FROM console_sessions "
            "WHERE session_hash = ?",
            (session_hash,),
        ).fetchone()
        return None if row is None else ConsoleSession(*row)

    def end_console_session(self, session_hash: str) -> None:
        with self._tx():
            self._db().execute(
                "UPDATE console_sessions SET ended_at = coalesce(ended_at, ?) "
                "WHERE session_hash = ?",
                (self._now(), session_hash),
            )

    def auth_setting(self, key: str) -> str | None:
        row = self._db().execute(
            "SELECT value FROM auth_settings WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def put_auth_setting(self, key: str, value: str) -> None:
        with self._tx():
            self._db().execute(
                "INSERT INTO auth_settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
