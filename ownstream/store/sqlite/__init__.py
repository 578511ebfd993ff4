"""The embedded default backend: one SQLite file in WAL mode."""

from ownstream.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
