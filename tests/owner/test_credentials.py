"""Per-connection credentials: sealed at rest, never shown, never borrowed, rotated in place."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ownstream.api.app import create_app
from ownstream.credentials import KEY_ENV, Vault, fingerprint
from ownstream.errors import CredentialUnavailable
from ownstream.grants.issue import issue_grant

from . import FakeClock, Lab


def db_bytes(lab: Lab) -> bytes:
    """The database file and its WAL, as they sit on disk."""
    path = Path(lab.home.path / "ownstream.db")
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def test_credentials_are_sealed_at_rest(lab: Lab) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    lab.ops.run(ann)
    lab.ops.run(ben)
    on_disk = db_bytes(lab)
    assert on_disk
    for user in ("ann", "ben"):
        assert lab.tokens[user].encode() not in on_disk
    with lab.db() as db:
        rows = dict(
            db.execute(
                "SELECT connection_id, sealed FROM connection_credentials WHERE name = ?",
                ("access_token",),
            ).fetchall()
        )
    assert set(rows) == {ann, ben}
    vault = lab.home.vault
    assert vault.open(ann, "spotify", "access_token", rows[ann]) == lab.tokens["ann"]
    # sealed to its connection: a value copied to a sibling's row does not open there
    with pytest.raises(CredentialUnavailable):
        vault.open(ben, "spotify", "access_token", rows[ann])
    # another server key cannot open it either
    with pytest.raises(CredentialUnavailable):
        Vault(os.urandom(32)).open(ann, "spotify", "access_token", rows[ann])
    key_file = lab.home.path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_credentials_never_appear_in_responses_cli_output_audit_or_logs(
    lab: Lab, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    # one connection through the CLI, one through the operations
    token = lab.issue("ann")
    settings = lab.settings()
    connected = lab.cli_json(
        "connect",
        "spotify",
        "--secret",
        f"access_token={token}",
        "--setting",
        f"api_base_url={settings['api_base_url']}",
        "--setting",
        f"token_url={settings['token_url']}",
    )
    ann = connected["connection_id"]
    ben = lab.connect("ben")
    lab.cli_json("run", ann)
    lab.ops.run(ben)
    lab.double.expire_token(lab.tokens["ben"])
    failed = lab.cli_json("run", ben, code=1)  # the rejected token is named, never shown
    assert failed[0]["error"]["code"] == "credentials_invalid"
    lab.worker(FakeClock()).tick()
    issue_grant(lab.store, lab.home.catalog, "app.test", {"streams": [{"name": "profile"}]})

    for path in (
        "/v1/owner/connections",
        f"/v1/owner/connections/{ann}",
        f"/v1/owner/connections/{ann}/runs",
        f"/v1/owner/connections/{ann}/diagnostics",
        f"/v1/owner/connections/{ben}/diagnostics",
        "/v1/owner/audit",
        "/v1/owner/grants",
        "/v1/streams/profile/records",
    ):
        lab.ok("GET", path)  # `Lab.api` asserts no credential in the body
    for args in (
        ("connections", "list"),
        ("connections", "show", ann),
        ("connections", "diagnostics", ben),
        ("runs", "list"),
        ("audit",),
        ("grants", "list"),
    ):
        lab.cli_json(*args)  # `Lab.cli` asserts no credential in stdout or stderr
        lab.cli(*args)
    events = lab.audit()
    assert {e["operation"] for e in events} >= {"connect", "run", "scheduled_run"}
    lab.assert_no_secret(json.dumps(events))
    lab.assert_no_secret(caplog.text)
    captured = capfd.readouterr()
    lab.assert_no_secret(captured.out + captured.err)
    run_rows = json.dumps([r.__dict__ for r in lab.runs(ann) + lab.runs(ben)], default=str)
    lab.assert_no_secret(run_rows)
    # the CLI connect went through the owner operations: audited and enrolled
    connect_event = next(e for e in lab.audit(ann) if e["operation"] == "connect")
    assert connect_event["summary"]["credentials"] == ["access_token"]
    assert lab.store.schedule(ann) is not None


def test_diagnostics_show_only_kind_presence_fingerprint_and_times(lab: Lab) -> None:
    ann = lab.connect("ann")
    [credential] = lab.ok("GET", f"/v1/owner/connections/{ann}/diagnostics")["credentials"]
    assert credential == {
        "connector_key": "spotify",
        "name": "access_token",
        "present": True,
        "fingerprint": fingerprint(lab.tokens["ann"]),
        "created_at": credential["created_at"],
        "rotated_at": None,
    }
    assert credential["created_at"]
    shown = lab.cli_json("connections", "show", ann)["credentials"]
    assert shown == [credential]


@pytest.mark.parametrize("how", ["missing", "unopenable"])
def test_a_run_without_its_credential_fails_before_the_connector_starts(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    home = lab.home
    if how == "missing":
        with lab.db() as db:
            db.execute("DELETE FROM connection_credentials WHERE connection_id = ?", (ann,))
    else:
        # the server now runs with another key: ann's sealed token cannot be opened; ben's is
        # re-sealed under the new key by a reconnect
        monkeypatch.setenv(KEY_ENV, base64.urlsafe_b64encode(os.urandom(32)).decode())
        home = lab.fresh_home()
        lab.home, lab.http = home, TestClient(create_app(home))
        lab.connect("ben", connection_id=ben)
    # a deployment-wide variable must never stand in for the connection's own credential
    monkeypatch.setenv("SPOTIFY_ACCESS_TOKEN", lab.double.issue_token("ann"))
    requests = len(lab.double.requests)

    with pytest.raises(CredentialUnavailable) as raised:
        lab.ops.run(ann)
    assert raised.value.extra["connection_id"] == ann
    error = lab.error("POST", f"/v1/owner/connections/{ann}/run", 409, "credential_unavailable")
    assert error["connection_id"] == ann
    assert lab.cli_json("run", ann, code=1)["error"]["code"] == "credential_unavailable"
    assert len(lab.double.requests) == requests  # the connector never started
    results = lab.worker(FakeClock()).tick()
    assert isinstance(results[ann], CredentialUnavailable)
    assert lab.runs(ann) == []  # nothing started
    assert [r.status for r in lab.runs(ben)] == ["succeeded"]
    if how == "missing":
        health = lab.ops.health(home.store.connection(ann))
        assert (health.state, health.reason) == ("blocked", "credential_unavailable")
    failed = [e for e in lab.audit(ann) if e["outcome"] != "succeeded"]
    assert {e["summary"]["error"] for e in failed} == {"credential_unavailable"}


def test_subprocess_connectors_get_only_their_connections_env(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNSTREAM_CONNECTOR_TRANSPORT", "subprocess")
    ann, ben = lab.connect("ann"), lab.connect("ben")
    with lab.db() as db:
        db.execute("DELETE FROM connection_credentials WHERE connection_id = ?", (ann,))
    monkeypatch.setenv("SPOTIFY_ACCESS_TOKEN", lab.double.issue_token("ann"))
    with pytest.raises(CredentialUnavailable):
        lab.ops.run(ann)
    [outcome] = lab.ops.run(ben)  # a real child process, fed ben's token alone
    assert outcome.status == "succeeded"
    profile = lab.store.connection(ben)
    assert profile.identity is not None and profile.identity.value == "ben"


def test_each_connection_runs_with_its_own_credential(lab: Lab) -> None:
    ann, ben = lab.connect("ann"), lab.connect("ben")
    assert [o.status for o in lab.ops.run(ann)] == ["succeeded"]
    assert [o.status for o in lab.ops.run(ben)] == ["succeeded"]
    # each run proved its own account (a borrowed token would prove the other one and fail)
    for connection_id, user in ((ann, "ann"), (ben, "ben")):
        with lab.db() as db:
            [(data,)] = db.execute(
                "SELECT data FROM records WHERE connection_id = ? AND stream = 'profile'",
                (connection_id,),
            ).fetchall()
        assert json.loads(data)["user_id"] == user
    # copying ann's sealed token into ben's row does not let ben's run use it
    with lab.db() as db:
        [(sealed,)] = db.execute(
            "SELECT sealed FROM connection_credentials WHERE connection_id = ?", (ann,)
        ).fetchall()
        db.execute(
            "UPDATE connection_credentials SET sealed = ? WHERE connection_id = ?", (sealed, ben)
        )
    with pytest.raises(CredentialUnavailable):
        lab.ops.run(ben)
    assert [o.status for o in lab.ops.run(ann)] == ["succeeded"]


def test_rotating_a_credential_keeps_the_connection_history_and_schedule(lab: Lab) -> None:
    ann = lab.connect("ann")
    lab.ops.run(ann)
    lab.ops.put_schedule(ann, enabled=True, interval_seconds=900, jitter_seconds=30)
    schedule = lab.store.schedule(ann)
    [before] = lab.store.credential_metadata(ann)
    runs = [r.run_id for r in lab.runs(ann)]
    old_token = lab.tokens["ann"]

    # rotate through the CLI, as an owner would
    new_token = lab.issue("ann")
    settings = lab.settings()
    rotated = lab.cli_json(
        "connect",
        "spotify",
        "--connection",
        ann,
        "--secret",
        f"access_token={new_token}",
        "--setting",
        f"api_base_url={settings['api_base_url']}",
        "--setting",
        f"token_url={settings['token_url']}",
    )
    assert rotated["connection_id"] == ann and rotated["created"] is False
    lab.double.expire_token(old_token)

    [after] = lab.store.credential_metadata(ann)
    assert after.fingerprint == fingerprint(new_token) != before.fingerprint
    assert after.created_at == before.created_at
    assert after.rotated_at is not None and before.rotated_at is None
    assert lab.store.schedule(ann) == schedule
    assert [r.run_id for r in lab.runs(ann)] == runs
    [outcome] = lab.ops.run(ann)  # runs with the new token: the old one is now rejected
    assert outcome.status == "succeeded" and outcome.collection_mode == "incremental"
    assert [r.run_id for r in lab.runs(ann)][1:] == runs
    assert [c.connection_id for c in lab.store.connections()] == [ann]
