"""The run lifecycle: batches, checkpoints, collection modes, leases, connect, credentials."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ownstream.errors import (
    ConnectionRunActive,
    CredentialUnavailable,
    ProtocolViolation,
    RunFailed,
)
from ownstream.store.base import Binding
from tests.runtime.messages import done, identity_msg, item, state_msg

ACCT = identity_msg("acct-1")


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def in_background(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `target` in a thread; its result (or exception) lands in the returned dict."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:  # reported by the test
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, box


def collection_starts(owner: Any, name: str) -> list[dict[str, Any]]:
    """The STARTs a connection's connector received for collection (not identify probes)."""
    return [e["start"] for e in owner.log(name) if e["start"]["collection_mode"] != "identify"]


# ------------------------------------------------------------------------------------------
# batches and checkpoints
# ------------------------------------------------------------------------------------------


def test_records_are_staged_in_batches_and_published_at_the_end(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    started, release = scripted.scratch / "started", scripted.scratch / "release"
    steps = [ACCT, item("r1"), item("r2"), item("r3"), item("r4"), item("r5"),
             state_msg("items", "r5"), {"touch": str(started)}, {"wait_for": str(release)},
             item("r6"), done(6)]
    scripted.script("c", steps)
    thread, box = in_background(lambda: scripted.runtime(batch_size=2).run_connection(cid))
    wait_for(started)
    # mid-run: two full batches and the STATE's flush are written (each in its own short
    # transaction), but staged: no reader sees them yet, and no checkpoint is saved. The
    # connector touches the marker once its lines are in the pipe, maybe before the runtime
    # has read them, so wait for the flush itself.
    deadline = time.monotonic() + 20
    while True:
        with scripted.db() as db:
            staged = db.execute("SELECT record_key FROM records ORDER BY record_key").fetchall()
        if len(staged) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [key for (key,) in staged] == ["r1", "r2", "r3", "r4", "r5"]
    assert scripted.records(cid, "items") == {}
    assert scripted.state(cid, "scripted") == {}
    [running] = scripted.runs(cid)
    assert running.status == "running"
    release.touch()
    thread.join(30)
    [outcome] = box["result"]
    assert outcome.status == "succeeded" and outcome.tally.new == 6
    assert sorted(scripted.records(cid, "items")) == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert scripted.state(cid, "scripted") == {"items": "r5"}


def test_checkpoints_commit_in_the_same_transaction_as_the_last_batch(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    scripted.script(
        "c", [ACCT, item("r1"), item("r2"), state_msg("items", "r2"), item("r3"), done(3)]
    )
    # a fault injected into the checkpoint write: the last batch must roll back with it
    with scripted.db() as db:
        db.execute(
            "CREATE TRIGGER refuse_state BEFORE INSERT ON connection_state "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="injected fault"):
        scripted.runtime().run_connection(cid)
    # the publication rolled back, and the stage was abandoned: nothing of the run is kept
    assert scripted.records(cid, "items") == {}
    with scripted.db() as db:
        assert db.execute("SELECT count(*) FROM records").fetchone() == (0,)
    assert scripted.state(cid, "scripted") == {}
    [run] = scripted.runs(cid)
    assert run.status == "failed" and run.error["code"] == "internal_error"

    with scripted.db() as db:
        db.execute("DROP TRIGGER refuse_state")
    [retry] = scripted.runtime().run_connection(cid)  # the lease was released
    assert retry.status == "succeeded"
    assert sorted(scripted.records(cid, "items")) == ["r1", "r2", "r3"]
    assert scripted.state(cid, "scripted") == {"items": "r2"}


def test_a_failed_run_commits_no_state_and_keeps_the_next_run_full(scripted: Any) -> None:
    cid = scripted.connect_scripted("c", [ACCT, item("r1"), state_msg("items", "r1"), {"exit": 1}])
    [failed] = scripted.runtime().run_connection(cid)
    assert failed.status == "failed" and failed.checkpoint["state_streams_committed"] == []
    assert scripted.state(cid, "scripted") == {}
    assert sorted(scripted.records(cid, "items")) == ["r1"]  # flushed, kept with provenance
    provenance = scripted.home().store.record_provenance(cid, "items", "r1")
    assert [(p.run_id, p.connector_key) for p in provenance] == [
        (failed.run_id, "scripted")
    ]

    scripted.script("c", [ACCT, item("r2"), state_msg("items", "r2"), done(1)])
    [retry] = scripted.runtime().run_connection(cid)
    assert retry.collection_mode == "full_refresh"
    starts = collection_starts(scripted, "c")
    assert [(s["collection_mode"], s["state"]) for s in starts] == [
        ("full_refresh", None), ("full_refresh", None),
    ]


def test_the_mode_comes_from_this_connections_own_state(scripted: Any) -> None:
    steps = [ACCT, item("r1", updated_at="2024-01-01"), state_msg("items", {"since": "x"}),
             state_msg("events", 41), done(1)]
    a = scripted.connect_scripted("a", steps)
    b = scripted.connect_scripted("b", identity="acct-2")
    [first] = scripted.runtime().run_connection(a)
    assert first.collection_mode == "full_refresh"
    assert first.checkpoint == {
        "commit_status": "committed",
        "state_streams_staged": ["events", "items"],
        "state_streams_committed": ["events", "items"],
    }
    [second] = scripted.runtime().run_connection(a)
    assert second.collection_mode == "incremental"
    assert collection_starts(scripted, "a")[-1]["state"] == {"items": {"since": "x"}, "events": 41}
    assert collection_starts(scripted, "a")[-1]["run_id"] == second.run_id

    # the sibling (same connector, another account) has no state of its own
    scripted.script("b", [identity_msg("acct-2"), done(0)], identity="acct-2")
    [sibling] = scripted.runtime().run_connection(b)
    assert sibling.collection_mode == "full_refresh"
    [start] = collection_starts(scripted, "b")
    assert start["collection_mode"] == "full_refresh" and start["state"] is None
    assert start["scope"] == {"streams": [{"name": "items"}, {"name": "events"}]}


def test_an_interrupted_run_is_cancelled_commits_no_state_and_frees_its_lease(
    scripted: Any,
) -> None:
    cid = scripted.connect_scripted("c", [
        ACCT, item("r1"), state_msg("items", "r1"), item("r2"),
        {"type": "PROGRESS", "message": "page 2"}, item("r3"), done(3),
    ])
    runtime = scripted.runtime()

    def interrupt(event: dict[str, Any]) -> None:
        raise KeyboardInterrupt  # the owner pressed Ctrl-C mid-run

    runtime.on_progress = interrupt
    with pytest.raises(KeyboardInterrupt):
        runtime.run_connection(cid)
    [run] = scripted.runs(cid)
    assert run.status == "cancelled" and run.error["code"] == "cancelled"
    assert run.checkpoint["commit_status"] == "not_committed"
    assert sorted(scripted.records(cid, "items")) == ["r1"]  # flushed by the STATE; r2 dropped
    assert scripted.state(cid, "scripted") == {}
    scripted.script("c", [ACCT, done(0)])
    assert scripted.runtime().run_connection(cid)[0].collection_mode == "full_refresh"


def test_a_later_state_replaces_an_earlier_one_per_stream(scripted: Any) -> None:
    cid = scripted.connect_scripted(
        "c", [ACCT, state_msg("items", 1), state_msg("events", "e"), state_msg("items", 2), done(0)]
    )
    scripted.runtime().run_connection(cid)
    assert scripted.state(cid, "scripted") == {"items": 2, "events": "e"}
    scripted.script("c", [ACCT, state_msg("items", 3), done(0)])
    scripted.runtime().run_connection(cid)
    assert scripted.state(cid, "scripted") == {"items": 3, "events": "e"}


def test_progress_reaches_the_callback(scripted: Any) -> None:
    cid = scripted.connect_scripted(
        "c", [ACCT, item("r1"), {"type": "PROGRESS", "message": "page 1", "count": 1, "total": 2},
              done(1)]
    )
    events: list[dict[str, Any]] = []
    runtime = scripted.runtime()
    runtime.on_progress = events.append
    [outcome] = runtime.run_connection(cid)
    assert events == [{"run_id": outcome.run_id, "message": "page 1", "stream": None,
                       "count": 1, "total": 2, "connector_key": "scripted", "records": 1}]


# ------------------------------------------------------------------------------------------
# leases: one active run per connection, siblings concurrently
# ------------------------------------------------------------------------------------------


def test_one_active_run_per_connection_while_siblings_run(scripted: Any) -> None:
    started, release = scripted.scratch / "started", scripted.scratch / "release"
    a = scripted.connect_scripted(
        "a", [ACCT, item("r1"), {"touch": str(started)}, {"wait_for": str(release)}, done(1)]
    )
    b = scripted.connect_scripted(
        "b", [identity_msg("acct-2"), item("r1", title="b"), done(1)], identity="acct-2"
    )
    thread, box = in_background(lambda: scripted.runtime().run_connection(a))
    try:
        wait_for(started)
        [lease_holder] = scripted.runs(a)
        with pytest.raises(ConnectionRunActive) as caught:
            scripted.runtime().run_connection(a)
        assert caught.value.extra == {"connection_id": a, "run_id": lease_holder.run_id}
        error = scripted.error("run", a)
        assert error["code"] == "connection_run_active"
        assert len(scripted.runs(a)) == 1  # the refused runs left no trace

        [sibling] = scripted.runtime().run_connection(b)  # a sibling is not blocked
        assert sibling.status == "succeeded"
        assert scripted.records(b, "items") == {"r1": {"id": "r1", "title": "b"}}
    finally:
        release.touch()
        thread.join(30)
    [outcome] = box["result"]
    assert outcome.status == "succeeded"
    scripted.script("a", [ACCT, done(0)])
    assert scripted.runtime().run_connection(a)[0].status == "succeeded"  # lease released


def test_an_expired_lease_is_taken_over_and_its_run_marked_failed(scripted: Any) -> None:
    cid = scripted.connect_scripted("c", [ACCT, done(0)])
    store = scripted.home().store
    stale = store.start_stage(
        Binding(cid), connector_key="scripted", acquisition_method="provider_api",
        trigger="manual", collection_mode="full_refresh", holder="gone", run_id="run_gone",
    )
    with pytest.raises(ConnectionRunActive):
        scripted.runtime().run_connection(cid)
    with scripted.db() as db:  # the worker holding it died long ago
        db.execute("UPDATE run_leases SET expires_at = '2000-01-01T00:00:00.000Z'")
    [outcome] = scripted.runtime().run_connection(cid)
    assert outcome.status == "succeeded"
    runs = {r.run_id: r for r in scripted.runs(cid)}
    assert runs[stale.run_id].status == "failed"
    assert runs[stale.run_id].error["code"] == "run_stalled"


# ------------------------------------------------------------------------------------------
# which connection a run is for
# ------------------------------------------------------------------------------------------


def test_a_connector_only_run_with_several_connections_is_ambiguous(scripted: Any) -> None:
    error = scripted.error("run", "--connector", "scripted")
    assert error["code"] == "connection_not_found"  # no connection has the path yet
    assert scripted.error("run", "--connector", "nope")["code"] == "unknown_connector"
    a = scripted.connect_scripted("a", [ACCT, done(0)])
    [alone] = scripted.json("run", "--connector", "scripted")
    assert alone["connection_id"] == a and alone["status"] == "succeeded"

    b = scripted.connect_scripted("b", identity="acct-2")
    error = scripted.error("run", "--connector", "scripted")
    assert error["code"] == "ambiguous_connection" and error["retry_with"] == "connection_id"
    assert sorted(c["connection_id"] for c in error["available_connections"]) == sorted([a, b])
    assert len(scripted.runs()) == 1  # nothing ran on the ambiguous request
    text = scripted.cli("run", "--connector", "scripted", code=1).stderr
    assert "[ambiguous_connection]" in text and a in text and b in text


# ------------------------------------------------------------------------------------------
# connect: probe first, then resolve, then store secrets
# ------------------------------------------------------------------------------------------


def test_connect_probes_the_identity_before_creating_anything(scripted: Any) -> None:
    a = scripted.connect_scripted("a", identity="acct-1")
    again = scripted.json(
        "connect", "scripted", "--secret", "token=rotated",
        "--setting", f"script={scripted.script('a', identity='acct-1')}",
        "--setting", f"log={scripted.log_path('a')}",
    )
    assert again["connection_id"] == a and again["created"] is False
    other = scripted.connect_scripted("b", identity="acct-2")
    assert other != a
    connections = scripted.json("connections", "list")
    assert sorted(c["connection_id"] for c in connections) == sorted([a, other])
    assert {c["identity"]["value"] for c in connections} == {"acct-1", "acct-2"}
    [start] = [e["start"] for e in scripted.log("b")]
    assert start["collection_mode"] == "identify" and start["state"] is None

    # the re-connect rotated a's token: a's next run gets the new one
    scripted.script("a", [ACCT, done(0)])
    scripted.runtime().run_connection(a)
    assert scripted.log("a")[-1]["env"]["SCRIPTED_TOKEN"] == "rotated"


def test_connect_to_a_named_connection_of_another_account_changes_nothing(scripted: Any) -> None:
    a = scripted.connect_scripted("a", identity="acct-1", token="tok-a")
    script = scripted.script("intruder", identity="acct-9")
    error = scripted.error(
        "connect", "scripted", "--connection", a, "--secret", "token=tok-intruder",
        "--setting", f"script={script}",
    )
    assert error["code"] == "identity_mismatch" and error["connection_id"] == a
    assert [c["connection_id"] for c in scripted.json("connections", "list")] == [a]
    scripted.script("a", [ACCT, done(0)])
    scripted.runtime().run_connection(a)
    assert scripted.log("a")[-1]["env"]["SCRIPTED_TOKEN"] == "tok-a"


def test_a_failed_or_malformed_probe_creates_no_connection(scripted: Any) -> None:
    failing = scripted.script("f", identify=[done(0, "failed", {"message": "bad token"})])
    with pytest.raises(RunFailed, match="could not verify the connection: bad token"):
        scripted.runtime().connect("scripted", secrets={"token": "t"},
                                   settings={"script": str(failing)})
    trailing = scripted.script("t", identify=[ACCT, done(0), item("r1")])
    with pytest.raises(ProtocolViolation, match="RECORD after DONE"):
        scripted.runtime().connect("scripted", secrets={"token": "t"},
                                   settings={"script": str(trailing)})
    crashing = scripted.script("x", identify=[ACCT, {"exit": 4}])
    with pytest.raises(ProtocolViolation, match=r"exited \(code 4\) before DONE"):
        scripted.runtime().connect("scripted", secrets={"token": "t"},
                                   settings={"script": str(crashing)})
    assert scripted.json("connections", "list") == []


def test_connect_rejects_unknown_setup_names(scripted: Any) -> None:
    error = scripted.error("connect", "scripted", "--secret", "token=t", "--secret", "pin=1")
    assert error["code"] == "invalid_request" and "no secret 'pin'" in error["message"]
    error = scripted.error("connect", "scripted", "--secret", "token=t", "--setting", "zone=1")
    assert error["param"] == "setting"
    error = scripted.error("connect", "scripted", "--secret", "token")
    assert "NAME=VALUE" in error["message"]


# ------------------------------------------------------------------------------------------
# credentials
# ------------------------------------------------------------------------------------------


def test_secrets_are_sealed_and_reach_only_their_connections_runs(
    scripted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNSTREAM_SERVER_ONLY", "server-private-value")
    a = scripted.connect_scripted("a", [ACCT, item("r1"), done(1)], token="sekret-alpha-123")
    b = scripted.connect_scripted(
        "b", [identity_msg("acct-2"), item("r1"), done(1)], identity="acct-2",
        token="sekret-bravo-456",
    )
    scripted.runtime().run_connection(a)
    scripted.runtime().run_connection(b)

    a_env = [e["env"] for e in scripted.log("a")]
    b_env = [e["env"] for e in scripted.log("b")]
    assert len(a_env) == len(b_env) == 2  # the identify probe and the run
    assert all(env["SCRIPTED_TOKEN"] == "sekret-alpha-123" for env in a_env)
    assert all(env["SCRIPTED_TOKEN"] == "sekret-bravo-456" for env in b_env)
    assert "sekret-bravo-456" not in str(a_env) and "sekret-alpha-123" not in str(b_env)
    # nothing of the server's own environment leaks beyond the allow-list
    assert all("OWNSTREAM_SERVER_ONLY" not in env for env in a_env + b_env)

    on_disk = b"".join(p.read_bytes() for p in scripted.home_dir.iterdir() if p.is_file())
    assert b"sekret-alpha-123" not in on_disk and b"sekret-bravo-456" not in on_disk
    shown = scripted.cli("connections", "show", a, "--json").stdout
    assert "sekret" not in shown


def test_the_servers_secret_key_never_reaches_a_connector(
    scripted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "A" * 43 + "="  # urlsafe base64 of 32 bytes
    monkeypatch.setenv("OWNSTREAM_SECRET_KEY", key)
    a = scripted.connect_scripted("a", [ACCT, done(0)], token="sekret-alpha-123")
    scripted.runtime().run_connection(a)
    assert not (scripted.home_dir / "secret.key").exists()
    assert all("OWNSTREAM_SECRET_KEY" not in e["env"] for e in scripted.log("a"))
    assert key not in str(scripted.log("a"))


def test_a_missing_required_secret_fails_before_the_connector_starts(scripted: Any) -> None:
    script = scripted.script("a")
    error = scripted.error(
        "connect", "scripted", "--setting", f"script={script}",
        "--setting", f"log={scripted.log_path('a')}",
    )
    assert error["code"] == "credential_unavailable" and "token" in error["message"]
    assert scripted.log("a") == [] and scripted.json("connections", "list") == []

    cid = scripted.connect_scripted("a", [ACCT, done(0)])
    # the operator upgrades the connector: it now needs a second secret this connection lacks
    manifest = scripted.connectors / "scripted" / "manifest.json"
    manifest.write_text(
        manifest.read_text().replace(
            '"secrets": [', '"secrets": [{"name": "api_key", "env": "SCRIPTED_API_KEY"}, '
        )
    )
    scripted.add_connector("scripted")
    probes = len(scripted.log("a"))
    with pytest.raises(CredentialUnavailable, match="api_key") as caught:
        scripted.runtime().run_connection(cid)
    assert caught.value.extra["connection_id"] == cid
    assert scripted.error("run", cid)["code"] == "credential_unavailable"
    assert len(scripted.log("a")) == probes  # the connector never started
    assert scripted.runs(cid) == []


def test_a_secret_sealed_for_one_connection_does_not_open_for_another(scripted: Any) -> None:
    home = scripted.home()
    sealed = home.vault.seal("cin_a", "scripted", "token", "value")
    assert home.vault.open("cin_a", "scripted", "token", sealed) == "value"
    with pytest.raises(CredentialUnavailable):
        home.vault.open("cin_b", "scripted", "token", sealed)
    with pytest.raises(CredentialUnavailable):
        home.vault.open("cin_a", "other", "token", sealed)
