"""Console fixtures: the client-access notes world (alice and bob by API, carol by export),
with a rule that joins a notes export to its API connection, a `ticker` connector that runs
slowly and reports progress, and a signed-in browser-like HTTP client."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.auth.console import mint_link
from tests.api.conftest import World
from tests.auth.conftest import BASE, notes_world

NOTES_RULE = {
    "rule_id": "notes-account",
    "version": 1,
    "source": "notes",
    "claim": "notes_account",
    "paths": [{"connector_key": "notes-api"}, {"connector_key": "notes-export"}],
}

TICKER_SCRIPT = '''\
"""Reports progress while it emits a few notes, slowly enough to be watched."""
import json
import sys
import time

start = json.loads(sys.stdin.readline())
out = sys.stdout
emitted = 0
out.write(json.dumps({"type": "IDENTITY", "claim": "ticker_account", "value": "tick"}) + "\\n")
if start.get("collection_mode") != "identify":
    for i in range(1, 6):
        out.write(json.dumps({"type": "PROGRESS", "message": f"step {i} of 5", "stream": "notes",
                              "count": i, "total": 5}) + "\\n")
        out.write(json.dumps({"type": "RECORD", "stream": "notes", "key": f"t{i}",
                              "data": {"note_id": f"t{i}", "title": f"tick {i}",
                                       "updated_at": f"2025-03-0{i}T10:00:00.000Z"}}) + "\\n")
        out.flush()
        emitted += 1
        time.sleep(0.4)
out.write(json.dumps({"type": "DONE", "status": "succeeded", "records_emitted": emitted})
          + "\\n")
out.flush()
'''


def install_ticker(world: World) -> None:
    folder = world.root / "ticker"
    folder.mkdir()
    (folder / "connector.py").write_text(TICKER_SCRIPT, encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps({
        "protocol_version": "0.1.0", "connector_key": "ticker", "version": "1.0.0",
        "display_name": "Ticker (test connector)", "source": "ticker",
        "acquisition_method": "provider_api", "identity": {"claim": "ticker_account"},
        "run": {"command": [sys.executable, "connector.py"]},
        "streams": [{"definition": "notes"}],
    }), encoding="utf-8")
    world.home.catalog.add_manifest(folder, world.store)


def console_world(root: Path) -> World:
    world = notes_world(root)
    world.home.catalog.add_rule(NOTES_RULE, world.store)
    install_ticker(world)
    result = world.home.runtime().connect("ticker", secrets={}, settings={},
                                          display_name="Ticker")
    world.conns["ticker"] = result.connection.connection_id
    return world


def notes_file(root: Path, account: str, count: int = 3, name: str | None = None) -> Path:
    """A notes export file (what the `notes-export` connector imports)."""
    path = root / (name or f"{account}-notes.json")
    notes = [{"note_id": f"x{i}", "title": f"imported {account} {i}",
              "updated_at": f"2025-04-0{i}T09:00:00.000Z"} for i in range(1, count + 1)]
    path.write_text(json.dumps({"account": account, "notes": notes, "deleted": []}))
    return path


@dataclass
class Console:
    """The owner's browser, as an HTTP client with the session cookie."""

    world: World
    http: TestClient

    def sign_in(self) -> None:
        link = mint_link(self.world.store, BASE).removeprefix(BASE)
        assert self.http.get(link, follow_redirects=False).status_code == 303

    def csrf(self, path: str = "/console/") -> str:
        page = self.http.get(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found is not None, page.text
        return found.group(1)

    def post(self, path: str, **form: Any) -> httpx2.Response:
        response: httpx2.Response = self.http.post(
            path, data={"csrf_token": self.csrf(), **form}, follow_redirects=False
        )
        return response

    def owner(self, method: str, path: str, **kw: Any) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {self.world.owner_token}"}
        response: httpx2.Response = self.http.request(method, path, headers=headers, **kw)
        return response


@pytest.fixture
def owner_console(tmp_path: Path) -> Iterator[Console]:
    world = console_world(tmp_path)
    with TestClient(create_app(world.home, BASE), base_url=BASE) as http:
        console = Console(world, http)
        console.sign_in()
        yield console
