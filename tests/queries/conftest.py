"""Two connections of task lists (`tasks`, with `steps` and `details` related to them), imported
from JSON by an in-process test importer, behind the HTTP API, with the owner token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.grants.issue import issue_grant
from ownstream.home import Home
from ownstream.owner import AccessOperations
from tests.services.postgres import backend_environment

TASKS: dict[str, Any] = {
    "name": "tasks",
    "version": 1,
    "semantics": "mutable_state",
    "primary_key": ["task_id"],
    "cursor_field": "due_at",
    "consent_time_field": "due_at",
    "range_filters": {
        "points": ["gte", "gt", "lte", "lt"],
        "weight": ["gte", "lt"],
        "due_at": ["gte", "gt", "lte", "lt"],
        "day": ["gte", "lte"],
    },
    "relationships": [
        {"name": "steps", "stream": "steps", "foreign_key": "task_id", "cardinality": "has_many"},
        {"name": "detail", "stream": "details", "foreign_key": "task_id",
         "cardinality": "has_one"},
        {"name": "history", "stream": "steps", "foreign_key": "task_id",
         "cardinality": "has_many"},
    ],
    "expand": [{"name": "steps", "default_limit": 2, "max_limit": 3}, {"name": "detail"}],
    "views": [{"id": "brief", "label": "Titles", "fields": ["task_id", "title"]}],
    "aggregations": {"count": True},
    "schema": {
        "type": "object",
        "properties": {
            "task_id": {"type": "string"},
            "title": {"type": "string"},
            "points": {"type": "integer"},
            "weight": {"type": "number"},
            "done": {"type": "boolean"},
            "due_at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["task_id"],
        "additionalProperties": False,
    },
}
STEPS: dict[str, Any] = {
    "name": "steps",
    "version": 1,
    "semantics": "mutable_state",
    "primary_key": ["step_id"],
    "cursor_field": "step_id",
    "schema": {
        "type": "object",
        "properties": {
            "step_id": {"type": "string"},
            "task_id": {"type": "string"},
            "label": {"type": "string"},
        },
        "required": ["step_id", "task_id"],
        "additionalProperties": False,
    },
}
DETAILS: dict[str, Any] = {
    "name": "details",
    "version": 1,
    "semantics": "mutable_state",
    "primary_key": ["detail_id"],
    "schema": {
        "type": "object",
        "properties": {
            "detail_id": {"type": "string"},
            "task_id": {"type": "string"},
            "text": {"type": "string"},
        },
        "required": ["detail_id", "task_id"],
        "additionalProperties": False,
    },
}
MANIFEST: dict[str, Any] = {
    "protocol_version": "0.1.0",
    "connector_key": "tasks-export",
    "version": "1.0.0",
    "display_name": "Tasks (export, test connector)",
    "source": "tasks",
    "acquisition_method": "owner_artifact",
    "run": {"python": "tests.queries.importer:collect"},
    "streams": [{"definition": "tasks"}, {"definition": "steps"}, {"definition": "details"}],
}
DUE = ("2025-01-0{d}T09:00:00Z", "2025-01-0{d}T12:30:00+02:00", "2025-01-0{d}T23:59:59.999Z")


def tasks(prefix: str, count: int = 9) -> dict[str, list[dict[str, Any]]]:
    """Deterministic tasks t1..tN (the same keys in every list), steps and some details."""
    found: dict[str, list[dict[str, Any]]] = {"tasks": [], "steps": [], "details": []}
    for i in range(1, count + 1):
        task: dict[str, Any] = {
            "task_id": f"t{i}",
            "title": f"{prefix} task {i % 4}",
            "points": i % 5,
            "weight": i / 2,
            "done": i % 3 == 0,
            "due_at": DUE[i % 3].format(d=i),
            "day": f"2025-02-{i:02d}",
            "tags": ["a", prefix],
        }
        if i == count:
            del task["points"]  # a task without a value never matches a filter on it
        found["tasks"].append(task)
        for j in range(i % 4):
            found["steps"].append(
                {"step_id": f"{prefix}-s{i}-{j}", "task_id": f"t{i}", "label": f"step {j}"}
            )
        if i % 2:
            found["details"].append(
                {"detail_id": f"{prefix}-d{i}", "task_id": f"t{i}", "text": f"{prefix} {i}"}
            )
    return found


@dataclass
class TaskWorld:
    root: Path
    home: Home
    http: TestClient
    owner_token: str
    data: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    conns: dict[str, str] = field(default_factory=dict)

    def import_tasks(self, name: str, document: dict[str, list[dict[str, Any]]]) -> str:
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(document))
        result = self.home.runtime().import_artifact("tasks-export", path)
        self.data[name], self.conns[name] = document, result.receipt.connection_id
        return result.receipt.connection_id

    def grant(self, streams: list[dict[str, Any]]) -> str:
        _, token = issue_grant(self.home.store, self.home.catalog, "app.test", {"streams": streams})
        return token

    def get(self, path: str, token: str | None = None, params: Any = None) -> httpx2.Response:
        response: httpx2.Response = self.http.get(
            path,
            params=params,
            headers={"Authorization": f"Bearer {token or self.owner_token}"},
        )
        return response

    def request(
        self, method: str, path: str, token: str | None = None, **kw: Any
    ) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token or self.owner_token}", **kw.pop("headers", {})}
        response: httpx2.Response = self.http.request(method, path, headers=headers, **kw)
        return response

    def listed(self, stream: str = "tasks", params: Any = None) -> list[dict[str, Any]]:
        """Every record of an owner read, following its cursors."""
        params = {"limit": 100, **(params or {})}
        found: list[dict[str, Any]] = []
        while True:
            response = self.get(f"/v1/streams/{stream}/records", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            found += body["data"]
            if not body["has_more"]:
                return found
            params["cursor"] = body["next_cursor"]


def build(root: Path) -> TaskWorld:
    home = Home(root / "home")
    for document in (TASKS, STEPS, DETAILS):
        home.catalog.add_definition(document, home.store)
    path = root / "tasks-export.json"
    path.write_text(json.dumps(MANIFEST))
    home.catalog.add_manifest(path, home.store)
    owner, _ = AccessOperations(home).mint_owner_token()
    world = TaskWorld(root, home, TestClient(create_app(home)), owner)
    world.import_tasks("ana", tasks("ana"))
    world.import_tasks("ben", tasks("ben", count=6))
    return world


@pytest.fixture(scope="module")
def shared_tasks(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[TaskWorld]:
    """Read-only: tests that write build their own."""
    with backend_environment(request):
        world = build(tmp_path_factory.mktemp("tasks"))
    yield world
    world.home.store.close()


@pytest.fixture
def task_world(tmp_path: Path) -> Iterator[TaskWorld]:
    world = build(tmp_path)
    yield world
    world.home.store.close()
