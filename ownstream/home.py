"""The data directory (the secret key, SQLite's database file) and the database it uses.

SQLite is the default: a file in the data directory, nothing to set up. Setting
`OWNSTREAM_DATABASE_URL=postgresql://user@host:port/dbname` selects PostgreSQL instead, which
several `serve` and `ownstream worker` processes (on one machine or several) can share. Its
password never goes into argv, where `ps` would show it: put it in a file named by
`OWNSTREAM_DATABASE_PASSWORD_FILE` (its first line), or in libpq's `PGPASSFILE` / `~/.pgpass`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ownstream.background import Background, ProgressHub
from ownstream.blobs import BlobStore
from ownstream.credentials import Vault
from ownstream.errors import InvalidRequest
from ownstream.grants.usage import UsageRecorder
from ownstream.registry import Catalog
from ownstream.registry.upgrades import apply_upgrades
from ownstream.runtime.runner import ProgressCallback, Runtime
from ownstream.store.base import Store
from ownstream.store.sqlite import SQLiteStore
from ownstream.store.sqlite.collection import LEASE_SECONDS

HOME_ENV = "OWNSTREAM_HOME"
LEASE_ENV = "OWNSTREAM_LEASE_SECONDS"  # how long a run's lease lives between heartbeats
DATABASE_URL_ENV = "OWNSTREAM_DATABASE_URL"  # postgresql://…; unset: SQLite in the home
DATABASE_PASSWORD_FILE_ENV = "OWNSTREAM_DATABASE_PASSWORD_FILE"
DATABASE_POOL_ENV = "OWNSTREAM_DATABASE_POOL"  # PostgreSQL connections per process
DATABASE_SCHEMES = ("postgresql://", "postgres://")


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".ownstream")


def loose_permissions(path: Path) -> list[str]:
    """Files of the data directory (and the directory) that others than the owner may read."""
    found = []
    if path.exists() and path.stat().st_mode & 0o077:
        found.append(str(path))
    if path.is_dir():
        for item in sorted(path.rglob("*")):
            if item.is_file() and item.stat().st_mode & 0o077:
                found.append(str(item))
    return found


@dataclass
class Home:
    path: Path = field(default_factory=default_home)

    def __post_init__(self) -> None:
        # the owner's data: nobody else on the machine may list or read it
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    @cached_property
    def store(self) -> Store:
        lease = os.environ.get(LEASE_ENV)
        lease_seconds = int(lease) if lease else LEASE_SECONDS
        url = database_url()
        if url is None:
            return SQLiteStore(self.path / "ownstream.db", lease_seconds=lease_seconds)
        from ownstream.store.postgres import PostgresStore
        from ownstream.store.postgres.database import POOL_SIZE, read_password

        password_file = os.environ.get(DATABASE_PASSWORD_FILE_ENV)
        pool = os.environ.get(DATABASE_POOL_ENV)
        return PostgresStore(
            url,
            password=read_password(password_file) if password_file else None,
            lease_seconds=lease_seconds,
            pool_size=int(pool) if pool else POOL_SIZE,
        )

    @property
    def storage(self) -> str:
        """Where the data is, for banners and `migrate`: never a password."""
        url = database_url()
        if url is None:
            return f"SQLite (WAL) {self.path / 'ownstream.db'}"
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
        host, port = parts.get("host", "localhost"), parts.get("port", 5432)
        user = parts.get("user")
        return f"PostgreSQL {host}:{port}/{parts.get('dbname', '')}" + (
            f" as {user}" if user else ""
        )

    @cached_property
    def catalog(self) -> Catalog:
        catalog = Catalog.load(self.store)
        self.store.sync_search(list(catalog.all_definitions()))
        apply_upgrades(self.store, catalog)
        return catalog

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore.configured(self.path)

    @cached_property
    def vault(self) -> Vault:
        return Vault.for_home(self.path)

    @cached_property
    def background(self) -> Background:
        return Background()

    @cached_property
    def progress(self) -> ProgressHub:
        return ProgressHub()

    @cached_property
    def usage(self) -> UsageRecorder:
        return UsageRecorder(self.store)

    def runtime(self, on_progress: ProgressCallback | None = None) -> Runtime:
        return Runtime(
            self.store, self.catalog, self.vault, self.blobs, on_progress=on_progress
        )


def database_url() -> str | None:
    """The PostgreSQL URL from the environment, or None for SQLite."""
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        return None
    if not url.startswith(DATABASE_SCHEMES):
        raise InvalidRequest(
            f"{DATABASE_URL_ENV} must be a postgresql:// URL (unset it to use SQLite)",
            param=DATABASE_URL_ENV,
        )
    return url
