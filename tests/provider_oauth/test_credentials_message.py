"""CREDENTIALS on the wire, from a plain (non-SDK) subprocess connector: stored at once for the
run's own connection, kept whatever the run's outcome, refused when it names an undeclared
secret, never shown anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ownstream.credentials import fingerprint
from ownstream.errors import ProtocolViolation, RunFailed, RunLeaseLost
from ownstream.model import ConnectorManifest, StreamDefinition
from ownstream.runtime.protocol import Credentials, MessageValidator
from ownstream.store.base import Binding
from tests.runtime.messages import done, identity_msg, item
from tests.runtime.test_runs import in_background, wait_for

ACCT = identity_msg("acct-1")
NEW = "tok-refreshed-7a1c"


def credentials(**secrets: Any) -> dict[str, Any]:
    return {"type": "CREDENTIALS", "secrets": secrets}


def token_env(owner: Any, name: str) -> list[str]:
    """The token each process of this connection was started with, in order."""
    return [entry["env"]["SCRIPTED_TOKEN"] for entry in owner.log(name)]


def everything_shown(owner: Any, connection_id: str) -> str:
    return "\n".join(
        [
            owner.cli("connections", "show", connection_id, "--json").stdout,
            owner.cli("runs", "list", "--json").stdout,
            owner.cli("audit", "--json").stdout,
            json.dumps([r.__dict__ for r in owner.runs(connection_id)], default=str),
        ]
    )


def test_credentials_are_stored_at_once_and_used_by_the_next_run(scripted: Any) -> None:
    cid = scripted.connect_scripted("c", token="tok-original")
    handed, release = scripted.scratch / "handed", scripted.scratch / "release"
    steps = [
        ACCT,
        credentials(token=NEW),
        {"touch": str(handed)},
        {"wait_for": str(release)},
        item("r1"),
        done(1),
    ]
    scripted.script("c", steps)
    thread, box = in_background(lambda: scripted.runtime().run_connection(cid))
    wait_for(handed)
    # mid-run, not staged with the records: another process already reads the new value
    home = scripted.home()
    [info] = home.store.credential_metadata(cid)
    assert info.fingerprint == fingerprint(NEW) and info.rotated_at is not None
    release.touch()
    thread.join(30)
    [outcome] = box["result"]
    assert outcome.status == "succeeded" and outcome.tally.new == 1
    assert outcome.credentials_stored == ["token"]
    assert outcome.tally.parsed == 1  # the record: CREDENTIALS is no entry of any count

    scripted.script("c", [ACCT, done(0)])
    scripted.runtime().run_connection(cid)
    assert token_env(scripted, "c") == ["tok-original", "tok-original", NEW]
    assert NEW not in everything_shown(scripted, cid)


@pytest.mark.parametrize(
    "ending", [[done(0, status="failed", error={"message": "later"})], [{"exit": 3}]]
)
def test_a_run_that_fails_after_handing_credentials_back_keeps_them(
    scripted: Any, ending: list[dict[str, Any]]
) -> None:
    cid = scripted.connect_scripted("c", [ACCT, credentials(token=NEW), *ending])
    [failed] = scripted.runtime().run_connection(cid)
    assert failed.status == "failed" and failed.credentials_stored == ["token"]
    [info] = scripted.home().store.credential_metadata(cid)
    assert info.fingerprint == fingerprint(NEW)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (credentials(password=NEW), "does not declare as a secret"),
        (credentials(token=7), "must be a non-empty string"),
        (credentials(), "non-empty secrets object"),
        ({"raw": '{"type":"CREDENTIALS","secrets":{"token":"' + NEW}, "a CREDENTIALS line"),
    ],
)
def test_bad_credentials_are_a_protocol_violation_and_change_nothing(
    scripted: Any, message: dict[str, Any], why: str
) -> None:
    cid = scripted.connect_scripted("c", [ACCT, message, item("r1"), done(1)])
    [before] = scripted.home().store.credential_metadata(cid)
    [failed] = scripted.runtime().run_connection(cid)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "protocol_violation" and why in failed.error["message"]
    assert scripted.home().store.credential_metadata(cid) == [before]
    assert NEW not in everything_shown(scripted, cid)


def test_a_probe_that_refreshes_connects_with_the_refreshed_secret(scripted: Any) -> None:
    script = scripted.script(
        "c",
        [ACCT, done(0)],
        identify=[credentials(token=NEW), ACCT, done(0)],
    )
    connected = scripted.json(
        "connect", "scripted", "--secret", "token=tok-given", "--setting", f"script={script}"
    )
    [info] = scripted.home().store.credential_metadata(connected["connection_id"])
    assert info.fingerprint == fingerprint(NEW)


def test_an_import_cannot_hand_credentials_back(scripted: Any) -> None:
    """An importer has no connection credentials to update: CREDENTIALS fails the import."""
    script = scripted.script("import", [credentials(token=NEW), done(0)])
    manifest = json.loads((scripted.connectors / "scripted" / "manifest.json").read_text())
    manifest.update(connector_key="scripted-import", acquisition_method="owner_artifact")
    manifest["setup"] = {
        "secrets": [{"name": "token", "env": "SCRIPTED_TOKEN", "required": False}],
        "settings": [{"name": "script", "env": "SCRIPTED_SCRIPT", "default": str(script)}],
    }
    (scripted.connectors / "scripted" / "import.json").write_text(json.dumps(manifest))
    scripted.json("connectors", "add", scripted.connectors / "scripted" / "import.json")
    archive = scripted.scratch / "export.txt"
    archive.write_text("anything")
    with pytest.raises(RunFailed, match="CREDENTIALS in an import"):
        scripted.runtime().import_artifact("scripted-import", archive)
    assert scripted.home().store.connections() == []


def test_a_run_that_lost_its_lease_cannot_store_credentials(scripted: Any) -> None:
    cid = scripted.connect_scripted("c", [ACCT, done(0)])
    store = scripted.home().store
    [before] = store.credential_metadata(cid)
    stale = store.start_stage(
        Binding(cid), connector_key="scripted", acquisition_method="provider_api",
        trigger="manual", collection_mode="full_refresh", holder="gone", run_id="run_gone",
    )
    with scripted.db() as db:  # its process died; another run took the connection over
        db.execute("UPDATE run_leases SET expires_at = '2000-01-01T00:00:00.000Z'")
    scripted.runtime().run_connection(cid)
    sealed = {"token": (b"sealed-bytes", fingerprint(NEW))}
    with pytest.raises(RunLeaseLost):
        store.save_run_credentials(stale, sealed)
    assert store.credential_metadata(cid) == [before]


def test_the_validator_never_shows_a_value() -> None:
    definition = StreamDefinition("items", 1, "mutable_state", ("id",), {"type": "object"})
    manifest = ConnectorManifest(
        "k", "1", "K", "s", "provider_api", (definition,), secrets=(), settings=()
    )
    validator = MessageValidator(manifest, ("items",))
    with pytest.raises(ProtocolViolation) as raised:
        validator.parse({"type": "CREDENTIALS", "secrets": {"token": NEW}})
    assert NEW not in raised.value.message
    handed = Credentials({"token": NEW})
    assert NEW not in repr(handed) and handed.names == ["token"]
