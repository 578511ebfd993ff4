"""The owner's delete of one record under the multi-path rule, with real runs and imports: a
path cannot remove what another path evidences, the owner can; the deletion holds against
paths that see the same record again, and gives way when the source changes it."""

from __future__ import annotations

from typing import Any

from ownstream.owner import WriteOperations
from tests.runtime.messages import done, journal_identity, record
from tests.runtime.test_imports import E1, E2, api_connection


def removal(key: str) -> dict[str, Any]:
    return record("journal_entries", key, {"entry_id": key}, op="delete")


def run_api(journal: Any, cid: str, *entries: dict[str, Any]) -> Any:
    steps = [journal_identity("u1"), *entries, done(len(entries))]
    journal.script("api", steps, identity="u1")
    [outcome] = journal.runtime().run_connection(cid)
    assert outcome.status == "succeeded", outcome.error
    return outcome


def test_the_owners_delete_overrides_every_path_and_holds_until_the_source_changes(
    journal: Any,
) -> None:
    cid = api_connection(journal, E1, E2, user="u1")
    journal.json("import", "journal-export",
                 journal.import_file("export.jsonl", [E1], header={"user": "u1"}))
    # the API path alone cannot delete e1: the export evidences it too
    gone = run_api(journal, cid, removal("e1"), removal("e2"))
    assert (gone.tally.skipped, gone.tally.deleted) == (1, 1)
    assert set(journal.records(cid, "journal_entries")) == {"e1"}

    result = WriteOperations(journal.home()).delete_record("journal_entries", "e1")
    assert result["connection_id"] == cid and result["deleted"] is True
    assert journal.records(cid, "journal_entries") == {}
    evidence = journal.home().store.record_provenance(cid, "journal_entries", "e1")
    assert [e.connector_key for e in evidence] == ["journal-api", "journal-export", "owner"]

    # the same record again, from either path: it stays deleted (counted as skipped)
    again = run_api(journal, cid, record("journal_entries", "e1", dict(E1)))
    assert (again.tally.skipped, again.tally.new) == (1, 0)
    reimported = journal.json("import", "journal-export", journal.import_file(
        "export-again.jsonl", [E1], header={"user": "u1", "exported_at": "later"}))
    assert reimported["counts"]["skipped"] == 1
    assert journal.records(cid, "journal_entries") == {}

    # the source changed it: the record comes back, from that path alone
    changed = run_api(
        journal, cid, record("journal_entries", "e1", {**E1, "text": "rewritten"})
    )
    assert changed.tally.new == 1
    assert journal.records(cid, "journal_entries")["e1"]["text"] == "rewritten"
    removed = run_api(journal, cid, removal("e1"))  # its evidence alone: removable
    assert removed.tally.deleted == 1
