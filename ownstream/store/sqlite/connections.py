"""Registrations, connections, their paths and configuration, and deleting a connection."""

from __future__ import annotations

import sqlite3
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
from ownstream.store.sqlite.blobs import BlobReferences
from ownstream.store.sqlite.database import dumps, marks
from ownstream.store.sqlite.search_index import SearchIndex

PURGE_CHUNK = 2000

# Everything keyed on one connection_id that goes when the connection goes (records and their
# changes, evidence and search rows are purged after, in short transactions). Audit events and
# grants are never touched.
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


class ConnectionRecords(SearchIndex, BlobReferences):
    # registrations ------------------------------------------------------------------------
    def registrations(self, kind: str) -> list[tuple[dict[str, Any], str | None]]:
        rows = self._db().execute(
            "SELECT document, base_dir FROM registrations WHERE kind = ? ORDER BY added_at, key",
            (kind,),
        )
        return [(orjson.loads(doc), base_dir) for doc, base_dir in rows]

    def save_registration(
        self, kind: str, key: str, document: dict[str, Any], base_dir: str | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO registrations (kind, key, document, base_dir, added_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET "
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
        db = self._db()
        while db.execute(
            "SELECT 1 FROM deleted_connections WHERE connection_id = ?", (connection_id,)
        ).fetchone():
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

    def _insert_connection(
        self, db: sqlite3.Connection, connection_id: str, new: NewConnection
    ) -> None:
        identity, now = new.identity, self._now()
        db.execute(
            "INSERT INTO connections (connection_id, owner_id, source, display_name, "
            "display_name_is_placeholder, status, identity_claim, identity_value, "
            "identity_proven_by, identity_rule_id, identity_proven_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)",
            (
                connection_id,
                new.owner_id,
                new.source,
                new.display_name,
                int(new.display_name_is_placeholder),
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
                "DELETE FROM identity_tombstones WHERE owner_id = ? AND source = ? AND "
                "claim = ? AND value = ?",
                (new.owner_id, new.source, identity.claim, identity.value),
            )

    def attach_path(self, connection_id: str, attach: PathAttachment) -> Connection:
        with self._tx() as db:
            self.connection(connection_id)
            self._attach(db, connection_id, attach)
        return self.connection(connection_id)

    def _attach(self, db: sqlite3.Connection, connection_id: str, attach: PathAttachment) -> None:
        now = self._now()
        db.execute(
            "INSERT INTO connection_paths (connection_id, connector_key, acquisition_method,"
            " attached_at, proved_identity, rule_id) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (connection_id, connector_key) DO UPDATE SET "
            "proved_identity = max(proved_identity, excluded.proved_identity), "
            "rule_id = coalesce(rule_id, excluded.rule_id)",
            (
                connection_id,
                attach.connector_key,
                attach.acquisition_method,
                now,
                int(attach.proved_identity),
                attach.rule_id,
            ),
        )
        db.execute(
            "UPDATE connections SET updated_at = ? WHERE connection_id = ?", (now, connection_id)
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
                ("source = ?", source),
                (
                    "connection_id IN (SELECT connection_id FROM connection_paths "
                    "WHERE connector_key = ?)",
                    connector_key,
                ),
            ]
        )
        if connection_ids is not None:
            clause = f"connection_id IN ({marks(len(connection_ids))})"
            where = f"{where} AND {clause}" if where else f" WHERE {clause}"
            params.extend(connection_ids)
        rows = self._rows(
            f"SELECT * FROM connections{where} ORDER BY created_at, connection_id", params
        )
        paths: dict[str, list[AttachedPath]] = {}
        for p in self._rows(
            "SELECT * FROM connection_paths WHERE connection_id IN "
            f"(SELECT connection_id FROM connections{where}) ORDER BY attached_at, connector_key",
            params,
        ):
            paths.setdefault(p["connection_id"], []).append(
                AttachedPath(
                    p["connector_key"],
                    p["acquisition_method"],
                    p["attached_at"],
                    bool(p["proved_identity"]),
                    p["rule_id"],
                )
            )
        return [
            Connection(
                connection_id=r["connection_id"],
                owner_id=r["owner_id"],
                source=r["source"],
                display_name=r["display_name"],
                display_name_is_placeholder=bool(r["display_name_is_placeholder"]),
                status=r["status"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                revoked_at=r["revoked_at"],
                identity=ConnectionIdentity(
                    r["identity_claim"],
                    r["identity_value"],
                    r["identity_proven_by"],
                    r["identity_rule_id"],
                    r["identity_proven_at"],
                )
                if r["identity_claim"] is not None
                else None,
                paths=tuple(paths.get(r["connection_id"], ())),
            )
            for r in rows
        ]

    def rename_connection(self, connection_id: str, display_name: str) -> Connection:
        with self._tx() as db:
            self.connection(connection_id)
            db.execute(
                "UPDATE connections SET display_name = ?, display_name_is_placeholder = 0, "
                "updated_at = ? WHERE connection_id = ?",
                (display_name, self._now(), connection_id),
            )
        return self.connection(connection_id)

    def set_connection_status(self, connection_id: str, status: ConnectionStatus) -> Connection:
        now = self._now()
        with self._tx() as db:
            self.connection(connection_id)
            db.execute(
                "UPDATE connections SET status = ?, updated_at = ?, "
                "revoked_at = CASE WHEN ? = 'revoked' THEN coalesce(revoked_at, ?) ELSE NULL END "
                "WHERE connection_id = ?",
                (status, now, status, now, connection_id),
            )
        return self.connection(connection_id)

    def identity_tombstoned(
        self, owner_id: str, source: str, claim: str, value: str, connector_keys: Sequence[str]
    ) -> bool:
        """Whether the owner deleted a connection whose identity one of these paths proved."""
        row = (
            self._db()
            .execute(
                "SELECT 1 FROM identity_tombstones WHERE owner_id = ? AND source = ? AND claim = ? "
                f"AND value = ? AND connector_key IN ({marks(len(connector_keys))})",
                (owner_id, source, claim, value, *connector_keys),
            )
            .fetchone()
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
        db: sqlite3.Connection,
        connection_id: str,
        connector_key: str,
        settings: dict[str, str],
        sealed_secrets: dict[str, tuple[bytes, str]],
    ) -> None:
        now = self._now()
        db.executemany(
            "INSERT INTO connection_settings (connection_id, connector_key, name, value) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
            [(connection_id, connector_key, k, v) for k, v in settings.items()],
        )
        db.executemany(
            "INSERT INTO connection_credentials (connection_id, connector_key, name, sealed,"
            " fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
            "sealed = excluded.sealed, fingerprint = excluded.fingerprint, "
            "rotated_at = excluded.created_at",
            [
                (connection_id, connector_key, name, sealed, fingerprint, now)
                for name, (sealed, fingerprint) in sealed_secrets.items()
            ],
        )

    def connection_config(self, connection_id: str, connector_key: str) -> ConnectionConfig:
        db = self._db()
        settings = dict(
            db.execute(
                "SELECT name, value FROM connection_settings WHERE connection_id = ? AND "
                "connector_key = ?",
                (connection_id, connector_key),
            ).fetchall()
        )
        sealed = dict(
            db.execute(
                "SELECT name, sealed FROM connection_credentials WHERE connection_id = ? AND "
                "connector_key = ?",
                (connection_id, connector_key),
            ).fetchall()
        )
        return ConnectionConfig(settings, sealed)

    def credential_metadata(self, connection_id: str) -> list[CredentialInfo]:
        rows = self._db().execute(
            "SELECT connector_key, name, fingerprint, created_at, rotated_at "
            "FROM connection_credentials WHERE connection_id = ? ORDER BY connector_key, name",
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
            connection = self.connection(connection_id)
            lease = db.execute(
                "SELECT run_id FROM run_leases WHERE connection_id = ? AND expires_at > ?",
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
                    "SELECT stream, record_count FROM stream_stats WHERE connection_id = ? "
                    "AND record_count > 0",
                    (connection_id,),
                ).fetchall()
            )
            identity = connection.identity
            if identity is not None:
                provers = {identity.proven_by} | {
                    p.connector_key for p in connection.paths if p.proved_identity
                }
                db.executemany(
                    "INSERT OR REPLACE INTO identity_tombstones (owner_id, source, claim, value, "
                    "connector_key, connection_id, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (owner_id, connection.source, identity.claim, identity.value, key,
                         connection_id, now)
                        for key in sorted(provers)
                    ],
                )
            for table in CONNECTION_TABLES:
                db.execute(f"DELETE FROM {table} WHERE connection_id = ?", (connection_id,))
            db.execute(
                "INSERT OR REPLACE INTO deleted_connections (connection_id, deleted_at) "
                "VALUES (?, ?)",
                (connection_id, now),
            )
        self._purge(connection_id)
        return DeleteCounts(per_stream)

    def purge_deleted(self) -> int:
        pending = self._db().execute(
            "SELECT connection_id FROM deleted_connections WHERE purged_at IS NULL"
        ).fetchall()
        return sum(self._purge(connection_id) for (connection_id,) in pending)

    def _purge(self, connection_id: str) -> int:
        """Remove a deleted connection's records, versions, provenance, search rows, blob
        references and holds, a chunk per transaction so no writer waits long."""
        removed = 0
        while True:
            with self._tx() as db:
                rows = db.execute(
                    "SELECT record_id, stream, data, deleted FROM records WHERE connection_id = ? "
                    "LIMIT ?",
                    (connection_id, PURGE_CHUNK),
                ).fetchall()
                if not rows:
                    self._release_holds(
                        db, "SELECT run_seq FROM runs WHERE connection_id = ?", [connection_id]
                    )
                    for table in ("record_changes", "record_evidence"):
                        db.execute(
                            f"DELETE FROM {table} WHERE stage IN "
                            "(SELECT run_seq FROM runs WHERE connection_id = ?)",
                            (connection_id,),
                        )
                    for table in ("stage_stats", "stage_cleanup"):
                        db.execute(
                            f"DELETE FROM {table} WHERE stage IN "
                            "(SELECT run_seq FROM runs WHERE connection_id = ?)",
                            (connection_id,),
                        )
                    db.execute("DELETE FROM runs WHERE connection_id = ?", (connection_id,))
                    # the dictionaries hold fragments of the connection's records
                    for table in ("record_dictionaries", "record_scopes"):
                        db.execute(
                            f"DELETE FROM {table} WHERE connection_id = ?", (connection_id,)
                        )
                    db.execute(
                        "UPDATE deleted_connections SET purged_at = ? WHERE connection_id = ?",
                        (self._now(), connection_id),
                    )
                    return removed
                by_stream: dict[str, list[tuple[int, dict[str, Any]]]] = {}
                for record_id, stream, data, deleted in rows:
                    if not deleted:
                        item = (record_id, self._record_data(data))
                        by_stream.setdefault(stream, []).append(item)
                for stream, items in by_stream.items():
                    self._unindex(db, stream, connection_id, self._search_fields(db, stream), items)
                ids = [row[0] for row in rows]
                id_marks = marks(len(ids))
                self._drop_blob_refs(db, ids)
                db.execute(f"DELETE FROM record_changes WHERE record_id IN ({id_marks})", ids)
                db.execute(f"DELETE FROM record_evidence WHERE record_id IN ({id_marks})", ids)
                db.execute(f"DELETE FROM record_rows WHERE record_id IN ({id_marks})", ids)
                removed += len(ids)
