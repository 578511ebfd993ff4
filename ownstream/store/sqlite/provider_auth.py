"""Credentials a run hands back, and OAuth authorizations at providers from start to callback.

Both are about a connection's secrets, and both must hold across processes: a run's credential
write is fenced by the same lease as its batches (so it derives from `Collection`), and an
authorization started by one process is completed by whichever `serve` process the provider
redirects to.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson

from ownstream.clock import iso
from ownstream.errors import NotFound
from ownstream.model import Acquisition
from ownstream.store.base import AuthorizationStatus, ProviderAuthorization
from ownstream.store.sqlite.collection import Collection
from ownstream.store.sqlite.database import dumps

KEEP_ENDED_AUTHORIZATIONS = timedelta(days=1)


class ProviderAuthRecords(Collection):
    def save_run_credentials(
        self, acquisition: Acquisition, sealed_secrets: dict[str, tuple[bytes, str]]
    ) -> None:
        with self._tx() as db:
            self._hold_lease(db, acquisition)
            self._save_config(
                db, acquisition.connection_id, acquisition.connector_key, {}, sealed_secrets
            )

    def create_provider_authorization(
        self, authorization: ProviderAuthorization, state_hash: str
    ) -> None:
        a = authorization
        with self._tx() as db:
            self._expire_authorizations(db)
            db.execute(
                "INSERT INTO provider_authorizations (authorization_id, state_hash, "
                "connector_key, status, redirect_uri, client_id, settings, display_name, "
                "connection_id, allow_recreate, sealed_verifier, sealed_client_secret, "
                "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    a.authorization_id,
                    state_hash,
                    a.connector_key,
                    a.status,
                    a.redirect_uri,
                    a.client_id,
                    dumps(a.settings),
                    a.display_name,
                    a.connection_id,
                    int(a.allow_recreate),
                    a.sealed_verifier,
                    a.sealed_client_secret,
                    a.created_at,
                    a.expires_at,
                ),
            )

    def _expire_authorizations(self, db: sqlite3.Connection) -> None:
        now = self.clock()
        db.execute(
            "UPDATE provider_authorizations SET status = 'expired', finished_at = ?, "
            "sealed_verifier = NULL, sealed_client_secret = NULL "
            "WHERE status = 'pending' AND expires_at <= ?",
            (iso(now), iso(now)),
        )
        db.execute(
            "DELETE FROM provider_authorizations WHERE expires_at <= ?",
            (iso(now - KEEP_ENDED_AUTHORIZATIONS),),
        )

    def claim_provider_authorization(self, state_hash: str) -> ProviderAuthorization | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT authorization_id, status, expires_at FROM provider_authorizations "
                "WHERE state_hash = ?",
                (state_hash,),
            ).fetchone()
            if row is None:
                return None
            authorization_id, status, expires_at = row
            now = self._now()
            if status == "pending" and expires_at <= now:
                db.execute(
                    "UPDATE provider_authorizations SET status = 'expired', finished_at = ?, "
                    "sealed_verifier = NULL, sealed_client_secret = NULL "
                    "WHERE authorization_id = ?",
                    (now, authorization_id),
                )
            elif status == "pending":
                found = self.provider_authorization(authorization_id)
                db.execute(
                    "UPDATE provider_authorizations SET status = 'completing' "
                    "WHERE authorization_id = ?",
                    (authorization_id,),
                )
                return replace(found, status="completing")
        return self.provider_authorization(authorization_id)

    def finish_provider_authorization(
        self,
        authorization_id: str,
        *,
        expected: AuthorizationStatus,
        status: AuthorizationStatus,
        connection_id: str | None,
        outcome: dict[str, Any],
    ) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE provider_authorizations SET status = ?, finished_at = ?, "
                "connection_id = coalesce(?, connection_id), outcome = ?, "
                "sealed_verifier = NULL, sealed_client_secret = NULL "
                "WHERE authorization_id = ? AND status = ?",
                (status, self._now(), connection_id, dumps(outcome), authorization_id, expected),
            )
            return cursor.rowcount == 1

    def provider_authorization(self, authorization_id: str) -> ProviderAuthorization:
        rows = self._rows(
            "SELECT * FROM provider_authorizations WHERE authorization_id = ?",
            (authorization_id,),
        )
        if not rows:
            raise NotFound(
                f"no provider authorization {authorization_id}", param="authorization_id"
            )
        r = rows[0]
        return ProviderAuthorization(
            authorization_id=r["authorization_id"],
            connector_key=r["connector_key"],
            status=r["status"],
            redirect_uri=r["redirect_uri"],
            client_id=r["client_id"],
            settings=orjson.loads(r["settings"]),
            display_name=r["display_name"],
            connection_id=r["connection_id"],
            allow_recreate=bool(r["allow_recreate"]),
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            sealed_verifier=r["sealed_verifier"],
            sealed_client_secret=r["sealed_client_secret"],
            finished_at=r["finished_at"],
            outcome=orjson.loads(r["outcome"]) if r["outcome"] else None,
        )

