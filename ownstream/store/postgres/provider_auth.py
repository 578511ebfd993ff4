"""Credentials a run hands back, and OAuth authorizations at providers from start to callback.

As in the SQLite store: a run's credential write is fenced by the lease that fences its
batches, and an authorization one process starts is completed by whichever `serve` process the
provider redirects to. Here several callbacks may race in separate processes: the claim reads
the authorization's row `FOR UPDATE`, so exactly one moves it from pending to completing and
the others, once it commits, see it completing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson

from ownstream.clock import iso
from ownstream.errors import NotFound
from ownstream.model import Acquisition
from ownstream.store.base import AuthorizationStatus, ProviderAuthorization
from ownstream.store.postgres.collection import Collection
from ownstream.store.postgres.database import Connection as Db
from ownstream.store.postgres.database import dumps

KEEP_ENDED_AUTHORIZATIONS = timedelta(days=1)
_COLUMNS = (
    "authorization_id, connector_key, status, redirect_uri, client_id, settings, display_name, "
    "connection_id, allow_recreate, created_at, expires_at, sealed_verifier, "
    "sealed_client_secret, finished_at, outcome"
)


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
                "created_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                    a.allow_recreate,
                    a.sealed_verifier,
                    a.sealed_client_secret,
                    a.created_at,
                    a.expires_at,
                ),
            )

    def _expire_authorizations(self, db: Db) -> None:
        now = self.clock()
        db.execute(
            "UPDATE provider_authorizations SET status = 'expired', finished_at = %s, "
            "sealed_verifier = NULL, sealed_client_secret = NULL "
            "WHERE status = 'pending' AND expires_at <= %s",
            (iso(now), iso(now)),
        )
        db.execute(
            "DELETE FROM provider_authorizations WHERE expires_at <= %s",
            (iso(now - KEEP_ENDED_AUTHORIZATIONS),),
        )

    def claim_provider_authorization(self, state_hash: str) -> ProviderAuthorization | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT authorization_id, status, expires_at FROM provider_authorizations "
                "WHERE state_hash = %s FOR UPDATE",
                (state_hash,),
            ).fetchone()
            if row is None:
                return None
            authorization_id, status, expires_at = row
            now = self._now()
            if status == "pending" and expires_at <= now:
                db.execute(
                    "UPDATE provider_authorizations SET status = 'expired', finished_at = %s, "
                    "sealed_verifier = NULL, sealed_client_secret = NULL "
                    "WHERE authorization_id = %s",
                    (now, authorization_id),
                )
            elif status == "pending":
                found = self.provider_authorization(authorization_id)
                db.execute(
                    "UPDATE provider_authorizations SET status = 'completing' "
                    "WHERE authorization_id = %s",
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
                "UPDATE provider_authorizations SET status = %s, finished_at = %s, "
                "connection_id = coalesce(%s, connection_id), outcome = %s, "
                "sealed_verifier = NULL, sealed_client_secret = NULL "
                "WHERE authorization_id = %s AND status = %s",
                (status, self._now(), connection_id, dumps(outcome), authorization_id, expected),
            )
            return cursor.rowcount == 1

    def provider_authorization(self, authorization_id: str) -> ProviderAuthorization:
        row = self._row(
            f"SELECT {_COLUMNS} FROM provider_authorizations WHERE authorization_id = %s",
            (authorization_id,),
        )
        if row is None:
            raise NotFound(
                f"no provider authorization {authorization_id}", param="authorization_id"
            )
        return ProviderAuthorization(
            authorization_id=row[0],
            connector_key=row[1],
            status=row[2],
            redirect_uri=row[3],
            client_id=row[4],
            settings=orjson.loads(row[5]),
            display_name=row[6],
            connection_id=row[7],
            allow_recreate=row[8],
            created_at=row[9],
            expires_at=row[10],
            sealed_verifier=row[11],
            sealed_client_secret=row[12],
            finished_at=row[13],
            outcome=orjson.loads(row[14]) if row[14] is not None else None,
        )
