"""The connector run protocol: every message validated, records rejected, violations fatal.

The first half checks the validator message by message; the second runs real subprocess
connectors (a POSIX shell one and a scripted stdlib-Python one) and checks what the store holds
after a malformed connector: the run failed cleanly, flushed records kept with provenance,
nothing else written, no checkpoint, the lease free again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ownstream.errors import ProtocolViolation
from ownstream.model import ConnectorManifest
from ownstream.registry.manifests import parse_manifest
from ownstream.runtime.protocol import (
    BlobFile,
    Done,
    Gap,
    Identity,
    MessageValidator,
    Omitted,
    Progress,
    Record,
    Rejected,
    Rejection,
    State,
)
from tests.runtime.messages import done, identity_msg, item, record, state_msg

CONNECTORS = Path(__file__).parent / "connectors"


def scripted_manifest() -> ConnectorManifest:
    document = json.loads((CONNECTORS / "scripted" / "manifest.json").read_text())
    return parse_manifest(document, lambda name: None)


def validator(scope: tuple[str, ...] = ("items", "events"), **kw: Any) -> MessageValidator:
    return MessageValidator(scripted_manifest(), scope, **kw)


def feed(v: MessageValidator, *messages: dict[str, Any]) -> list[Any]:
    return [v.parse(m) for m in messages]


# ------------------------------------------------------------------------------------------
# the validator, message by message
# ------------------------------------------------------------------------------------------


def test_a_well_formed_run_parses_into_kinds() -> None:
    v = validator()
    parsed = feed(
        v,
        identity_msg("acct-1"),
        {"type": "PROGRESS", "message": "starting", "count": 0, "total": 2},
        item("a", title="A"),
        record("events", "e1", {"id": "e1", "at": "2024-01-01T00:00:00Z"}),
        {"type": "SKIP_RESULT", "stream": "items", "reason": "rate_limited", "message": "later",
         "recovery_hint": {"action": "retry_by_runtime", "retryable": True}},
        {"type": "LOG", "message": "fine"},
        state_msg("items", {"after": "a"}),
        done(2),
    )
    assert [type(p) for p in parsed] == [
        Identity, Progress, Record, Record, Gap, Progress, State, Done,
    ]
    assert parsed[0].evidence.claim == "account_id" and parsed[0].evidence.value == "acct-1"
    assert parsed[0].evidence.connector_key == "scripted"
    assert parsed[2].write.record_key == "a" and parsed[2].write.op == "upsert"
    assert parsed[2].write.encoded == b'{"id":"a","title":"A"}'
    assert parsed[4] == Gap("items", "rate_limited", "later", "retry_by_runtime", True)
    assert parsed[6] == State("items", {"after": "a"})
    assert parsed[7] == Done("succeeded", 2, None)


def test_a_record_without_emitted_at_gets_one() -> None:
    v = validator()
    parsed = v.parse({"type": "RECORD", "stream": "items", "key": "a", "data": {"id": "a"}})
    assert isinstance(parsed, Record) and parsed.write.emitted_at.endswith("Z")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b"{not json", "not a JSON message"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"RECORD"', "must be a JSON object"),
        (b'{"type": "BOGUS"}', "unknown message type 'BOGUS'"),
        (b'{"no_type": 1}', "unknown message type None"),
    ],
)
def test_malformed_lines_are_protocol_violations(line: bytes, needle: str) -> None:
    with pytest.raises(ProtocolViolation) as caught:
        validator().parse_line(line)
    assert needle in caught.value.message
    assert caught.value.code == "protocol_violation"


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([identity_msg("a"), item("x"), identity_msg("a")], "IDENTITY after a RECORD"),
        ([state_msg("items", 1), identity_msg("a")], "IDENTITY after a RECORD or STATE"),
        ([identity_msg("a"), identity_msg("a")], "a second IDENTITY"),
        ([identity_msg("a", claim="email")], "is not the declared 'account_id'"),
        ([identity_msg("")], "non-empty string"),
        ([{"type": "IDENTITY", "claim": "account_id", "value": 7}], "non-empty string"),
        ([item("x"), done(1), item("y")], "RECORD after DONE"),
        ([done(0), done(0)], "DONE after DONE"),
        ([done(0), {"type": "PROGRESS"}], "PROGRESS after DONE"),
        ([record("journal_entries", "x", {"entry_id": "x"})], "not in this run's scope"),
        ([record("nope", "x", {"id": "x"})], "not in this run's scope"),
        ([state_msg("nope", 1)], "not in this run's scope"),
        ([{"type": "RECORD", "key": "x", "data": {"id": "x"}}], "without a stream name"),
        ([{"type": "RECORD", "stream": "items", "key": "x", "data": [1]}], "without a data"),
        ([{"type": "STATE", "stream": "items"}], "without a cursor"),
        ([{"type": "SKIP_RESULT", "stream": "nope"}], "not in this run's scope"),
        ([item("x"), done(2)], "DONE says 2 records were emitted but 1 arrived"),
        ([done(0, status="ok")], "DONE status 'ok'"),
    ],
)
def test_order_scope_and_count_violations(messages: list[dict[str, Any]], needle: str) -> None:
    v = validator()
    with pytest.raises(ProtocolViolation) as caught:
        feed(v, *messages)
    assert needle in caught.value.message


def test_a_stream_of_the_manifest_outside_the_runs_scope_is_a_violation() -> None:
    v = validator(scope=("items",))
    v.parse(item("x"))
    with pytest.raises(ProtocolViolation, match="'events' is not in this run's scope"):
        v.parse(record("events", "e", {"id": "e", "at": "2024-01-01T00:00:00Z"}))


def test_identify_runs_carry_only_identity_and_done() -> None:
    v = validator(scope=(), identify_only=True)
    assert isinstance(v.parse(identity_msg("acct")), Identity)
    with pytest.raises(ProtocolViolation, match="RECORD in an identify run"):
        v.parse(item("x"))
    with pytest.raises(ProtocolViolation, match="STATE in an identify run"):
        validator(scope=(), identify_only=True).parse(state_msg("items", 1))


def test_identity_from_a_connector_that_declares_no_claim_is_a_violation() -> None:
    document = json.loads((CONNECTORS / "scripted" / "manifest.json").read_text())
    del document["identity"]
    manifest = parse_manifest(document, lambda name: None)
    with pytest.raises(ProtocolViolation, match="declares no identity claim"):
        MessageValidator(manifest, ("items",)).parse(identity_msg("acct"))


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (record("items", "a", {"id": "b"}), "key_mismatch"),
        (record("items", ["a", "b"], {"id": "a"}), "key_mismatch"),
        (record("items", {"id": "a"}, {"id": "a"}), "invalid_key"),
        (record("items", [], {"id": "a"}), "invalid_key"),
        (record("items", "a", {"title": "no id"}), "key_mismatch"),
        (record("items", "a", {"id": "a", "title": 5}), "schema_mismatch"),
        (record("events", "e", {"id": "e"}), "schema_mismatch"),
        (record("items", "a", {"id": "a"}, op="merge"), "invalid_op"),
        (record("events", "e", {"id": "e", "at": "x"}, op="delete"), "delete_on_append_only"),
    ],
)
def test_a_record_breaking_its_stream_contract_is_rejected_not_fatal(
    message: dict[str, Any], reason: str
) -> None:
    v = validator()
    parsed = v.parse(message)
    assert isinstance(parsed, Rejected) and parsed.counted_as_record
    assert parsed.rejection.reason == reason and parsed.rejection.detail
    # the run goes on, and the rejected record still counts as emitted for DONE
    assert isinstance(v.parse(item("ok")), Record)
    assert v.parse(done(2)) == Done("succeeded", 2, None)


def test_a_connector_reports_entries_it_could_not_read_or_left_out() -> None:
    v = validator()
    rejected = v.parse(
        {"type": "REJECT", "stream": "items", "reason": "bad_date", "detail": "ts is null",
         "key": "line 7"}
    )
    assert rejected == Rejected(Rejection("items", "line 7", "bad_date", "ts is null"), False)
    assert v.parse({"type": "OMIT", "reason": "video_episode", "count": 3}) == Omitted(
        "video_episode", 3
    )
    # neither is a RECORD: DONE counts records only
    assert v.parse(done(0)) == Done("succeeded", 0, None)
    for bad in (
        {"type": "REJECT", "stream": "items"},
        {"type": "REJECT", "stream": "nope", "reason": "x"},
        {"type": "OMIT", "reason": "x", "count": -1},
        {"type": "OMIT", "count": 1},
    ):
        with pytest.raises(ProtocolViolation):
            validator().parse(bad)


def test_in_process_data_must_be_json() -> None:
    parsed = validator().parse(record("items", "a", {"id": "a", "title": object()}))
    assert isinstance(parsed, Rejected) and parsed.rejection.reason == "not_json"


def test_keys_canonicalize_like_the_primary_key() -> None:
    document = json.loads((CONNECTORS / "scripted" / "manifest.json").read_text())
    document["streams"][0]["primary_key"] = ["id", "rev"]
    document["streams"][0]["schema"]["properties"]["rev"] = {"type": "integer"}
    document["streams"][0]["schema"]["required"] = ["id", "rev"]
    v = MessageValidator(parse_manifest(document, lambda name: None), ("items",))
    parsed = v.parse(record("items", ["a", 3], {"id": "a", "rev": 3}))
    assert isinstance(parsed, Record) and parsed.write.record_key == '["a","3"]'
    assert isinstance(v.parse(record("items", ["a", "3"], {"id": "a", "rev": 3})), Record)
    assert isinstance(v.parse(record("items", ["3", "a"], {"id": "a", "rev": 3})), Rejected)
    single = validator().parse(record("items", ["a"], {"id": "a"}))
    assert isinstance(single, Record) and single.write.record_key == "a"


def test_a_delete_needs_only_the_key_fields() -> None:
    parsed = validator().parse(record("items", "a", {"id": "a"}, op="delete"))
    assert isinstance(parsed, Record) and parsed.write.op == "delete"


def blob_validator() -> MessageValidator:
    """The scripted manifest with a `blob_ref` field (`image`) on items."""
    document = json.loads((CONNECTORS / "scripted" / "manifest.json").read_text())
    document["streams"][0]["schema"]["properties"]["image"] = {
        "type": "object", "x_pdpp_type": "blob_ref"
    }
    return MessageValidator(parse_manifest(document, lambda name: None), ("items",))


SHA = "ab" * 32
IMAGE = {"blob_id": f"blob_sha256_{SHA}", "mime_type": "image/png", "size_bytes": 3, "sha256": SHA}


def test_a_blob_message_names_a_file_with_its_hash_and_size() -> None:
    parsed = blob_validator().parse(
        {"type": "BLOB", "file": "blob-1.png", "sha256": SHA, "size_bytes": 3}
    )
    assert parsed == BlobFile("blob-1.png", SHA, 3)
    for bad in (
        {"file": "../escape", "sha256": SHA, "size_bytes": 3},
        {"file": "a/b", "sha256": SHA, "size_bytes": 3},
        {"file": ".hidden", "sha256": SHA, "size_bytes": 3},
        {"file": "ok", "sha256": SHA.upper(), "size_bytes": 3},
        {"file": "ok", "sha256": SHA, "size_bytes": -1},
        {"file": "ok", "sha256": SHA, "size_bytes": True},
    ):
        with pytest.raises(ProtocolViolation, match="BLOB"):
            blob_validator().parse({"type": "BLOB", **bad})
    with pytest.raises(ProtocolViolation, match="BLOB in an identify run"):
        validator(scope=(), identify_only=True).parse(
            {"type": "BLOB", "file": "x", "sha256": SHA, "size_bytes": 1}
        )


def test_a_blob_ref_that_is_not_an_object_breaks_the_schema() -> None:
    parsed = blob_validator().parse(record("items", "a", {"id": "a", "image": IMAGE["blob_id"]}))
    assert isinstance(parsed, Rejected) and parsed.rejection.reason == "schema_mismatch"


@pytest.mark.parametrize(
    "image",
    [
        {**IMAGE, "blob_id": "blob_1"},
        {**IMAGE, "sha256": "cd" * 32},
        {**IMAGE, "size_bytes": "3"},
        {**IMAGE, "mime_type": "png"},
        {**IMAGE, "mime_type": "text/html\r\nX-Injected: 1"},
        {**IMAGE, "fetch_url": "/v1/blobs/elsewhere"},
    ],
)
def test_a_malformed_blob_ref_rejects_its_record(image: Any) -> None:
    parsed = blob_validator().parse(record("items", "a", {"id": "a", "image": image}))
    assert isinstance(parsed, Rejected) and parsed.rejection.reason == "invalid_blob_ref"
    fine = blob_validator().parse(record("items", "a", {"id": "a", "image": IMAGE}))
    assert isinstance(fine, Record)


# ------------------------------------------------------------------------------------------
# a connector written in POSIX shell
# ------------------------------------------------------------------------------------------


def test_a_posix_shell_connector_speaks_the_protocol(owner: Any) -> None:
    summary = owner.add_connector("shell_notes")
    assert summary["connector_key"] == "shell-notes"
    assert summary["identity_claim"] == "notes_account"
    connected = owner.json("connect", "shell-notes", "--setting", "account=alice")
    assert connected["created"] is True and connected["status"] == "active"
    assert connected["identity"] == {"claim": "notes_account", "value": "alice"}
    cid = connected["connection_id"]
    assert cid.startswith("cin_")

    [first] = owner.json("run", cid)
    assert first["status"] == "succeeded" and first["collection_mode"] == "full_refresh"
    assert first["counts"]["new"] == 3 and first["counts"]["rejected"] == 0
    assert first["checkpoint"]["state_streams_committed"] == ["notes"]
    notes = owner.records(cid, "notes")
    assert sorted(notes) == ["note-1", "note-2", "note-3"]
    assert notes["note-2"] == {
        "id": "note-2", "title": "note 2 of alice", "body": "written by alice",
        "updated_at": "2024-01-02T10:00:00Z",
    }
    assert owner.state(cid, "shell-notes") == {"notes": {"updated_at": "2024-01-03T10:00:00Z"}}

    [second] = owner.json("run", cid)
    assert second["status"] == "succeeded" and second["collection_mode"] == "incremental"
    assert second["counts"]["duplicate"] == 3 and second["counts"]["new"] == 0


# ------------------------------------------------------------------------------------------
# malformed connectors, end to end: the run fails cleanly and the store stays consistent
# ------------------------------------------------------------------------------------------

ACCT = identity_msg("acct-1")
R1, R2, R3 = item("r1", title="one"), item("r2", title="two"), item("r3", title="three")
VIOLATIONS = {
    "bad_json": ([ACCT, R1, R2, R3, {"raw": "{not json"}, done(3)], "not a JSON message"),
    "unknown_type": ([ACCT, R1, R2, R3, {"type": "BOGUS"}, done(3)], "unknown message type"),
    "record_after_done": ([ACCT, R1, R2, R3, done(3), item("r4")], "RECORD after DONE"),
    "identity_after_record": (
        [ACCT, R1, R2, R3, identity_msg("acct-1")], "IDENTITY after a RECORD",
    ),
    "crash_mid_run": ([ACCT, R1, R2, R3, {"exit": 3}], "exited (code 3) before DONE"),
    "done_count_mismatch": ([ACCT, R1, R2, R3, done(7)], "DONE says 7 records"),
    "out_of_scope_stream": (
        [ACCT, R1, R2, R3, record("journal_entries", "x", {"entry_id": "x"}), done(4)],
        "not in this run's scope",
    ),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_a_protocol_violation_fails_the_run_and_keeps_the_store_consistent(
    scripted: Any, case: str
) -> None:
    steps, needle = VIOLATIONS[case]
    cid = scripted.connect_scripted("c")
    scripted.script("c", steps)
    [outcome] = scripted.runtime(batch_size=2).run_connection(cid)

    assert outcome.status == "failed"
    assert outcome.error["code"] == "protocol_violation" and needle in outcome.error["message"]
    assert outcome.checkpoint["commit_status"] == "not_committed"
    gap = outcome.known_gaps[-1]
    assert gap.kind == "run_failed" and gap.reason == "protocol_violation"
    assert gap.connector_key == "scripted" and gap.acquisition_method == "provider_api"
    # the first full batch (r1, r2) was committed before the violation; r3 was still pending
    assert sorted(scripted.records(cid, "items")) == ["r1", "r2"]
    provenance = scripted.home().store.record_provenance(cid, "items", "r1")
    assert [p.run_id for p in provenance] == [outcome.run_id]
    assert scripted.state(cid, "scripted") == {}
    [run] = scripted.runs(cid)
    assert run.status == "failed" and run.error["code"] == "protocol_violation"
    assert run.ended_at is not None

    # consistent: the lease is free and a good run of the same connection goes through
    scripted.script("c", [ACCT, R3, state_msg("items", "r3"), done(1)])
    [retry] = scripted.runtime().run_connection(cid)
    assert retry.status == "succeeded" and retry.collection_mode == "full_refresh"
    assert sorted(scripted.records(cid, "items")) == ["r1", "r2", "r3"]


def test_records_breaking_their_contract_are_rejected_and_counted(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    scripted.script(
        "c",
        [
            ACCT,
            R1,
            record("items", "r2", {"id": "other"}),
            record("items", "r3", {"id": "r3", "title": 5}),
            record("events", "e1", {"id": "e1", "at": "2024-01-01T00:00:00Z"}, op="delete"),
            R2,
            state_msg("items", "r2"),
            done(5),
        ],
    )
    [outcome] = scripted.runtime().run_connection(cid)
    assert outcome.status == "succeeded"
    counts = outcome.tally
    assert (counts.parsed, counts.accepted, counts.rejected, counts.new) == (5, 2, 3, 2)
    assert [
        (reason, count, [(e["stream"], e["key"]) for e in examples])
        for reason, (count, examples) in sorted(counts.rejections.items())
    ] == [
        ("delete_on_append_only", 1, [("events", "e1")]),
        ("key_mismatch", 1, [("items", "r2")]),
        ("schema_mismatch", 1, [("items", "r3")]),
    ]
    assert sorted(scripted.records(cid, "items")) == ["r1", "r2"]
    assert scripted.records(cid, "events") == {}
    assert scripted.state(cid, "scripted") == {"items": "r2"}
    [run] = scripted.runs(cid)
    assert run.counts["rejected"] == 3 and run.status == "succeeded"


def test_a_later_run_proving_another_identity_writes_nothing(scripted: Any) -> None:
    cid = scripted.connect_scripted("c", identity="acct-1")
    scripted.script("c", [ACCT, R1, state_msg("items", 1), done(1)])
    assert scripted.runtime().run_connection(cid)[0].status == "succeeded"

    scripted.script("c", [identity_msg("acct-2"), item("r1", title="hijacked"), R2, done(2)])
    [outcome] = scripted.runtime(batch_size=1).run_connection(cid)
    assert outcome.status == "failed" and outcome.error["code"] == "identity_mismatch"
    assert "nothing was written" in outcome.error["message"]
    assert scripted.records(cid, "items") == {"r1": {"id": "r1", "title": "one"}}
    assert scripted.state(cid, "scripted") == {"items": 1}
    connection = scripted.home().store.connection(cid)
    assert connection.identity.value == "acct-1"


def test_data_before_identity_on_an_identified_connection_is_a_violation(scripted: Any) -> None:
    cid = scripted.connect_scripted("c", identity="acct-1")
    scripted.script("c", [R1, done(1)])
    [outcome] = scripted.runtime().run_connection(cid)
    assert outcome.status == "failed" and "IDENTITY comes first" in outcome.error["message"]
    assert scripted.records(cid, "items") == {}


def test_done_failed_carries_the_connectors_error_and_recovery_hint(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    error = {
        "code": "token_expired",
        "message": "the token expired",
        "retryable": False,
        "recovery_hint": {"action": "reauthenticate"},
        "internal": "not for the owner",
    }
    scripted.script("c", [ACCT, R1, state_msg("items", "r1"), R2, done(2, "failed", error)])
    [outcome] = scripted.runtime().run_connection(cid)
    assert outcome.status == "failed"
    assert outcome.error == {
        "code": "token_expired",
        "message": "the token expired",
        "retryable": False,
        "recovery_hint": {"action": "reauthenticate"},
    }
    gap = outcome.known_gaps[-1]
    assert (gap.kind, gap.reason, gap.recovery_action) == (
        "run_failed", "token_expired", "reauthenticate",
    )
    # r1 was flushed by the STATE; r2 was pending and is discarded; no checkpoint
    assert sorted(scripted.records(cid, "items")) == ["r1"]
    assert scripted.state(cid, "scripted") == {}
    assert outcome.checkpoint == {
        "commit_status": "not_committed",
        "state_streams_staged": ["items"],
        "state_streams_committed": [],
    }


def test_done_cancelled_commits_no_state(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    scripted.script("c", [ACCT, R1, state_msg("items", "r1"), done(1, "cancelled")])
    [outcome] = scripted.runtime().run_connection(cid)
    assert outcome.status == "cancelled"
    assert scripted.state(cid, "scripted") == {}
    assert scripted.runs(cid)[0].status == "cancelled"
    assert sorted(scripted.records(cid, "items")) == ["r1"]


def test_skip_results_become_known_gaps_with_their_path(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    skip = {"type": "SKIP_RESULT", "stream": "events", "reason": "rate_limited",
            "message": "429 on /events", "recovery_hint": {"action": "retry_by_runtime"}}
    scripted.script("c", [ACCT, R1, skip, done(1)])
    [outcome] = scripted.runtime().run_connection(cid)
    assert outcome.status == "succeeded"
    [gap] = outcome.known_gaps
    assert gap.to_dict() == {
        "kind": "skip_result",
        "reason": "rate_limited",
        "message": "429 on /events",
        "stream": "events",
        "severity": "recoverable",
        "recovery_hint": {"action": "retry_by_runtime"},
        "connector_key": "scripted",
        "acquisition_method": "provider_api",
    }
    assert scripted.runs(cid)[0].known_gaps == [gap.to_dict()]
