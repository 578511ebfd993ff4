"""A live IMAP mailbox and exports of it: joined by the mail-account rule, one record per
message with both paths' evidence, folders and labels unioned, deletes kept non-destructive."""

from __future__ import annotations

from pathlib import Path

from ownstream.dev.mail_data import deliver, generate_mailbox, write_mbox, write_takeout
from ownstream.owner import ConnectionOperations
from tests.services.dovecot import MailUser

from .test_imap import connect, records, subject_of, uid_of


def test_an_export_of_the_same_account_joins_by_rule_and_shares_records(
    ops: ConnectionOperations, mail_user: MailUser, tmp_path: Path
) -> None:
    box = generate_mailbox(mail_user.address, seed=21, count=30, huge_attachment_bytes=2**20)
    with mail_user.client() as client:
        deliver(client, box.messages)
    connection_id = connect(ops, mail_user)
    [first] = ops.run(connection_id)
    assert first.status == "succeeded"
    live = records(ops, connection_id)

    receipt = ops.import_artifact("mbox", write_takeout(box, tmp_path / "takeout.zip")).receipt
    assert receipt.connection_id == connection_id
    paths = {(p.connector_key, p.rule_id) for p in ops.home.store.connection(connection_id).paths}
    assert paths == {("imap", None), ("mbox", "mail-account")}
    joined = records(ops, connection_id)
    assert set(joined) == set(live)  # every shared message is one record
    for key, data in joined.items():
        assert data["folders"] == live[key]["folders"]  # Takeout has labels, not folders
        assert data["labels"] and data["gmail_thread_id"]
        same = {
            f: v for f, v in data.items() if f not in ("labels", "gmail_thread_id", "date_source")
        }
        assert same == {f: v for f, v in live[key].items() if f != "date_source"}
    evidence = ops.home.store.record_provenance(connection_id, "messages", next(iter(joined)))
    assert {e.acquisition_method for e in evidence} == {"provider_api", "owner_artifact"}

    # IMAP's own evidence still moves and deletes; the export's keeps what it saw.
    moved, deleted = box.folder("INBOX")[0], box.folder("INBOX")[1]
    with mail_user.client() as client:
        client.move([uid_of(client, "INBOX", moved)], "Archive")
        client.delete_messages([uid_of(client, "INBOX", deleted)])
        client.expunge()
    [after] = ops.run(connection_id)
    assert after.tally.deleted == 0 and after.tally.skipped == 1
    now = records(ops, connection_id)
    assert len(now) == len(joined)
    moved_key = next(k for k, v in joined.items() if v.get("subject") == subject_of(moved))
    assert now[moved_key]["folders"] == ["INBOX", "Archive"]  # a union across paths


def test_an_export_of_another_address_stays_separate(
    ops: ConnectionOperations, mail_user: MailUser, tmp_path: Path
) -> None:
    with mail_user.client() as client:
        deliver(
            client, generate_mailbox(mail_user.address, seed=1, count=5, special=False).messages
        )
    connection_id = connect(ops, mail_user)
    other = generate_mailbox("old.address@example.net", seed=2, count=8, special=False)
    receipt = ops.import_artifact("mbox", write_mbox(other.messages, tmp_path / "Old.mbox")).receipt
    assert receipt.connection_id != connection_id
    separate = ops.home.store.connection(receipt.connection_id)
    assert separate.identity is not None and separate.identity.value == "old.address@example.net"
    assert len(records(ops, receipt.connection_id)) == 8
