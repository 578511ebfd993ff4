"""The data directory: where the database, the secret key and registrations live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ownstream.background import Background, ProgressHub
from ownstream.blobs import BlobStore
from ownstream.credentials import Vault
from ownstream.grants.usage import UsageRecorder
from ownstream.registry import Catalog
from ownstream.registry.upgrades import apply_upgrades
from ownstream.runtime.runner import ProgressCallback, Runtime
from ownstream.store.base import Store
from ownstream.store.sqlite import SQLiteStore
from ownstream.store.sqlite.collection import LEASE_SECONDS

HOME_ENV = "OWNSTREAM_HOME"
LEASE_ENV = "OWNSTREAM_LEASE_SECONDS"  # how long a run's lease lives between heartbeats


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
        return SQLiteStore(
            self.path / "ownstream.db", lease_seconds=int(lease) if lease else LEASE_SECONDS
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
