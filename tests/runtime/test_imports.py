"""Imports of owner artifacts: all-or-nothing, receipts, duplicates, and which connection.

The `journal-export` test connector (stdlib Python) reads a JSON-lines export; `journal-api`
(the scripted connector under another manifest) is the API path of the same `journal` source;
the `journal-account` rule links them by `journal_user`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ownstream.errors import IdentityMismatch, InvalidRequest, RunFailed
from tests.runtime.messages import done, entry, journal_identity

E1 = {"entry_id": "e1", "written_at": "2024-01-03T08:00:00Z", "text": "first", "words": 1}
E2 = {"entry_id": "e2", "written_at": "2024-01-01T21:30:00+02:00", "text": "second"}
E3 = {"entry_id": "e3", "written_at": "2024-01-09T08:00:00Z", "text": "third", "mood": "ok"}


def table_counts(owner: Any) -> dict[str, int]:
    with owner.db() as db:
        return {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("connections", "connection_paths", "runs", "acquisition_batches",
                          "records", "record_changes", "record_evidence", "coverage",
                          "run_leases")
        }


def api_connection(owner: Any, *entries: dict[str, Any], user: str = "u1") -> str:
    """A journal-api connection proving `user`, after one run that collected `entries`."""
    records = [entry(e["entry_id"], **{k: v for k, v in e.items() if k != "entry_id"})
               for e in entries]
    steps = [journal_identity(user), *records, done(len(entries))]
    cid: str = owner.connect_scripted("api", steps, identity=user, connector="journal-api")
    [outcome] = owner.runtime().run_connection(cid)
    assert outcome.status == "succeeded"
    return cid


# ------------------------------------------------------------------------------------------
# receipts and duplicates
# ------------------------------------------------------------------------------------------


def test_an_import_commits_one_batch_with_its_receipt(journal: Any) -> None:
    path = journal.import_file(
        "journal-2024.jsonl",
        [E1, E2, {"_skip": "attachments/ is not modelled"}, E3],
        header={"user": "u1", "exported_at": "2024-02-01T00:00:00Z"},
    )
    result = journal.json("import", "journal-export", path)
    assert result["status"] == "committed"
    assert result["batch_id"].startswith("ab_") and result["run_id"].startswith("run_")
    assert result["connection_id"].startswith("cin_")
    assert result["acquisition_method"] == "owner_artifact"
    assert result["parser_version"] == "2.1.0"
    assert result["artifact"] == {
        "name": "journal-2024.jsonl",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "size_bytes": path.stat().st_size,
    }
    assert result["counts"] == {
        "parsed": 3, "accepted": 3, "new": 3, "updated": 0, "duplicate": 0, "deleted": 0,
        "skipped": 0, "rejected": 0, "failed": 0, "merged_with_existing": 0, "rejections": [],
        "omitted": {},
    }
    assert result["connection"] == {
        "action": "created",
        "reason": "no connection of this account yet: a new connection",
        "evidence": {"claim": "journal_user", "value": "u1"},
    }
    assert result["window"] == {
        "start": "2024-01-01T19:30:00.000Z", "end": "2024-01-09T08:00:00.000Z",
    }
    assert result["warnings"] == ["attachments/ is not modelled"]
    [gap] = result["known_gaps"]
    assert gap["acquisition_method"] == "owner_artifact" and gap["severity"] == "informational"

    cid = result["connection_id"]
    connection = journal.json("connections", "show", cid)
    assert connection["identity"]["value"] == "u1"
    assert connection["identity"]["proven_by"] == "journal-export"
    assert [(p["connector_key"], p["acquisition_method"]) for p in
            connection["acquisition_paths"]] == [("journal-export", "owner_artifact")]
    assert [b["batch_id"] for b in connection["import_batches"]] == [result["batch_id"]]
    records = journal.records(cid, "journal_entries")
    assert records["e3"] == E3 and sorted(records) == ["e1", "e2", "e3"]
    history = journal.json("runs", "list", "--connection", cid)
    kinds = sorted((h["kind"], h["acquisition_method"]) for h in history)
    assert kinds == [("import_batch", "owner_artifact"), ("run", "owner_artifact")]
    [run] = [h for h in history if h["kind"] == "run"]
    assert run["batch_id"] == result["batch_id"] and run["trigger"] == "import"
    assert run["status"] == "succeeded"


def test_rejected_lines_count_as_failed_and_the_rest_commits(journal: Any) -> None:
    bad = {"entry_id": "e9", "written_at": "2024-01-01T00:00:00Z", "words": "many"}
    path = journal.import_file("x.jsonl", [E1, bad, E3], header={"user": "u1"})
    result = journal.json("import", "journal-export", path)
    assert result["status"] == "committed"
    assert result["counts"]["parsed"] == 3 and result["counts"]["failed"] == 1
    assert result["counts"]["accepted"] == 2
    [rejection] = result["counts"]["rejections"]
    assert rejection["reason"] == "schema_mismatch" and rejection["count"] == 1
    [example] = rejection["examples"]
    assert example["key"] == "e9" and example["stream"] == "journal_entries" and example["detail"]
    assert sorted(journal.records(result["connection_id"], "journal_entries")) == ["e1", "e3"]


def test_the_same_bytes_again_are_a_duplicate_of_the_first_batch(journal: Any) -> None:
    first_path = journal.import_file("a.jsonl", [E1, E2], header={"user": "u1"})
    first = journal.json("import", "journal-export", first_path)
    copy = journal.scratch / "renamed-copy.jsonl"
    copy.write_bytes(first_path.read_bytes())
    before = table_counts(journal)
    again = journal.json("import", "journal-export", copy)
    assert again["status"] == "duplicate"
    assert again["batch_id"] == first["batch_id"]
    assert again["connection_id"] == first["connection_id"]
    assert again["counts"] == first["counts"]
    assert again["artifact"]["name"] == "a.jsonl"  # the receipt of the first batch
    assert table_counts(journal) == before
    text = journal.cli("import", "journal-export", copy).stdout
    assert text.startswith(f"duplicate: batch {first['batch_id']}")


# ------------------------------------------------------------------------------------------
# all or nothing
# ------------------------------------------------------------------------------------------

FAILURES = {
    "corrupt": ([E1, E2, "{not json", E3], {"user": "u1"}, "line 4 of bad.jsonl is not JSON"),
    "foreign": ([E1, E2], None, "bad.jsonl is not a journal export"),
    "crash": ([E1, E2, {"_crash": 3}, E3], {"user": "u1"}, "exited (code 3) before DONE"),
}


@pytest.mark.parametrize("case", ["corrupt", "foreign", "crash"])
def test_a_failed_import_stores_nothing_not_even_a_connection(journal: Any, case: str) -> None:
    lines, header, needle = FAILURES[case]
    path = journal.import_file("bad.jsonl", lines, header=header)
    empty = table_counts(journal)
    with pytest.raises(RunFailed) as caught:
        # batch_size=1: records were flushed inside the import before it failed
        journal.runtime(batch_size=1).import_artifact("journal-export", path)
    assert caught.value.message.startswith("import failed, nothing was stored: ")
    assert needle in caught.value.message
    assert table_counts(journal) == empty
    assert journal.json("connections", "list") == []

    error = journal.error("import", "journal-export", path)
    assert error["code"] == "run_failed" and needle in error["message"]
    assert error["known_gaps"][-1]["acquisition_method"] == "owner_artifact"
    assert table_counts(journal) == empty

    # the failure did not poison the artifact: a fixed file imports, the same bad one still fails
    fixed = journal.import_file("fixed.jsonl", [E1, E2, E3], header={"user": "u1"})
    assert journal.json("import", "journal-export", fixed)["status"] == "committed"
    assert journal.error("import", "journal-export", path)["code"] == "run_failed"


def test_a_corrupt_import_reports_the_connectors_error_code(journal: Any) -> None:
    path = journal.import_file("bad.jsonl", [E1, "{nope"], header={"user": "u1"})
    error = journal.error("import", "journal-export", path)
    assert error["connector_error"]["code"] == "corrupt_artifact"
    assert error["connector_error"]["recovery_hint"] == {"action": "provide_valid_artifact"}


def test_a_large_import_streams_through_batches(journal: Any) -> None:
    entries = [{"entry_id": f"e{i:05d}", "written_at": f"2023-{1 + i % 12:02d}-01T00:00:00Z",
                "text": f"entry {i}"} for i in range(3000)]
    path = journal.import_file("big.jsonl", entries, header={"user": "u1"})
    result = journal.runtime(batch_size=250).import_artifact("journal-export", path)
    assert result.status == "committed" and result.receipt.counts["new"] == 3000
    assert (result.receipt.window_start, result.receipt.window_end) == (
        "2023-01-01T00:00:00.000Z", "2023-12-01T00:00:00.000Z",
    )
    stats = journal.home().store.stream_counts([result.receipt.connection_id])
    assert [(s.stream, s.record_count) for s in stats] == [("journal_entries", 3000)]


def test_bad_import_requests_are_typed_errors(journal: Any) -> None:
    path = journal.import_file("x.jsonl", [E1], header={"user": "u1"})
    with pytest.raises(InvalidRequest, match="does not import archives"):
        journal.runtime().import_artifact("journal-api", path)
    error = journal.error("import", "journal-export", journal.scratch / "missing.jsonl")
    assert error["code"] == "invalid_artifact"
    assert journal.error("import", "nope", path)["code"] == "unknown_connector"
    error = journal.error("import", "journal-export", path, "--connection", "cin_nope")
    assert error["code"] == "connection_not_found"
    assert table_counts(journal)["connections"] == 0


# ------------------------------------------------------------------------------------------
# which connection an import writes through
# ------------------------------------------------------------------------------------------


def test_an_import_without_evidence_gets_its_own_connection_never_merged(journal: Any) -> None:
    api = api_connection(journal, E1, user="u1")
    first = journal.json("import", "journal-export",
                         journal.import_file("a.jsonl", [E1], header={}))
    second = journal.json("import", "journal-export",
                          journal.import_file("b.jsonl", [E2], header={}))
    ids = {api, first["connection_id"], second["connection_id"]}
    assert len(ids) == 3
    shown = journal.json("connections", "show", first["connection_id"])
    assert shown["identity"] is None and shown["display_name_is_placeholder"] is True
    assert shown["acquisition_paths"][0]["proved_identity"] is False
    # the API connection's record e1 and the import's e1 are two records
    assert journal.records(api, "journal_entries")["e1"]["text"] == "first"
    assert journal.records(first["connection_id"], "journal_entries")["e1"] == E1

    # the owner may file another archive of the same path into an existing connection
    third = journal.json("import", "journal-export",
                         journal.import_file("c.jsonl", [E3], header={}),
                         "--connection", first["connection_id"])
    assert third["status"] == "committed" and third["connection_id"] == first["connection_id"]
    assert sorted(journal.records(first["connection_id"], "journal_entries")) == ["e1", "e3"]
    assert len(journal.json("connections", "list")) == 3


def test_equal_identity_from_the_same_connector_is_one_connection(journal: Any) -> None:
    first = journal.json("import", "journal-export",
                         journal.import_file("a.jsonl", [E1], header={"user": "u1"}))
    second = journal.json("import", "journal-export",
                          journal.import_file("b.jsonl", [E2], header={"user": "u1"}))
    other = journal.json("import", "journal-export",
                         journal.import_file("c.jsonl", [E3], header={"user": "u2"}))
    assert second["connection_id"] == first["connection_id"] != other["connection_id"]
    shown = journal.json("connections", "show", first["connection_id"])
    assert len(shown["acquisition_paths"]) == 1
    assert sorted(b["batch_id"] for b in shown["import_batches"]) == sorted(
        [first["batch_id"], second["batch_id"]]
    )


def test_api_and_import_with_proven_equal_identity_are_one_connection(journal: Any) -> None:
    cid = api_connection(journal, E1, E2, user="u1")
    imported = journal.json(
        "import", "journal-export",
        journal.import_file("export.jsonl", [E2, E3], header={"user": "u1"}),
    )
    assert imported["connection_id"] == cid
    assert len(journal.json("connections", "list")) == 1

    shown = journal.json("connections", "show", cid)
    paths = {p["connector_key"]: p for p in shown["acquisition_paths"]}
    assert paths["journal-api"]["acquisition_method"] == "provider_api"
    assert paths["journal-export"]["acquisition_method"] == "owner_artifact"
    assert paths["journal-export"]["proved_identity"] is True
    assert paths["journal-export"]["rule_id"] == "journal-account"
    assert shown["identity"]["proven_by"] == "journal-api"

    history = journal.json("runs", "list", "--connection", cid)
    methods = sorted((h["kind"], h["connector_key"], h["acquisition_method"]) for h in history)
    assert methods == [
        ("import_batch", "journal-export", "owner_artifact"),
        ("run", "journal-api", "provider_api"),
        ("run", "journal-export", "owner_artifact"),
    ]
    coverage = {c["connector_key"]: c for c in shown["coverage"]}
    assert coverage["journal-api"]["acquisition_method"] == "provider_api"
    assert coverage["journal-api"]["records_seen"] == 2
    assert coverage["journal-api"]["last_batch_id"] is None
    assert coverage["journal-export"]["last_batch_id"] == imported["batch_id"]
    assert coverage["journal-export"]["records_seen"] == 2
    assert (coverage["journal-export"]["window_start"], coverage["journal-export"]["window_end"]) \
        == ("2024-01-01T19:30:00.000Z", "2024-01-09T08:00:00.000Z")
    assert {c["stream"] for c in shown["coverage"]} == {"journal_entries"}
    assert sorted(journal.records(cid, "journal_entries")) == ["e1", "e2", "e3"]

    # a run of the connection runs its API path only; the import path is not runnable
    journal.script("api", [journal_identity("u1"), done(0)], identity="u1")
    outcomes = journal.json("run", cid)
    assert [(o["connector_key"], o["status"]) for o in outcomes] == [("journal-api", "succeeded")]
    error = journal.error("run", cid, "--connector", "journal-export")
    assert error["code"] == "connector_not_runnable"
    error = journal.error("run", cid, "--connector", "shell-notes")
    assert error["code"] == "connector_not_runnable" and "no shell-notes path" in error["message"]


def test_equal_identity_without_a_rule_is_two_connections(owner: Any) -> None:
    owner.add_journal(rule=False)
    cid = api_connection(owner, E1, user="u1")
    imported = owner.json(
        "import", "journal-export",
        owner.import_file("export.jsonl", [E1], header={"user": "u1"}),
    )
    assert imported["status"] == "committed" and imported["connection_id"] != cid
    assert owner.records(cid, "journal_entries")["e1"]["text"] == "first"
    assert len(owner.json("connections", "list")) == 2


def test_without_a_rule_different_claims_stay_apart(owner: Any) -> None:
    """The reachable half of the rule above: same source, no rule, no merge."""
    owner.add_journal(rule=False)
    cid = api_connection(owner, E1, user="u1")
    imported = owner.json(
        "import", "journal-export", owner.import_file("e.jsonl", [E1], header={})
    )
    assert imported["connection_id"] != cid
    error = owner.error("import", "journal-export",
                        owner.import_file("f.jsonl", [E2], header={"user": "u1"}),
                        "--connection", cid)
    assert error["code"] == "identity_unproven" and "no identity rule links" in error["message"]
    assert sorted(owner.records(cid, "journal_entries")) == ["e1"]


# ------------------------------------------------------------------------------------------
# an explicit --connection target
# ------------------------------------------------------------------------------------------


def test_an_import_into_a_connection_proven_under_the_rule_is_allowed(journal: Any) -> None:
    cid = api_connection(journal, E1, user="u1")
    path = journal.import_file("a.jsonl", [E2], header={"user": "u1"})
    result = journal.json("import", "journal-export", path, "--connection", cid)
    assert result["status"] == "committed" and result["connection_id"] == cid
    assert sorted(journal.records(cid, "journal_entries")) == ["e1", "e2"]


def test_an_import_proving_another_identity_is_refused_with_nothing_written(
    journal: Any,
) -> None:
    cid = api_connection(journal, E1, user="u1")
    before = table_counts(journal)
    path = journal.import_file("other.jsonl", [E2, E3], header={"user": "u2"})
    with pytest.raises(IdentityMismatch) as caught:
        journal.runtime(batch_size=1).import_artifact("journal-export", path, connection_id=cid)
    assert caught.value.extra["connection_id"] == cid
    error = journal.error("import", "journal-export", path, "--connection", cid)
    assert error["code"] == "identity_mismatch"
    assert table_counts(journal) == before
    assert sorted(journal.records(cid, "journal_entries")) == ["e1"]
    # without --connection the same file is simply another account
    other = journal.json("import", "journal-export", path)
    assert other["status"] == "committed" and other["connection_id"] != cid


def test_an_import_proving_nothing_into_another_paths_connection_is_unproven(
    journal: Any,
) -> None:
    cid = api_connection(journal, E1, user="u1")
    before = table_counts(journal)
    path = journal.import_file("anon.jsonl", [E2], header={})
    error = journal.error("import", "journal-export", path, "--connection", cid)
    assert error["code"] == "identity_unproven" and "it proved no identity" in error["message"]
    assert table_counts(journal) == before


def test_import_settings_defaults_reach_the_connector(journal: Any) -> None:
    manifest = journal.connectors / "journal_export" / "manifest.json"
    manifest.write_text(manifest.read_text().replace(
        '"streams"', '"setup": {"settings": [{"name": "tz", "env": "JOURNAL_TZ", '
        '"default": "Europe/Oslo"}]}, "streams"'))
    journal.add_connector("journal_export")
    events: list[dict[str, Any]] = []
    runtime = journal.runtime()
    runtime.on_progress = events.append
    path = journal.import_file("a.jsonl", [E1], header={"user": "u1"})
    assert runtime.import_artifact("journal-export", path).status == "committed"
    assert [e["message"] for e in events] == ["reading a.jsonl (tz Europe/Oslo)"]
