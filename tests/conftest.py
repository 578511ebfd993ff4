"""Shared fixtures: a throw-away data directory driven exactly as an operator would drive it.

`owner` is one person's ownstream home in a temp folder. Test connectors are registered through
the real extension contract (`ownstream connectors add PATH`, `streams add`, `rules add`); the
connector folders are copied next to the home so manifests can be rendered for this interpreter.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ownstream.cli.main import app
from ownstream.credentials import KEY_FILE_ENV
from ownstream.home import DATABASE_PASSWORD_FILE_ENV, DATABASE_URL_ENV, Home
from ownstream.model import ReadScope
from ownstream.runtime.runner import BATCH_SIZE, Runtime
from tests.services.chromium import chromium  # noqa: F401 - one browser per test process
from tests.services.postgres import (  # noqa: F401 - the fixtures
    postgres_cluster,
    postgres_databases,
    postgres_recycler,
    postgres_url,
    session_databases,
    test_backend,
)

CONNECTORS = Path(__file__).parent / "runtime" / "connectors"
# Server variables a test must not inherit from the machine running it.
_SERVER_ENV = ("OWNSTREAM_HOME", "OWNSTREAM_SECRET_KEY", "OWNSTREAM_CONNECTOR_TRANSPORT")
_DATABASE_ENV = (DATABASE_URL_ENV, DATABASE_PASSWORD_FILE_ENV, KEY_FILE_ENV, "PGPASSFILE")


class Owner:
    """One owner's data directory plus helpers to drive it through the CLI and the runtime."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home_dir = root / "home"
        self.scratch = root / "scratch"
        self.scratch.mkdir()
        self.connectors = root / "connectors"
        self._homes: list[Home] = []
        self._runner = CliRunner()
        _install_connectors(self.connectors)

    # the data directory ------------------------------------------------------------------
    def home(self) -> Home:
        """A fresh Home (a new catalog, so CLI registrations are visible)."""
        home = Home(self.home_dir)
        self._homes.append(home)
        return home

    def runtime(self, *, batch_size: int = BATCH_SIZE) -> Runtime:
        home = self.home()
        return Runtime(home.store, home.catalog, home.vault, home.blobs, batch_size=batch_size)

    def db(self) -> sqlite3.Connection:
        """A raw read connection to the database file, for store-level assertions."""
        self.home().store  # noqa: B018 - make sure the schema exists
        return sqlite3.connect(self.home_dir / "ownstream.db")

    def close(self) -> None:
        for home in self._homes:
            if "store" in home.__dict__:
                home.store.close()

    # the command line ----------------------------------------------------------------------
    def cli(self, *args: str | Path, code: int | None = 0) -> Result:
        result = self._runner.invoke(app, ["--home", str(self.home_dir), *map(str, args)])
        if code is not None:
            assert result.exit_code == code, (
                f"ownstream {' '.join(map(str, args))} exited {result.exit_code}:\n"
                f"{result.stdout}\n{result.stderr}\n{result.exception!r}"
            )
        return result

    def json(self, *args: str | Path, code: int | None = 0) -> Any:
        return json.loads(self.cli(*args, "--json", code=code).stdout)

    def error(self, *args: str | Path) -> dict[str, Any]:
        """Run a command expected to fail; return its JSON error body."""
        body = self.json(*args, code=1)
        assert "error" in body, body
        error: dict[str, Any] = body["error"]
        return error

    # registrations --------------------------------------------------------------------------
    def add_connector(self, name: str) -> dict[str, Any]:
        summary: dict[str, Any] = self.json("connectors", "add", self.connectors / name)
        return summary

    def add_journal(self, *, rule: bool = True) -> None:
        """The shared `journal_entries` definition, its API and export connectors, the rule."""
        self.json("streams", "add", self.connectors / "journal_entries.json")
        self.add_connector("journal_api")
        self.add_connector("journal_export")
        if rule:
            self.json("rules", "add", self.connectors / "journal_rule.json")

    # scripted connections -------------------------------------------------------------------
    def script(
        self,
        name: str,
        steps: list[dict[str, Any]] | None = None,
        *,
        identity: str | None = "acct-1",
        identify: list[dict[str, Any]] | None = None,
    ) -> Path:
        """(Re)write the script a scripted connection follows; returns its path."""
        path = self.scratch / f"{name}.script.json"
        document: dict[str, Any] = {"identity": identity, "steps": steps or []}
        if identify is not None:
            document["identify"] = identify
        path.write_text(json.dumps(document))
        return path

    def log_path(self, name: str) -> Path:
        return self.scratch / f"{name}.log.jsonl"

    def log(self, name: str) -> list[dict[str, Any]]:
        """Each START the connection's connector process received, with its environment."""
        path = self.log_path(name)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def connect_scripted(
        self,
        name: str,
        steps: list[dict[str, Any]] | None = None,
        *,
        identity: str | None = "acct-1",
        token: str | None = None,
        connector: str = "scripted",
    ) -> str:
        """Connect a scripted (or journal-api) connection through the CLI; its connection_id."""
        script = self.script(name, steps, identity=identity)
        args = [
            "connect",
            connector,
            "--setting",
            f"script={script}",
            "--setting",
            f"log={self.log_path(name)}",
        ]
        if connector == "scripted":
            args += ["--secret", f"token={token or 'tok-' + name}"]
        payload = self.json(*args)
        connection_id: str = payload["connection_id"]
        return connection_id

    # reads ----------------------------------------------------------------------------------
    def records(self, connection_id: str, stream: str) -> dict[str, dict[str, Any]]:
        """The live records of one connection's stream, by key (all fields)."""
        home = self.home()
        definition = home.catalog.definition(stream)
        scope = ReadScope(definition, (connection_id,), definition.fields)
        page, _ = home.store.records_page(scope, limit=10_000)
        return {r.record_key: r.data for r in page}

    def state(self, connection_id: str, connector_key: str) -> dict[str, Any]:
        return self.home().store.connection_state(connection_id, connector_key)

    def runs(self, connection_id: str | None = None) -> list[Any]:
        return self.home().store.runs(connection_id)

    def import_file(self, name: str, lines: list[Any], *, header: dict[str, Any] | None) -> Path:
        """Write a journal export file: the header line, then one JSON (or raw text) per line."""
        path = self.scratch / name
        rows = [] if header is None else [json.dumps({"format": "journal-export/1", **header})]
        rows += [line if isinstance(line, str) else json.dumps(line) for line in lines]
        path.write_text("\n".join(rows) + "\n")
        return path


def _install_connectors(target: Path) -> None:
    """Copy the test connectors; run Python ones with this interpreter (stdlib only needed)."""
    shutil.copytree(CONNECTORS, target, ignore=shutil.ignore_patterns("__pycache__"))
    for manifest in target.glob("*/manifest.json"):
        document = json.loads(manifest.read_text())
        command = document["run"]["command"]
        if command[0] == "python3":
            command[0] = sys.executable
            manifest.write_text(json.dumps(document, indent=2))


@pytest.fixture
def owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Owner]:
    for name in _SERVER_ENV:
        monkeypatch.delenv(name, raising=False)
    created = Owner(tmp_path)
    yield created
    created.close()


@pytest.fixture
def scripted(owner: Owner) -> Owner:
    """An owner with the scripted test connector registered."""
    owner.add_connector("scripted")
    return owner


@pytest.fixture
def journal(owner: Owner) -> Owner:
    """An owner with the journal definition, its API and export connectors and their rule."""
    owner.add_journal()
    return owner


@pytest.fixture(autouse=True)
def database_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `Home` a test makes uses SQLite in its data directory, or, in the PostgreSQL pass
    of `make test` (OWNSTREAM_TEST_BACKEND=postgresql), an empty database of its own."""
    for name in _DATABASE_ENV:
        monkeypatch.delenv(name, raising=False)
    if test_backend() == "postgresql":
        monkeypatch.setenv(DATABASE_URL_ENV, request.getfixturevalue("postgres_url"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly which real-service tests did not run (see tests/services)."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "SKIPPED, NOT TESTED" in str(getattr(report, "longrepr", ""))
    ]
    if not skipped:
        return
    reasons = sorted({str(report.longrepr[2]).split(": ", 1)[-1] for report in skipped})
    terminalreporter.write_sep("!", f"{len(skipped)} real-service tests were NOT run", red=True)
    for reason in reasons:
        terminalreporter.write_line(f"  {reason}", red=True)
