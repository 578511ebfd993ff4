"""Console fixtures: the client-access notes world (alice and bob by API, carol by export),
with a rule that joins a notes export to its API connection, a `ticker` connector that runs
slowly and reports progress, a `flaky` connector that skips and fails as its plan says, and a
signed-in browser-like HTTP client."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
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


FLAKY_SCRIPT = '''\
"""Does what its plan file says: emits these notes, skips what it lists, ends as told."""
import json
import os
import sys

start = json.loads(sys.stdin.readline())
with open(os.environ["FLAKY_PLAN"], encoding="utf-8") as handle:
    plan = json.load(handle)
out = [{"type": "IDENTITY", "claim": "flaky_account", "value": plan["account"]}]
done = {"type": "DONE", "status": "succeeded", "records_emitted": 0}
if start.get("collection_mode") != "identify":
    for note in plan["notes"]:
        out.append({"type": "RECORD", "stream": "notes", "key": note["note_id"], "data": note})
    for gap in plan["gaps"]:
        out.append({"type": "SKIP_RESULT", "stream": "notes", **gap})
    done["records_emitted"] = len(plan["notes"])
    if plan["error"] is not None:
        done.update(status="failed", error=plan["error"])
out.append(done)
for message in out:
    sys.stdout.write(json.dumps(message) + "\\n")
sys.stdout.flush()
'''


def install_script(
    world: World, key: str, display_name: str, script: str, **manifest: Any
) -> None:
    """A connector of the `notes` stream whose program is `script`; it may be scheduled (it is
    not enrolled by itself)."""
    folder = world.root / key
    folder.mkdir()
    (folder / "connector.py").write_text(script, encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps({
        "protocol_version": "0.1.0", "connector_key": key, "version": "1.0.0",
        "display_name": display_name, "source": key,
        "acquisition_method": "provider_api", "identity": {"claim": f"{key}_account"},
        "run": {"command": [sys.executable, "connector.py"]},
        "refresh_policy": {"recommended_mode": "manual", "background_safe": True},
        "streams": [{"definition": "notes"}],
        **manifest,
    }), encoding="utf-8")
    world.home.catalog.add_manifest(folder, world.store)


def console_world(root: Path) -> World:
    world = notes_world(root)
    world.home.catalog.add_rule(NOTES_RULE, world.store)
    install_script(world, "ticker", "Ticker (test connector)", TICKER_SCRIPT)
    result = world.home.runtime().connect("ticker", secrets={}, settings={},
                                          display_name="Ticker")
    world.conns["ticker"] = result.connection.connection_id
    install_script(world, "flaky", "Flaky (test connector)", FLAKY_SCRIPT,
                   setup={"secrets": [], "settings": [{"name": "plan", "env": "FLAKY_PLAN"}]})
    plan = plan_flaky(world, [])
    result = world.home.runtime().connect("flaky", secrets={}, settings={"plan": str(plan)},
                                          display_name="Flaky feed")
    world.conns["flaky"] = result.connection.connection_id
    return world


def plan_flaky(
    world: World,
    notes: list[dict[str, Any]],
    gaps: Sequence[dict[str, Any]] = (),
    error: dict[str, Any] | None = None,
) -> Path:
    """What the `flaky` connector does on its next run: emit `notes`, then a SKIP_RESULT per
    gap, then fail with `error` (if one is given)."""
    path = world.root / "flaky-plan.json"
    plan = {"account": "fay", "notes": notes, "gaps": list(gaps), "error": error}
    path.write_text(json.dumps(plan), encoding="utf-8")
    return path


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
