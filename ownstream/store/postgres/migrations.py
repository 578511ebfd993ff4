"""Upgrades of older PostgreSQL databases, in place, at start (or by `ownstream migrate`).

Version 2 is the first PostgreSQL schema (it numbers like SQLite's, so a version means the same
tables on both backends): there is no older PostgreSQL database yet, so there is no step yet.
A step takes a database from one version to the next inside the transaction that holds the
schema lock (`database._prepare`); DDL is transactional here, so a failed step leaves the
database exactly as it was, and every process that opens it meanwhile waits, then finds it done.
"""

from __future__ import annotations

from collections.abc import Callable

from ownstream.errors import InvalidRequest
from ownstream.store.postgres.database import Connection

STEPS: dict[int, Callable[[Connection], None]] = {}


def upgrade(db: Connection, version: int, target: int) -> None:
    while version < target:
        step = STEPS.get(version)
        if step is None:
            raise InvalidRequest(
                f"this release cannot upgrade a PostgreSQL database of schema version {version}"
            )
        step(db)
        version += 1
        db.execute(
            "UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(version),)
        )
