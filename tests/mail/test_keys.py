"""Record keys and the record of one message: normalization that makes every path agree."""

from __future__ import annotations

import hashlib
import tracemalloc
from base64 import encodebytes
from email import message_from_bytes, policy

import pytest

from ownstream.connectors.imap import connector as imap
from ownstream.connectors.imap.connector import dump_state, load_state
from ownstream.connectors.mail import KeyAssigner, KeyBasis, Rejected, build_record
from ownstream.connectors.mail.keys import parse_headers, split_message
from ownstream.connectors.mail.message import _content, _digest, html_to_text


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("<Abc.Def@Mail.Example.COM>", "Abc.Def@mail.example.com"),
        ("  < abc@EXAMPLE.org >  (comment)", "abc@example.org"),
        ("no-brackets@Example.Org", "no-brackets@example.org"),
        ("<local-only>", "local-only"),
        ("<>", None),
    ],
)
def test_message_ids_are_normalized(raw: str, normalized: str | None) -> None:
    assert KeyBasis.of(parse_headers(f"Message-ID: {raw}".encode()), b"").message_id == normalized


def basis(raw: bytes) -> KeyBasis:
    block, body = split_message(raw)
    return KeyBasis.of(parse_headers(block), body)


def test_a_message_without_id_has_the_same_key_on_every_path() -> None:
    lf = b"From: A <a@example.org>\nTo: b@example.org\nSubject: Hi\n  there\nDate: x\n\nbody\n  t\n"
    crlf = lf.replace(b"\n", b"\r\n")
    assert basis(lf).fallback == basis(crlf).fallback
    assert basis(lf).fallback.startswith("nomsgid:") and len(basis(lf).fallback) == 8 + 32
    assert basis(lf).fallback != basis(lf.replace(b"body", b"BODY")).fallback


def test_a_reused_message_id_keeps_messages_apart_stably() -> None:
    first = basis(
        b"Message-ID: <x@y>\nFrom: a@example.org\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\n1"
    )
    copy = basis(
        b"Message-ID: <x@y>\nFrom: A <A@example.org>\nDate: Mon,  1 Jan 2024 10:00:00 +0000\n\n1"
    )
    other = basis(
        b"Message-ID: <x@y>\nFrom: z@example.org\nDate: Mon, 1 Jan 2024 11:00:00 +0000\n\n2"
    )
    keys = KeyAssigner()
    assert keys.key(first) == "x@y" and keys.key(copy) == "x@y"  # a list's copy is the same
    assert keys.key(other) == f"x@y#{other.fingerprint}"
    later = KeyAssigner()  # a later run, seeded from the checkpoint, keeps ownership
    later.remember(f"x@y#{other.fingerprint}", other.fingerprint)
    later.remember("x@y", first.fingerprint)
    assert later.key(other) == f"x@y#{other.fingerprint}" and later.key(first) == "x@y"


def test_headers_unfold_and_ignore_garbage_lines() -> None:
    headers = parse_headers(b"Subject: a\n b\n\tc\nnot a header\nX-A: 1\nx-a: 2\n")
    assert headers == {"subject": ["a b c"], "x-a": ["1", "2"]}


def test_html_is_rendered_as_text() -> None:
    html = "<div>One<br>two&nbsp;&amp; <b>three</b></div><style>x{}</style><ul><li>a</li></ul>"
    assert html_to_text(html) == "One\ntwo & three\na"


def test_unusable_messages_are_rejected_with_a_reason() -> None:
    with pytest.raises(Rejected) as no_headers:
        build_record(b"junk\n", "k", {}, folders=(), flags=())
    assert no_headers.value.reason == "not_a_message"
    headers = parse_headers(b"Subject: s\nDate: not a date")
    with pytest.raises(Rejected) as undated:
        build_record(b"Subject: s\nDate: not a date\n\nx", "k", headers, folders=(), flags=())
    assert undated.value.reason == "undated"


def test_a_huge_attachment_is_hashed_without_holding_its_content() -> None:
    content = bytes(range(256)) * (24 * 4096)  # 24 MiB
    raw = (
        b"From: a@example.org\nSubject: big\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n'
        b"--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        + encodebytes(content)
        + b"--b--\n"
    )
    record = build_record(raw, "k", parse_headers(split_message(raw)[0]), folders=(), flags=())
    [attachment] = record["attachments"]
    assert attachment["size"] == len(content)
    assert attachment["sha256"] == hashlib.sha256(content).hexdigest()
    part = list(message_from_bytes(raw, policy=policy.default).walk())[-1]
    tracemalloc.start()
    assert _digest(_content(part)) == (attachment["size"], attachment["sha256"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < len(content) / 4  # a few chunks at a time, never the decoded content


def test_the_checkpoint_round_trips() -> None:
    folders = {"INBOX": imap.FolderState(7, 12, 99)}
    folders["INBOX"].copies[3] = imap.Copy(3, "k@x", "abcdef012345", ("\\Seen",))
    restored = load_state(dump_state(folders))
    assert restored == folders
    assert load_state({"version": 0}) == {} and load_state(None) == {}
