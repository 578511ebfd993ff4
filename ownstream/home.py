"""The data directory: where the database, the secret key and registrations live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ownstream.credentials import Vault
from ownstream.registry import Catalog
from ownstream.runtime.runner import ProgressCallback, Runtime
from ownstream.store.base import Store
from ownstream.store.sqlite import SQLiteStore

HOME_ENV = "OWNSTREAM_HOME"


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".ownstream")


@dataclass
class Home:
    path: Path = field(default_factory=default_home)

    @cached_property
    def store(self) -> Store:
        return SQLiteStore(self.path / "ownstream.db")

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog.load(self.store)

    @cached_property
    def vault(self) -> Vault:
        return Vault.for_home(self.path)

    def runtime(self, on_progress: ProgressCallback | None = None) -> Runtime:
        return Runtime(self.store, self.catalog, self.vault, on_progress=on_progress)
