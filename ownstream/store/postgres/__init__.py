"""The shared backend: PostgreSQL, for several serve and worker processes on one database."""

from ownstream.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
