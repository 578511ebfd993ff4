"""PostgreSQL for tests: one throw-away cluster per test session (per xdist worker), an empty
database per test (recycled: see `Recycler`).

The cluster is `ownstream.dev.postgres.PostgresCluster` (bench uses it too): the system's
server binaries, initdb into a temporary folder, a free loopback port, run as the `postgres`
user when the tests run as root. `OWNSTREAM_TEST_BACKEND=postgresql` (the second pass of
`make test`) points every `Home` of the suites that run on both backends at a fresh database
through `OWNSTREAM_DATABASE_URL` (see `database_backend` in tests/conftest.py).
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from ownstream.dev.postgres import PostgresCluster, PostgresUnavailable, find_bindir
from ownstream.home import DATABASE_URL_ENV
from ownstream.store.postgres import PostgresStore

from . import missing

BACKEND_ENV = "OWNSTREAM_TEST_BACKEND"
_databases = itertools.count(1)


def test_backend() -> str:
    """The backend the both-backend suites run on in this pass: sqlite or postgresql."""
    return os.environ.get(BACKEND_ENV, "sqlite")


class Recycler:
    """Databases of one cluster, reused: a database given back is emptied (every row of every
    table, `meta` included, so the next store to open it creates its meta rows, and a new
    epoch, as in a new database) and handed out again. Emptying takes milliseconds where
    creating a database and its schema takes half a second."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self._free: list[str] = []

    def take(self, *, recycled: bool = True) -> str:
        if self._free and recycled:
            return self._free.pop()
        name = f"ownstream_{os.getpid()}_{next(_databases)}"
        self.cluster.create_database(name)
        return name

    def give_back(self, name: str, *, recycle: bool = True) -> None:
        if not recycle:
            self.cluster.drop_database(name)
            return
        with psycopg.connect(self.cluster.url(name), autocommit=True) as db:
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            tables = [
                row[0]
                for row in db.execute(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            # DELETE, not TRUNCATE: a few rows per table, and no new files for every table
            db.execute("".join(f"DELETE FROM {table};" for table in tables))
        self._free.append(name)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    if find_bindir() is None:
        missing("PostgreSQL", "no initdb (apt-get install postgresql)")
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailable as exc:
        missing("PostgreSQL", str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_recycler(postgres_cluster: PostgresCluster) -> Recycler:
    return Recycler(postgres_cluster)


class Databases:
    """Empty databases; every store opened meanwhile is closed, and each database given
    back, when the fixture that made them ends."""

    def __init__(self, recycler: Recycler, monkeypatch: pytest.MonkeyPatch) -> None:
        self.recycler = recycler
        self._names: list[tuple[str, bool]] = []
        self._stores: weakref.WeakSet[PostgresStore] = weakref.WeakSet()
        opening = PostgresStore.__init__
        stores = self._stores

        def tracked(store: PostgresStore, *args: Any, **kwargs: Any) -> None:
            opening(store, *args, **kwargs)
            stores.add(store)

        monkeypatch.setattr(PostgresStore, "__init__", tracked)

    def new(self, *, recycled: bool = True) -> str:
        """An empty database; `recycled=False` for a test that changes the schema itself (it
        gets a new database, dropped afterwards)."""
        name = self.recycler.take(recycled=recycled)
        self._names.append((name, recycled))
        return self.recycler.cluster.url(name)

    def close(self) -> None:
        for store in list(self._stores):
            store.close()
        for name, recycled in self._names:
            self.recycler.give_back(name, recycle=recycled)


@pytest.fixture
def postgres_databases(
    postgres_recycler: Recycler, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Databases]:
    databases = Databases(postgres_recycler, monkeypatch)
    yield databases
    databases.close()


@pytest.fixture
def postgres_url(postgres_databases: Databases) -> str:
    """An empty database for this test."""
    return postgres_databases.new()


@pytest.fixture(scope="session")
def session_databases(postgres_recycler: Recycler) -> Iterator[Databases]:
    """Databases that live as long as the session (for session-scoped worlds)."""
    patch = pytest.MonkeyPatch()
    databases = Databases(postgres_recycler, patch)
    yield databases
    databases.close()
    patch.undo()


@contextmanager
def backend_environment(
    request: pytest.FixtureRequest, databases_fixture: str = "session_databases"
) -> Iterator[None]:
    """For a world besides the test's own (one a session or module shares, or a second one in
    a test): while it is built, and its store opened, `Home` uses a database of its own in the
    PostgreSQL pass (SQLite in its data directory otherwise). The database lives as long as
    the named fixture (`session_databases`, or the test's `postgres_databases`)."""
    with pytest.MonkeyPatch.context() as patch:
        if test_backend() == "postgresql":
            databases: Databases = request.getfixturevalue(databases_fixture)
            patch.setenv(DATABASE_URL_ENV, databases.new())
        else:
            patch.delenv(DATABASE_URL_ENV, raising=False)
        yield
