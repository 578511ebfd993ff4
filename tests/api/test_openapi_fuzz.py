"""A fuzz run from the served OpenAPI document: every operation, with an owner token and with a
client token, answers without a server error, and every answer is JSON — an error in the PDPP
envelope, or, from the OAuth endpoints, in RFC 6749's shape. The examples per operation are few
and bounded, so the run takes seconds. (Browser pages are not in the document.)"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from .conftest import World, assert_error, make_notes

EXAMPLES = int(os.environ.get("OWNSTREAM_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World.create(tmp_path_factory.mktemp("fuzz"))
    w.add_spotify("ada.lind", 1, plays=30)
    w.install_notes()
    w.connect_notes("alice", make_notes("alice", count=5), label="Alice notebook")
    w.import_notes("carol", make_notes("carol", count=5))
    return w


@pytest.fixture(scope="module")
def client_token(fuzz_world: World) -> str:
    _, token = fuzz_world.grant(
        [{"name": "listening_history"}, {"name": "notes", "fields": ["note_id", "title"]}]
    )
    return token


FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def answers_without_failing(case: Any, token: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    where = f"{case.method} {case.formatted_path} {case.query}"
    assert response.status_code < 500, (where, response.text[:300])
    body = response.json()
    if response.status_code >= 400 and case.path.startswith("/oauth/"):
        assert isinstance(body.get("error"), str), (where, body)  # RFC 6749 §5.2
        assert set(body) <= {"error", "error_description", "error_uri", "state"}, (where, body)
    elif response.status_code >= 400:
        assert set(body) == {"error"}, (where, body)
        assert {"type", "code", "message", "request_id"} <= set(body["error"]), (where, body)
    else:
        assert isinstance(body, dict), where


@pytest.mark.parametrize("bearer", ["owner", "client"])
def test_no_operation_fails_inside(fuzz_world: World, client_token: str, bearer: str) -> None:
    token = fuzz_world.owner_token if bearer == "owner" else client_token
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_world.http.app)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert len(operations) > 20
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            answers_without_failing(case, token)

        fuzz()


def test_every_operation_declares_its_parameters(fuzz_world: World) -> None:
    document = fuzz_world.http.get("/openapi.json").json()
    declared = {
        (method.upper(), path): {p["name"] for p in operation.get("parameters", [])}
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert {"metric", "group_by_time", "granularity", "time_zone", "limit"} <= declared[
        ("GET", "/v1/streams/{stream}/aggregate")
    ]
    assert {"field", "offset_chars", "limit_chars", "q", "before_chars", "after_chars",
            "connection_id"} <= declared[
        ("GET", "/v1/streams/{stream}/records/{record_id}/field-window")
    ]
    assert {"limit", "cursor", "order", "fields", "changes_since", "connection_id",
            "connector_instance_id"} <= declared[("GET", "/v1/streams/{stream}/records")]
    assert {"q", "streams", "limit", "cursor"} <= declared[("GET", "/v1/search")]
    assert {"view", "detail", "stream", "connector_id"} <= declared[("GET", "/v1/schema")]
    assert {"connection_id", "actor_kind", "operation", "limit"} <= declared[
        ("GET", "/v1/owner/audit")
    ]
    grant_body = document["paths"]["/v1/owner/grants"]["post"]["requestBody"]
    assert "streams" in str(grant_body) or "components" in document


def test_a_body_of_the_wrong_type_is_an_envelope_error(fuzz_world: World) -> None:
    w = fuzz_world
    response = w.post("/v1/owner/grants", w.owner_token, json=["not", "an", "object"])
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == "body"
    broken = w.http.post(
        "/v1/owner/grants",
        content=b"{",
        headers={"Authorization": f"Bearer {w.owner_token}", "Content-Type": "application/json"},
    )
    assert_error(broken, 400, "invalid_request")
