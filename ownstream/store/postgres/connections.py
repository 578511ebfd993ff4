"""Registrations, connections, their paths and configuration, and deleting a connection.

Starting a stage and deleting a connection take the same per-connection advisory lock, so a
run can never start on a connection another process is deleting (see `connection_lock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ownstream.clock import stable_id
from ownstream.errors import ConnectionNotFound, ConnectionRunActive
from ownstream.model import AttachedPath, Connection, ConnectionIdentity, ConnectionStatus
from ownstream.store.base import (
    ConnectionConfig,
    CredentialInfo,
    DeleteCounts,
    NewConnection,
    PathAttachment,
)
from ownstream.store.postgres.blobs import BlobReferences
from ownstream.store.postgres.database import Connection as Db
from ownstream.store.postgres.database import dumps
from ownstream.store.postgres.search_index import SearchIndex

PURGE_CHUNK = 2000

# Everything keyed on one connection_id that goes when the connection goes (records and their
# changes and evidence are purged after, in short transactions). Audit events and grants stay.
CONNECTION_TABLES = (
    "stream_stats",
    "coverage",
    "connection_state",
    "schedules",
    "run_leases",
    "acquisition_batches",
    "connection_credentials",
    "provider_authorizations",
    "connection_settings",
    "connection_paths",
    "connections",
)

_CONNECTION_COLUMNS = (
    "connection_id, owner_id, source, display_name, display_name_is_placeholder, status, "
    "created_at, updated_at, revoked_at, identity_claim, identity_value, identity_proven_by, "
    "identity_rule_id, identity_proven_at"
)


def connection_lock(db: Db, connection_id: str) -> None:
    """Serialize starting a stage of, and deleting, one connection (until the transaction ends)."""
    db.execute("SELECT pg_advisory_xact_lock(hashtext('connection:' || %s))", (connection_id,))


class ConnectionRecords(SearchIndex, BlobReferences):
    # registrations ------------------------------------------------------------------------
    def registrations(self, kind: str) -> list[tuple[dict[str, Any], str | None]]:
        rows = self._rows(
            "SELECT document, base_dir FROM registrations WHERE kind = %s ORDER BY added_at, key",
            (kind,),
        )
        return [(orjson.loads(doc), base_dir) for doc, base_dir in rows]

    def save_registration(
        self, kind: str, key: str, document: dict[str, Any], base_dir: str | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO registrations (kind, key, document, base_dir, added_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, key) DO UPDATE SET "
                "document = excluded.document, base_dir = excluded.base_dir",
                (kind, key, dumps(document), base_dir, self._now()),
            )

    # connections --------------------------------------------------------------------------
    def connection_id_for(self, new: NewConnection) -> str:
        identity = new.identity
        if identity is not None:
            base = stable_id(
                "cin", new.owner_id, new.source, identity.claim, identity.value, identity.proven_by
            )
        else:
            base = stable_id("cin", new.owner_id, new.source, "no-identity", new.seed)
        connection_id, generation = base, 0
        while self._row(
            "SELECT 1 FROM deleted_connections WHERE connection_id = %s", (connection_id,)
        ):
            generation += 1
            connection_id = stable_id("cin", base, str(generation))
        return connection_id

    def create_connection(
        self,
        new: NewConnection,
        attach: PathAttachment,
        config: tuple[str, dict[str, str], dict[str, tuple[bytes, str]]] | None = None,
    ) -> Connection:
        with self._tx() as db:
            connection_id = self.connection_id_for(new)
            self._insert_connection(db, connection_id, new)
            self._attach(db, connection_id, attach)
            if config is not None:
                connector_key, settings, sealed = config
                self._save_config(db, connection_id, connector_key, settings, sealed)
        return self.connection(connection_id)

    def _insert_connection(self, db: Db, connection_id: str, new: NewConnection) -> None:
        identity, now = new.identity, self._now()
        db.execute(
            "INSERT INTO connections (connection_id, owner_id, source, display_name, "
            "display_name_is_placeholder, status, identity_claim, identity_value, "
            "identity_proven_by, identity_rule_id, identity_proven_at, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, 'active', %s, %s, %s, %s, %s, %s, %s)",
            (
                connection_id,
                new.owner_id,
                new.source,
                new.display_name,
                new.display_name_is_placeholder,
                identity.claim if identity else None,
                identity.value if identity else None,
                identity.proven_by if identity else None,
                identity.rule_id if identity else None,
                identity.proven_at if identity else None,
                now,
                now,
            ),
        )
        if identity is not None:  # the owner re-created a deleted identity explicitly
            db.execute(
                "DELETE FROM identity_tombstones WHERE owner_id = %s AND source = %s AND "
                "claim = %s AND value = %s",
                (new.owner_id, new.source, identity.claim, identity.value),
            )

    def attach_path(self, connection_id: str, attach: PathAttachment) -> Connection:
        with self._tx() as db:
            self.connection(connection_id)
            self._attach(db, connection_id, attach)
        return self.connection(connection_id)

    def _attach(self, db: Db, connection_id: str, attach: PathAttachment) -> None:
        now = self._now()
        db.execute(
            "INSERT INTO connection_paths (connection_id, connector_key, acquisition_method,"
            " attached_at, proved_identity, rule_id) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (connection_id, connector_key) DO UPDATE SET "
            "proved_identity = connection_paths.proved_identity OR excluded.proved_identity, "
            "rule_id = coalesce(connection_paths.rule_id, excluded.rule_id)",
            (
                connection_id,
                attach.connector_key,
                attach.acquisition_method,
                now,
                attach.proved_identity,
                attach.rule_id,
            ),
        )
        db.execute(
            "UPDATE connections SET updated_at = %s WHERE connection_id = %s",
            (now, connection_id),
        )

    def connection(self, connection_id: str) -> Connection:
        found = self.connections(connection_ids=[connection_id])
        if not found:
            raise ConnectionNotFound(f"no connection {connection_id}", param="connection_id")
        return found[0]

    def connections(
        self,
        *,
        source: str | None = None,
        connector_key: str | None = None,
        connection_ids: Sequence[str] | None = None,
    ) -> list[Connection]:
        where, params = self._where(
            [
                ("source = %s", source),
                (
                    "connection_id IN (SELECT connection_id FROM connection_paths "
                    "WHERE connector_key = %s)",
                    connector_key,
                ),
                (
                    "connection_id = ANY(%s)",
                    None if connection_ids is None else list(connection_ids),
                ),
            ]
        )
        # one statement: each connection's row, once per path (its paths in attachment order)
        found = self._rows(
            f"SELECT {_CONNECTION_COLUMNS}, p.connector_key, p.acquisition_method, "
            "p.attached_at, p.proved_identity, p.rule_id FROM (SELECT * FROM connections"
            f"{where}) AS c LEFT JOIN connection_paths p USING (connection_id) "
            "ORDER BY c.created_at, c.connection_id, p.attached_at, p.connector_key",
            params,
        )
        rows: dict[str, tuple[Any, ...]] = {}
        paths: dict[str, list[AttachedPath]] = {}
        for row in found:
            rows.setdefault(row[0], row[:14])
            if row[14] is not None:
                paths.setdefault(row[0], []).append(AttachedPath(*row[14:]))
        return [
            Connection(
                connection_id=row[0],
                owner_id=row[1],
                source=row[2],
                display_name=row[3],
                display_name_is_placeholder=row[4],
                status=row[5],
                created_at=row[6],
                updated_at=row[7],
                revoked_at=row[8],
                identity=ConnectionIdentity(*row[9:14]) if row[9] is not None else None,
                paths=tuple(paths.get(row[0], ())),
            )
            for row in rows.values()
        ]

    def rename_connection(self, connection_id: str, display_name: str) -> Connection:
        with self._tx() as db:
            self.connection(connection_id)
            db.execute(
                "UPDATE connections SET display_name = %s, display_name_is_placeholder = false, "
                "updated_at = %s WHERE connection_id = %s",
                (display_name, self._now(), connection_id),
            )
        return self.connection(connection_id)

    def set_connection_status(self, connection_id: str, status: ConnectionStatus) -> Connection:
        now = self._now()
        with self._tx() as db:
            self.connection(connection_id)
            db.execute(
                "UPDATE connections SET status = %s, updated_at = %s, revoked_at = CASE "
                "WHEN %s = 'revoked' THEN coalesce(revoked_at, %s) ELSE NULL END "
                "WHERE connection_id = %s",
                (status, now, status, now, connection_id),
            )
        return self.connection(connection_id)

    def identity_tombstoned(
        self, owner_id: str, source: str, claim: str, value: str, connector_keys: Sequence[str]
    ) -> bool:
        """Whether the owner deleted a connection whose identity one of these paths proved."""
        row = self._row(
            "SELECT 1 FROM identity_tombstones WHERE owner_id = %s AND source = %s AND "
            "claim = %s AND value = %s AND connector_key = ANY(%s)",
            (owner_id, source, claim, value, list(connector_keys)),
        )
        return row is not None

    # per-connection configuration ---------------------------------------------------------
    def save_connection_config(
        self,
        connection_id: str,
        connector_key: str,
        settings: dict[str, str],
        sealed_secrets: dict[str, tuple[bytes, str]],
    ) -> None:
        """Store settings and sealed secrets for one connection's path; replaces what was there."""
        with self._tx() as db:
            self._save_config(db, connection_id, connector_key, settings, sealed_secrets)

    def _save_config(
        self,
        db: Db,
        connection_id: str,
        connector_key: str,
        settings: dict[str, str],
        sealed_secrets: dict[str, tuple[bytes, str]],
    ) -> None:
        now = self._now()
        cursor = db.cursor()
        cursor.executemany(
            "INSERT INTO connection_settings (connection_id, connector_key, name, value) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (connection_id, connector_key, name) "
            "DO UPDATE SET value = excluded.value",
            [(connection_id, connector_key, k, v) for k, v in settings.items()],
        )
        cursor.executemany(
            "INSERT INTO connection_credentials (connection_id, connector_key, name, sealed,"
            " fingerprint, created_at) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (connection_id, connector_key, name) DO UPDATE SET "
            "sealed = excluded.sealed, fingerprint = excluded.fingerprint, "
            "rotated_at = excluded.created_at",
            [
                (connection_id, connector_key, name, sealed, fingerprint, now)
                for name, (sealed, fingerprint) in sealed_secrets.items()
            ],
        )

    def connection_config(self, connection_id: str, connector_key: str) -> ConnectionConfig:
        with self._db() as db:
            settings = db.execute(
                "SELECT name, value FROM connection_settings WHERE connection_id = %s AND "
                "connector_key = %s",
                (connection_id, connector_key),
            ).fetchall()
            sealed = db.execute(
                "SELECT name, sealed FROM connection_credentials WHERE connection_id = %s AND "
                "connector_key = %s",
                (connection_id, connector_key),
            ).fetchall()
        return ConnectionConfig(dict(settings), {name: bytes(value) for name, value in sealed})

    def credential_metadata(self, connection_id: str) -> list[CredentialInfo]:
        rows = self._rows(
            "SELECT connector_key, name, fingerprint, created_at, rotated_at "
            "FROM connection_credentials WHERE connection_id = %s ORDER BY connector_key, name",
            (connection_id,),
        )
        return [CredentialInfo(*row) for row in rows]

    # delete -------------------------------------------------------------------------------
    def delete_connection(self, connection_id: str, owner_id: str) -> DeleteCounts:
        """Unreadable at once, purged right after; see `Store.delete_connection`.

        Refused while a run holds a live lease. The identity is tombstoned so a later write
        cannot silently re-create it.
        """
        now = self._now()
        with self._tx() as db:
            connection_lock(db, connection_id)
            connection = self.connection(connection_id)
            lease = db.execute(
                "SELECT run_id FROM run_leases WHERE connection_id = %s AND expires_at > %s",
                (connection_id, now),
            ).fetchone()
            if lease is not None:
                raise ConnectionRunActive(
                    f"run {lease[0]} of connection {connection_id} is in progress; "
                    "wait for it or let its lease expire",
                    connection_id=connection_id,
                    run_id=lease[0],
                )
            per_stream = dict(
                db.execute(
                    "SELECT stream, record_count FROM stream_stats WHERE connection_id = %s "
                    "AND record_count > 0",
                    (connection_id,),
                ).fetchall()
            )
            identity = connection.identity
            if identity is not None:
                provers = {identity.proven_by} | {
                    p.connector_key for p in connection.paths if p.proved_identity
                }
                db.cursor().executemany(
                    "INSERT INTO identity_tombstones (owner_id, source, claim, value, "
                    "connector_key, connection_id, deleted_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (owner_id, source, claim, value, connector_key) DO UPDATE SET "
                    "connection_id = excluded.connection_id, deleted_at = excluded.deleted_at",
                    [
                        (owner_id, connection.source, identity.claim, identity.value, key,
                         connection_id, now)
                        for key in sorted(provers)
                    ],
                )
            for table in CONNECTION_TABLES:
                db.execute(f"DELETE FROM {table} WHERE connection_id = %s", (connection_id,))
            db.execute(
                "INSERT INTO deleted_connections (connection_id, deleted_at) VALUES (%s, %s) "
                "ON CONFLICT (connection_id) DO UPDATE SET deleted_at = excluded.deleted_at, "
                "purged_at = NULL",
                (connection_id, now),
            )
        self._purge(connection_id, wait=True)
        return DeleteCounts(per_stream)

    def purge_deleted(self) -> int:
        pending = self._rows(
            "SELECT connection_id FROM deleted_connections WHERE purged_at IS NULL"
        )
        return sum(self._purge(connection_id, wait=False) for (connection_id,) in pending)

    def _purge(self, connection_id: str, *, wait: bool) -> int:
        """Remove a deleted connection's records, versions, provenance, blob references and
        holds, a chunk per transaction so no writer waits long. Each chunk locks the
        connection's `deleted_connections` row: two processes never purge one connection at
        once (`wait` False skips a connection another process is purging)."""
        removed = 0
        lock = "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"
        while True:
            with self._tx() as db:
                held = db.execute(
                    "SELECT purged_at FROM deleted_connections WHERE connection_id = %s " + lock,
                    (connection_id,),
                ).fetchone()
                if held is None or held[0] is not None:
                    return removed
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT record_id FROM records WHERE connection_id = %s LIMIT %s",
                        (connection_id, PURGE_CHUNK),
                    )
                ]
                if not ids:
                    self._release_holds(
                        db, "SELECT run_seq FROM runs WHERE connection_id = %s", [connection_id]
                    )
                    for table in ("record_changes", "record_evidence", "stage_stats",
                                  "stage_cleanup"):
                        db.execute(
                            f"DELETE FROM {table} WHERE stage IN "
                            "(SELECT run_seq FROM runs WHERE connection_id = %s)",
                            (connection_id,),
                        )
                    db.execute("DELETE FROM runs WHERE connection_id = %s", (connection_id,))
                    db.execute(
                        "UPDATE deleted_connections SET purged_at = %s WHERE connection_id = %s",
                        (self._now(), connection_id),
                    )
                    return removed
                self._drop_blob_refs(db, ids)
                db.execute("DELETE FROM record_changes WHERE record_id = ANY(%s)", (ids,))
                db.execute("DELETE FROM record_evidence WHERE record_id = ANY(%s)", (ids,))
                db.execute("DELETE FROM records WHERE record_id = ANY(%s)", (ids,))
                removed += len(ids)
