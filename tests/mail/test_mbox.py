"""The mbox importer: plain mbox, Google Takeout and Thunderbird exports, broken input, identity."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ownstream.connectors.mbox import connector
from ownstream.connectors.mbox.reader import read_messages
from ownstream.dev.mail_data import (
    MailMessage,
    generate_mailbox,
    write_mbox,
    write_takeout,
    write_thunderbird,
)
from ownstream.errors import RunFailed
from ownstream.owner import ConnectionOperations
from ownstream.runtime.sdk import drive

from .test_imap import records

ADDRESS = "mira@example.org"
STREAMS = {"streams": [{"name": "messages"}, {"name": "mail_folders"}]}


def imported(path: Path) -> list[dict[str, Any]]:
    start = {"run_id": "run_t", "collection_mode": "full_refresh", "scope": STREAMS, "state": None}
    return list(drive(connector.collect, {**start, "artifact": {"path": str(path)}}, {}))


def messages(output: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        m["key"]: m["data"] for m in output if m["type"] == "RECORD" and m["stream"] == "messages"
    }


@pytest.fixture(scope="module")
def box() -> Any:
    return generate_mailbox(ADDRESS, seed=11, count=30, huge_attachment_bytes=2**20)


def test_a_takeout_archive(tmp_path: Path, box: Any, ops: ConnectionOperations) -> None:
    archive = write_takeout(box, tmp_path / "takeout.zip")
    result = ops.import_artifact("mbox", archive)
    connection = ops.home.store.connection(result.receipt.connection_id)
    assert connection.identity is not None and connection.identity.value == ADDRESS
    readable = [m for m in box.messages if m.kind != "malformed"]
    assert result.receipt.counts["new"] == len(readable) + len(
        {label for m in readable for label in m.gmail_labels} - {"Opened", "Unread"}
    )
    found = records(ops, result.receipt.connection_id)
    assert len(found) == len(readable)
    sample = next(r for r in found.values() if r.get("subject") == "Plain & HTML")
    assert (
        sample["labels"] == ["Inbox"] and sample["folders"] == [] and sample["flags"] == ["\\Seen"]
    )
    assert sample["gmail_thread_id"].isdigit()
    assert any("\\Flagged" in r["flags"] and "Starred" in r["labels"] for r in found.values())
    [rejection] = result.receipt.counts["rejections"]
    assert (rejection["reason"], rejection["count"]) == ("not_a_message", 1)
    assert rejection["examples"][0]["key"]  # where the broken message was
    assert result.receipt.warnings == [
        "1 files that are not mbox files were not imported: Takeout/archive_browser.html"
    ]


def test_a_thunderbird_profile_merges_copies_across_folders(tmp_path: Path, box: Any) -> None:
    output = imported(write_thunderbird(box, tmp_path / "profile"))
    found = messages(output)
    assert output[0] == {"type": "IDENTITY", "claim": "mail_account", "value": ADDRESS}
    assert len(found) == len([m for m in box.messages if m.kind != "malformed"])
    by_subject = {r.get("subject"): r for r in found.values()}
    folders = {f for r in found.values() for f in r["folders"]}
    assert {"INBOX", "Sent", "Work/Projects", "Über"} <= folders
    for message in box.messages:
        if len(message.folders) > 1:
            subject = message.raw.split(b"Subject: ")[1].split(b"\n")[0].decode()
            assert by_subject[subject]["folders"] == sorted(message.folders)
    folder_records = [
        m["data"] for m in output if m["type"] == "RECORD" and m["stream"] == "mail_folders"
    ]
    assert {
        "kind": "folder",
        "name": "Work/Projects",
        "message_count": len(box.folder("Work/Projects")),
    } in folder_records
    assert all(
        not m["data"].get("labels")
        for m in output
        if m["type"] == "RECORD" and m["stream"] == "messages"
    )


def test_a_plain_mbox_with_quoting_flags_and_broken_messages(tmp_path: Path, box: Any) -> None:
    path = write_mbox(box.messages, tmp_path / "Inbox.mbox")
    output = imported(path)
    found = messages(output)
    quoting = next(r for r in found.values() if r.get("subject") == "Quoting")
    assert (
        quoting["body_text"] == "Hello,\nFrom here on we meet on Fridays.\n>From the minutes.\nBye"
    )
    assert all(r["folders"] == ["INBOX"] for r in found.values())
    undated = next(r for r in found.values() if r.get("subject") == "Undated")
    assert undated["date_source"] == "mbox_from_line"
    flagged = [m for m in box.messages if "\\Flagged" in m.flags]
    assert sum("\\Flagged" in r["flags"] for r in found.values()) == len(flagged)
    assert output[-1] == {"type": "DONE", "status": "succeeded", "records_emitted": len(found) + 1}


def test_one_broken_message_never_sinks_the_import(tmp_path: Path, box: Any) -> None:
    good = [m for m in box.messages if m.kind == "regular"][:3]
    garbage = MailMessage(b"\x00\xff binary junk\n", ("INBOX",), (), good[0].internal_date)
    undated = MailMessage(
        b"Subject: no date anywhere\n\nhi\n", ("INBOX",), (), good[0].internal_date
    )
    path = write_mbox([good[0], garbage, good[1], undated, good[2]], tmp_path / "mixed.mbox")
    text = path.read_bytes().split(b"\n")
    undated_from = next(i for i, line in enumerate(text) if b"no date anywhere" in line) - 3
    text[undated_from] = b"From MAILER-DAEMON sometime"  # a From_ line without a date
    path.write_bytes(b"\n".join(text))
    output = imported(path)
    assert len(messages(output)) == 3
    rejected = sorted(m["reason"] for m in output if m["type"] == "REJECT")
    assert rejected == ["not_a_message", "undated"]


def test_the_same_message_twice_in_one_export_is_one_record(tmp_path: Path, box: Any) -> None:
    message = box.messages[0]
    path = write_mbox([message, box.messages[1], message], tmp_path / "twice.mbox")
    assert len(messages(imported(path))) == 2


def test_the_reader_streams_and_unquotes(tmp_path: Path) -> None:
    path = tmp_path / "handmade.mbox"
    path.write_bytes(
        b"From a@b Mon Jan  1 10:00:00 2024\nSubject: one\n\n>From me\n>>From you\nFrom here\n\n"
        b"From b@c Tue Jan  2 10:00:00 +0100 2024\nSubject: two\n\nbye\n"
    )
    with path.open("rb") as handle:
        first, second = read_messages(handle)
    assert first.raw == b"Subject: one\n\nFrom me\n>From you\nFrom here\n"
    assert second.raw == b"Subject: two\n\nbye\n" and second.line == 8
    assert (
        second.received is not None and second.received.isoformat() == "2024-01-02T09:00:00+00:00"
    )


def test_a_message_over_the_size_limit_is_rejected_unread(
    tmp_path: Path, box: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ownstream.connectors.mbox import reader

    monkeypatch.setattr(reader, "MAX_MESSAGE_BYTES", 200_000)
    output = imported(write_mbox(box.messages, tmp_path / "big.mbox"))
    too_large = [m for m in output if m["type"] == "REJECT" and m["reason"] == "too_large"]
    assert len(too_large) == 1 and too_large[0]["key"]
    assert not any(r.get("subject") == "The raw footage" for r in messages(output).values())


def _identity(output: list[dict[str, Any]]) -> str | None:
    return next((m["value"] for m in output if m["type"] == "IDENTITY"), None)


def test_the_account_is_proven_only_by_unanimous_delivery(tmp_path: Path, box: Any) -> None:
    delivered_or_sent = write_mbox(box.messages, tmp_path / "all.mbox")
    assert _identity(imported(delivered_or_sent)) == ADDRESS
    other = generate_mailbox("someone@example.net", seed=2, count=5, special=False)
    mixed = write_mbox([*box.messages[:5], *other.messages], tmp_path / "mixed.mbox")
    assert _identity(imported(mixed)) is None
    stranger = MailMessage(
        b"From: x@example.com\nTo: y@example.com\nSubject: hi\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\n\nnot delivered to, nor sent by, the account\n",
        ("INBOX",),
        (),
        box.messages[0].internal_date,
    )
    weak = write_mbox([*box.messages[:5], stranger], tmp_path / "weak.mbox")
    assert _identity(imported(weak)) is None
    sent_only = write_mbox(box.folder("Sent"), tmp_path / "sent.mbox")
    assert _identity(imported(sent_only)) is None  # nothing was delivered to the address


@pytest.mark.parametrize(
    ("member", "code"),
    [("../escape.mbox", "unsafe_archive"), ("/abs.mbox", "unsafe_archive")],
)
def test_unsafe_archives_are_refused(tmp_path: Path, member: str, code: str) -> None:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, b"From a Mon Jan  1 10:00:00 2024\nSubject: x\n\nx\n")
    output = imported(path)
    assert output[-1]["status"] == "failed" and output[-1]["error"]["code"] == code


def test_a_decompression_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "Takeout/Mail/bomb.mbox", b"From a Mon Jan  1 10:00:00 2024\n" + b"\n" * 10**7
        )
    assert imported(path)[-1]["error"]["code"] == "unsafe_archive"


def test_files_that_are_not_exports_fail_before_anything_is_stored(
    tmp_path: Path, ops: ConnectionOperations
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("just notes\n")
    with pytest.raises(RunFailed) as failed:
        ops.import_artifact("mbox", text)
    assert failed.value.extra["connector_error"]["code"] == "corrupt_archive"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "prefs.js").write_text("")
    with pytest.raises(RunFailed) as nothing:
        ops.import_artifact("mbox", empty)
    assert nothing.value.extra["connector_error"]["code"] == "unrecognized_archive"
    assert ops.home.store.connections() == []


def test_attachment_content_is_stored_as_blobs_within_the_size_limit(
    tmp_path: Path, box: Any, ops: ConnectionOperations, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNSTREAM_MAX_BLOB_BYTES", str(512 * 1024))  # below the 1 MiB video
    result = ops.import_artifact("mbox", write_takeout(box, tmp_path / "takeout.zip"))
    assert result.receipt.counts["omitted"] == {"attachment_too_large": 1}
    found = records(ops, result.receipt.connection_id)
    attachments = [a for r in found.values() for a in r.get("attachments", [])]
    [video] = [a for a in attachments if a["content_type"] == "video/mp4"]
    assert "blob_ref" not in video and video["size"] == 2**20  # metadata, no content
    stored = [a for a in attachments if "blob_ref" in a]
    assert stored and len(stored) == len(attachments) - 1
    blobs = ops.home.blobs
    for attachment in stored:
        ref = attachment["blob_ref"]
        assert ref["sha256"] == attachment["sha256"] and ref["size_bytes"] == attachment["size"]
        with blobs.open(ref["blob_id"]) as content:
            data = content.read()
        assert len(data) == attachment["size"]
        assert hashlib.sha256(data).hexdigest() == attachment["sha256"]
