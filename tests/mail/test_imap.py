"""The IMAP connector against a real Dovecot: first sync, incremental runs, flags, moves,
deletes, a UIDVALIDITY reset, and the ways a connection can be refused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import message_from_bytes, policy
from typing import Any

import pytest
from imapclient import IMAPClient

from ownstream.connectors.imap import connector
from ownstream.dev.mail_data import Mailbox, MailMessage, add_mail, deliver, generate_mailbox
from ownstream.errors import RunFailed
from ownstream.model import ReadScope
from ownstream.owner import ConnectionOperations
from ownstream.runtime.sdk import drive
from tests.services import free_port
from tests.services.dovecot import MailUser

STREAMS = {"streams": [{"name": "messages"}, {"name": "mail_folders"}]}


def connect(ops: ConnectionOperations, user: MailUser, **settings: str) -> str:
    result = ops.connect(
        "imap", secrets={"password": user.password}, settings=user.settings(**settings)
    )
    return result.connection.connection_id


def records(
    ops: ConnectionOperations, connection_id: str, stream: str = "messages"
) -> dict[str, Any]:
    definition = ops.home.catalog.definition(stream)
    scope = ReadScope(definition, (connection_id,), definition.fields)
    page, _ = ops.home.store.records_page(scope, limit=10_000)
    return {r.record_key: r.data for r in page}


def delivered(user: MailUser, messages: list[MailMessage]) -> None:
    with user.client() as client:
        deliver(client, messages)


def emitted(user: MailUser, state: Any) -> list[dict[str, Any]]:
    """What the connector sends for one run from `state`, straight from the generator."""
    env = {
        "IMAP_HOST": user.server.host,
        "IMAP_PORT": str(user.server.port),
        "IMAP_USERNAME": user.address,
        "IMAP_PASSWORD": user.password,
        "IMAP_CA_FILE": str(user.server.certificate),
    }
    start = {"run_id": "run_t", "collection_mode": "incremental", "scope": STREAMS}
    messages = list(drive(connector.collect, {**start, "state": {"messages": state}}, env))
    assert messages[-1]["status"] == "succeeded", messages[-1]
    return [m for m in messages if m["type"] == "RECORD" and m["stream"] == "messages"]


def uid_of(client: Any, folder: str, message: MailMessage) -> int:
    client.select_folder(folder)
    message_id = str(message_from_bytes(message.raw, policy=policy.default)["message-id"])
    (uid,) = client.search(["HEADER", "Message-ID", message_id])
    return int(uid)


def subject_of(message: MailMessage) -> str:
    return str(message_from_bytes(message.raw, policy=policy.default)["subject"])


def test_first_sync_collects_every_shape_of_message(
    ops: ConnectionOperations, mail_user: MailUser
) -> None:
    box = generate_mailbox(mail_user.address, seed=5, count=40, huge_attachment_bytes=6 * 2**20)
    delivered(mail_user, box.messages)
    connection_id = connect(ops, mail_user)
    connection = ops.home.store.connection(connection_id)
    assert connection.identity is not None
    assert (connection.identity.claim, connection.identity.value) == (
        "mail_account",
        mail_user.address,
    )

    [run] = ops.run(connection_id)
    assert run.status == "succeeded", run.error
    assert run.collection_mode == "full_refresh"
    found = records(ops, connection_id)
    readable = [m for m in box.messages if m.kind != "malformed"]
    assert len(found) == len(readable)  # one record per message, however many folders
    # the malformed message is rejected with its reason and where it was; the run goes on
    assert run.tally.rejected == 1 and list(run.tally.rejections) == ["not_a_message"]
    assert run.known_gaps == []

    by_subject = {r.get("subject"): r for r in found.values()}
    multi = [m for m in box.messages if len(m.folders) > 1]
    assert multi
    for message in multi:
        assert by_subject[subject_of(message)]["folders"] == sorted(message.folders)
    assert by_subject["Grüße aus München ☕"]["from"] == {
        "name": "José Muñoz",
        "address": "jose@example.net",
    }
    assert (
        by_subject["Greetings in koi8-r"]["body_text"] == "Привет из Санкт-Петербурга, до встречи."
    )
    assert by_subject["Greetings in shift_jis"]["body_text"].startswith("東京から")
    html = by_subject["Plain & HTML"]
    assert html["html_text"] == "Tickets are attached.\nSee you at the harbour & the café."
    assert "track()" not in html["html_text"] and html["body_text"].startswith("Tickets are")
    assert by_subject["No id here"]["message_id"].startswith("nomsgid:")
    undated = next(m for m in box.messages if m.kind == "no_date")
    assert by_subject["Undated"]["date_source"] == "internaldate"
    assert by_subject["Undated"]["date"] == undated.internal_date.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    first, second = by_subject["Newsletter, first"], by_subject["Newsletter, second"]
    assert second["message_id"] == f"{first['message_id']}#{second['message_id'].split('#')[1]}"
    tolerated = by_subject["=?utf-8?q?unterminated"]  # broken encoded word, kept as written
    assert tolerated["body_text"] == "odd but readable"  # an unknown charset read as UTF-8
    assert tolerated["attachments"][0]["filename"] == "bad.bin"  # undecodable base64 counted

    huge = next(m for m in box.messages if m.kind == "huge_attachment")
    video = next(
        p
        for p in message_from_bytes(huge.raw, policy=policy.default).walk()
        if p.get_content_type() == "video/mp4"
    )
    content = video.get_payload(decode=True)
    assert isinstance(content, bytes)
    [attachment] = by_subject["The raw footage"]["attachments"]
    assert attachment["sha256"] == hashlib.sha256(content).hexdigest()
    assert attachment["size"] == len(content)
    assert attachment["blob_ref"] == {  # the content is stored, named by its hash
        "blob_id": f"blob_sha256_{attachment['sha256']}",
        "mime_type": "video/mp4",
        "size_bytes": len(content),
        "sha256": attachment["sha256"],
    }
    with ops.home.blobs.open(attachment["blob_ref"]["blob_id"]) as stored:
        assert stored.read() == content

    folders = records(ops, connection_id, "mail_folders")
    counts = {data["name"]: data["message_count"] for data in folders.values()}
    assert counts == {f: len(box.folder(f)) for f in counts} and "Über" in counts


@dataclass
class Synced:
    ops: ConnectionOperations
    user: MailUser
    box: Mailbox
    connection_id: str

    def run(self) -> Any:
        [run] = self.ops.run(self.connection_id)
        assert run.status == "succeeded", run.error
        return run

    @property
    def state(self) -> Any:
        return self.ops.home.store.connection_state(self.connection_id, "imap")["messages"]

    def records(self) -> dict[str, Any]:
        return records(self.ops, self.connection_id)


@pytest.fixture
def synced(ops: ConnectionOperations, mail_user: MailUser) -> Synced:
    """A small mailbox, delivered and collected once."""
    box = generate_mailbox(mail_user.address, seed=8, count=25, special=False)
    delivered(mail_user, box.messages)
    done = Synced(ops, mail_user, box, connect(ops, mail_user))
    done.run()
    return done


def test_an_incremental_run_fetches_only_new_mail(synced: Synced) -> None:
    before = synced.records()
    new = add_mail(synced.box, 4, seed=99)
    delivered(synced.user, new)
    assert len(emitted(synced.user, synced.state)) == 4
    run = synced.run()
    assert run.collection_mode == "incremental"
    after = synced.records()
    assert len(after) == len(before) + 4
    assert {k: after[k] for k in before} == before


def test_a_flag_change_updates_the_record(synced: Synced) -> None:
    message = synced.box.folder("INBOX")[0]
    with synced.user.client() as client:
        uid = uid_of(client, "INBOX", message)
        client.add_flags([uid], ["\\Flagged", "$Important"])
    [changed] = emitted(synced.user, synced.state)
    assert "\\Flagged" in changed["data"]["flags"] and "$Important" in changed["data"]["flags"]
    synced.run()
    assert synced.records()[changed["key"]]["flags"] == changed["data"]["flags"]


def test_a_flag_change_is_found_without_condstore(
    synced: Synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(IMAPClient, "has_capability", lambda self, name: False)
    message = synced.box.folder("INBOX")[1]
    with synced.user.client() as client:
        client.add_flags([uid_of(client, "INBOX", message)], ["\\Answered"])
    [changed] = emitted(synced.user, synced.state)
    assert "\\Answered" in changed["data"]["flags"]


def test_a_moved_message_keeps_its_record_and_changes_folders(synced: Synced) -> None:
    message = synced.box.folder("INBOX")[2]
    with synced.user.client() as client:
        uid = uid_of(client, "INBOX", message)
        client.move([uid], "Archive")
    [moved] = emitted(synced.user, synced.state)
    assert moved["data"]["folders"] == ["Archive"]
    before = synced.records()
    synced.run()
    after = synced.records()
    assert set(after) == set(before) and after[moved["key"]]["folders"] == ["Archive"]


def test_a_message_gone_from_every_folder_is_deleted(synced: Synced) -> None:
    message = synced.box.folder("INBOX")[3]
    with synced.user.client() as client:
        uid = uid_of(client, "INBOX", message)
        client.delete_messages([uid])
        client.expunge()
    [gone] = emitted(synced.user, synced.state)
    assert gone["op"] == "delete"
    run = synced.run()
    assert run.tally.deleted == 1
    assert gone["key"] not in synced.records()


def test_a_uidvalidity_reset_rescans_without_duplicates(synced: Synced) -> None:
    archived = synced.box.folder("Archive")
    assert archived
    before = synced.records()
    validity = synced.state
    with synced.user.client() as client:
        client.delete_folder("Archive")
        client.create_folder("Archive")
        deliver(client, archived)  # the same messages, new UIDs under a new UIDVALIDITY
        new_validity = client.select_folder("Archive")[b"UIDVALIDITY"]
    assert emitted(synced.user, validity) == []
    run = synced.run()
    assert run.tally.new == 0 and synced.records() == before
    assert connector.load_state(synced.state)["Archive"].uidvalidity == new_validity


def test_only_the_chosen_folders_are_collected(
    ops: ConnectionOperations, mail_user: MailUser
) -> None:
    box = generate_mailbox(mail_user.address, seed=3, count=20, special=False)
    delivered(mail_user, box.messages)
    connection_id = connect(ops, mail_user, folders="Sent, Nowhere")
    [run] = ops.run(connection_id)
    assert {r["folders"][0] for r in records(ops, connection_id).values()} == {"Sent"}
    assert [g.reason for g in run.known_gaps] == ["folder_not_found"]


def test_starttls(ops: ConnectionOperations, mail_user: MailUser) -> None:
    delivered(
        mail_user, generate_mailbox(mail_user.address, seed=4, count=3, special=False).messages
    )
    settings = {"port": str(mail_user.server.starttls_port), "tls": "starttls"}
    connection_id = connect(ops, mail_user, **settings)
    [run] = ops.run(connection_id)
    assert run.status == "succeeded" and len(records(ops, connection_id)) == 3


def test_a_wrong_password_fails_clearly_with_a_refresh_hint(
    ops: ConnectionOperations, mail_user: MailUser
) -> None:
    with pytest.raises(RunFailed) as refused:
        ops.connect("imap", secrets={"password": "wrong"}, settings=mail_user.settings())
    error = refused.value.extra["connector_error"]
    assert error["code"] == "credentials_invalid"
    assert error["recovery_hint"] == {"action": "refresh_credentials"}
    assert "password" in error["message"] and mail_user.address in error["message"]
    assert "wrong" not in error["message"]
    assert ops.home.store.connections() == []

    connection_id = connect(ops, mail_user)
    mail_user.server.set_password(mail_user.address, "changed-at-the-provider")
    [run] = ops.run(connection_id)
    assert run.status == "failed" and run.error is not None
    assert run.error["code"] == "credentials_invalid"
    assert any(g.recovery_action == "refresh_credentials" for g in run.known_gaps)
    assert ops.health(ops.home.store.connection(connection_id)).state == "blocked"


def test_an_untrusted_certificate_is_refused(
    ops: ConnectionOperations, mail_user: MailUser
) -> None:
    settings = {k: v for k, v in mail_user.settings().items() if k != "ca_file"}
    with pytest.raises(RunFailed) as refused:
        ops.connect("imap", secrets={"password": mail_user.password}, settings=settings)
    error = refused.value.extra["connector_error"]
    assert error["code"] == "tls_certificate_untrusted"
    assert "ca_file" in error["message"]


def test_an_unreachable_server_is_retryable(ops: ConnectionOperations, mail_user: MailUser) -> None:
    with pytest.raises(RunFailed) as refused:
        ops.connect(
            "imap",
            secrets={"password": mail_user.password},
            settings=mail_user.settings(port=str(free_port())),
        )
    error = refused.value.extra["connector_error"]
    assert error["code"] == "upstream_unavailable" and error["retryable"] is True
