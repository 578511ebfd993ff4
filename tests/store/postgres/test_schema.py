"""The PostgreSQL schema: created once whoever opens it first, versioned, upgraded at start in
one transaction, refused when newer than this release; the password never in the URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from ownstream.cli.main import app
from ownstream.dev.postgres import PostgresCluster
from ownstream.errors import InvalidRequest
from ownstream.home import DATABASE_PASSWORD_FILE_ENV, DATABASE_URL_ENV, Home
from ownstream.store.postgres import PostgresStore, database, migrations
from tests.services.postgres import Databases
from tests.store.contract.conftest import Clock, Harness, note

OPEN = (
    "import sys; from ownstream.store.postgres import PostgresStore; "
    "store = PostgresStore(sys.argv[1]); print(store.epoch(), store.schema_version()); "
    "store.close()"
)


def test_processes_opening_a_new_database_at_once_create_it_once(postgres_url: str) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN, postgres_url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    answers = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    [answer] = answers  # one epoch: one of them created it, the others found it
    assert answer.endswith(f" {database.SCHEMA_VERSION}")


def test_reopening_a_current_database_takes_no_table_lock(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as busy:
        busy.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")  # a long writer, say
        started = time.monotonic()
        PostgresStore(postgres_url).close()
        assert time.monotonic() - started < 5


def test_a_database_of_a_newer_release_is_refused(own_url: str) -> None:
    PostgresStore(own_url).close()
    with psycopg.connect(own_url) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InvalidRequest, match="newer than this release"):
        PostgresStore(own_url)


@pytest.fixture
def own_url(postgres_databases: Databases) -> str:
    """A new database of the test's own: these tests change its schema."""
    return postgres_databases.new(recycled=False)


def _with_data(postgres_url: str) -> str:
    clock = Clock()
    store = PostgresStore(postgres_url, clock=clock)
    harness = Harness(store, clock)
    a = harness.connection("a")
    harness.collect(a, [note("n1", title="kept"), note("n2", title="kept too")])
    store.close()
    return a


def _step_2_to_3(db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute("ALTER TABLE records ADD COLUMN size integer")
    db.execute("UPDATE records SET size = length(data)")


def test_an_older_database_is_upgraded_at_start_with_its_data(
    own_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """There is no PostgreSQL schema older than version 2 yet: the step here is the test's."""
    a = _with_data(own_url)
    monkeypatch.setattr(database, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(migrations, "STEPS", {2: _step_2_to_3})
    store = PostgresStore(own_url)
    assert store.schema_version() == 3
    harness = Harness(store, Clock())
    assert harness.live([a]) == {
        (a, "n1"): {"id": "n1", "title": "kept"},
        (a, "n2"): {"id": "n2", "title": "kept too"},
    }
    with psycopg.connect(own_url) as db:
        assert db.execute("SELECT count(*) FROM records WHERE size > 0").fetchone() == (2,)
    store.close()


def test_a_failing_upgrade_leaves_the_database_as_it_was(
    own_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _with_data(own_url)

    def half_done(db: psycopg.Connection[tuple[object, ...]]) -> None:
        _step_2_to_3(db)
        raise RuntimeError("the step failed half-way")

    monkeypatch.setattr(database, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(migrations, "STEPS", {2: half_done})
    with pytest.raises(RuntimeError, match="half-way"):
        PostgresStore(own_url)
    monkeypatch.undo()
    store = PostgresStore(own_url)
    assert store.schema_version() == 2
    assert len(Harness(store, Clock()).live([a])) == 2
    with psycopg.connect(own_url) as db:
        columns = db.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'records' "
            "AND column_name = 'size'"
        ).fetchone()
    assert columns == (0,)
    store.close()


def test_migrate_upgrades_the_database_the_environment_names(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "migrate", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["backend"] == "postgresql"
    assert payload["storage"].startswith("PostgreSQL 127.0.0.1:")
    assert not (tmp_path / "home" / "ownstream.db").exists()


@pytest.fixture
def password_database(postgres_cluster: PostgresCluster) -> tuple[str, str]:
    """A database owned by a role that must give its password; (its URL, the password)."""
    password = "s3cret-" + os.urandom(6).hex()
    role = postgres_cluster.add_password_role(password)
    name = f"pw_{os.getpid()}"
    postgres_cluster.drop_database(name)
    postgres_cluster.create_database(name, owner=role)
    return postgres_cluster.url(name, role), password


def test_the_password_comes_from_a_file_and_never_from_the_url(
    password_database: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, password = password_database
    assert password not in url
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    with pytest.raises(psycopg.OperationalError):
        Home(tmp_path / "without").store  # noqa: B018 - opening it is the test
    secret = tmp_path / "db-password"
    secret.write_text(password + "\n")
    monkeypatch.setenv(DATABASE_PASSWORD_FILE_ENV, str(secret))
    home = Home(tmp_path / "with-file")
    assert home.store.capabilities.backend == "postgresql"
    assert password not in home.storage
    home.store.close()
    # or libpq's own password file
    monkeypatch.delenv(DATABASE_PASSWORD_FILE_ENV)
    pgpass = tmp_path / "pgpass"
    parts = psycopg.conninfo.conninfo_to_dict(url)
    pgpass.write_text(f"{parts['host']}:{parts['port']}:{parts['dbname']}:{parts['user']}:"
                      f"{password}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    home = Home(tmp_path / "with-pgpass")
    assert home.store.capabilities.backend == "postgresql"
    home.store.close()
