"""Deterministic mailboxes, and the exports and IMAP deliveries made from them.

Mail connector work needs the shapes real mail comes in (MIME multipart, RFC 2047 headers,
legacy charsets, missing headers, large attachments, broken messages) without anyone's real
mail. Everything here is a pure function of its seeds: a test regenerates the same mailbox,
delivers it to an IMAP server and writes the same mailbox as an mbox file, a Google Takeout
ZIP or a Thunderbird profile, byte for byte the same messages.
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any, Protocol

DEFAULT_NOW = datetime(2026, 11, 1, tzinfo=UTC)
"""The fixed "now" that keeps generated mail reproducible across days."""
FOLDERS = ("INBOX", "Archive", "Receipts", "Work/Projects", "Über")
SENT = "Sent"
TAKEOUT_MBOX = "Takeout/Mail/All mail Including Spam and Trash.mbox"
_LF = policy.default.clone(linesep="\n", max_line_length=78)
_FIRST_TEXT = "Ada Bo Cy Dana Emil Fatou Grete Hiro Ines Jonas Kaito Lena Mateo Nora Oskar Priya"
_FIRST = tuple(_FIRST_TEXT.split())
_LAST_TEXT = "Berg Chen Duarte Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Laine Moreau"
_LAST = tuple(_LAST_TEXT.split())
_WORDS_TEXT = (
    "budget invoice meeting garden trip report draft quarterly lunch photos concert "
    "review schedule ticket receipt holiday project kettle bicycle library harbour "
    "summary notes update proposal weekend recipe apartment lease migration backup "
    "cellar orchard"
)
_WORDS = tuple(_WORDS_TEXT.split())
_DOMAINS = ("example.org", "example.net", "mail.example.com", "lists.example.org")
_MOZILLA_BITS = {"\\Seen": 0x1, "\\Answered": 0x2, "\\Flagged": 0x4}
_STATUS_LETTERS = {"\\Seen": "R", "\\Answered": "A", "\\Flagged": "F", "\\Draft": "T"}


@dataclass(frozen=True)
class MailMessage:
    """One message as delivered: its bytes (LF line ends), where it lives, its flags."""

    raw: bytes
    folders: tuple[str, ...]
    flags: tuple[str, ...]
    internal_date: datetime
    kind: str = "regular"

    @property
    def crlf(self) -> bytes:
        """The bytes as an IMAP server stores them."""
        return self.raw.replace(b"\n", b"\r\n")

    @property
    def gmail_labels(self) -> tuple[str, ...]:
        """The labels Gmail would give it: its folders, and Opened/Unread and Starred."""
        labels = ["Inbox" if f == "INBOX" else f for f in self.folders]
        labels.append("Opened" if "\\Seen" in self.flags else "Unread")
        if "\\Flagged" in self.flags:
            labels.append("Starred")
        return tuple(labels)


@dataclass
class Mailbox:
    """One person's mail; mutable so a test can deliver more after an export was taken."""

    address: str
    name: str
    messages: list[MailMessage] = field(default_factory=list)

    def folder(self, name: str) -> list[MailMessage]:
        return [m for m in self.messages if name in m.folders]


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}"


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize()


def _paragraphs(rng: random.Random, count: int) -> str:
    return "\n\n".join(
        ". ".join(_sentence(rng, rng.randint(5, 12)) for _ in range(rng.randint(2, 4))) + "."
        for _ in range(count)
    )


def _message_id(rng: random.Random, domain: str) -> str:
    return f"<{rng.getrandbits(64):016x}.{rng.getrandbits(24):06x}@{domain}>"


class _Builder:
    """Makes the messages of one mailbox, one at a time, from one random stream."""

    def __init__(self, mailbox: Mailbox, rng: random.Random, start: datetime) -> None:
        self.mailbox = mailbox
        self.rng = rng
        self.moment = start
        self.sent_ids: list[str] = []

    def tick(self) -> datetime:
        self.moment += timedelta(minutes=self.rng.randint(7, 600), seconds=self.rng.randint(0, 59))
        return self.moment

    def envelope(
        self, *, sent: bool, when: datetime, subject: str, reply: bool = False
    ) -> EmailMessage:
        rng, box = self.rng, self.mailbox
        name, address = _person(rng)
        message = EmailMessage(policy=_LF)
        if not sent:
            message["Delivered-To"] = box.address
        message["Date"] = format_datetime(when.astimezone(_zone(rng)))
        message["From"] = f"{box.name} <{box.address}>" if sent else f"{name} <{address}>"
        message["To"] = f"{name} <{address}>" if sent else f"{box.name} <{box.address}>"
        if rng.random() < 0.2:
            other, other_address = _person(rng)
            message["Cc"] = f"{other} <{other_address}>"
        if reply and self.sent_ids and rng.random() < 0.25:
            parent = rng.choice(self.sent_ids)
            message["In-Reply-To"] = parent
            message["References"] = parent
            subject = f"Re: {subject}"
        message["Subject"] = subject
        message_id = _message_id(rng, box.address.split("@")[1] if sent else _DOMAINS[1])
        message["Message-ID"] = message_id
        self.sent_ids.append(message_id)
        return message

    def regular(self) -> MailMessage:
        rng = self.rng
        when = self.tick()
        sent = rng.random() < 0.25
        message = self.envelope(
            sent=sent, when=when, subject=_sentence(rng, rng.randint(2, 6)), reply=True
        )
        message.set_content(_paragraphs(rng, rng.randint(1, 4)))
        if rng.random() < 0.3:
            message.add_alternative(
                "<html><body>"
                + "".join(f"<p>{p}</p>" for p in _paragraphs(rng, 2).split("\n\n"))
                + "</body></html>",
                subtype="html",
            )
        if rng.random() < 0.1:
            message.add_attachment(
                rng.randbytes(rng.randint(200, 4000)),
                maintype="application",
                subtype="pdf",
                filename=f"{rng.choice(_WORDS)}.pdf",
            )
        home = rng.choices(FOLDERS, weights=(8, 3, 1, 1, 1))[0]
        folders: tuple[str, ...] = (SENT,) if sent else (home,)
        if not sent and rng.random() < 0.1:
            folders = tuple(sorted({*folders, "Receipts"}))
        flags = ["\\Seen"] if sent or rng.random() < 0.7 else []
        if rng.random() < 0.1:
            flags.append("\\Flagged")
        return MailMessage(message.as_bytes(), folders, tuple(flags), when)

    def special(self, huge_attachment_bytes: int) -> Iterator[MailMessage]:
        """One message of each shape the connectors must handle."""
        rng = self.rng
        inbox = ("INBOX",)

        message = self.envelope(sent=False, when=self.tick(), subject="Plain & HTML")
        message.set_content("Tickets are attached.\nSee you at the harbour.")
        message.add_alternative(
            "<html><head><style>p{color:red}</style></head><body><p>Tickets are "
            "<b>attached</b>.</p><p>See you at the harbour &amp; the caf&eacute;.</p>"
            "<script>track()</script></body></html>",
            subtype="html",
        )
        yield MailMessage(message.as_bytes(), inbox, ("\\Seen",), self.moment, "alternative")

        when = self.tick()
        raw = (
            f"Delivered-To: {self.mailbox.address}\n"
            f"Date: {format_datetime(when)}\n"
            "From: =?ISO-8859-1?Q?Jos=E9_Mu=F1oz?= <jose@example.net>\n"
            f"To: {self.mailbox.address}\n"
            "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4g4piV?=\n"
            f"Message-ID: {_message_id(rng, 'example.net')}\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n\n"
            "Viele Grüße aus München.\n"
        ).encode()
        yield MailMessage(raw, inbox, ("\\Seen",), when, "encoded_headers")

        for charset, text, kind in (
            ("iso-8859-1", "Café crème à la façon de grand-mère, déjà vu.", "latin1"),
            ("koi8-r", "Привет из Санкт-Петербурга, до встречи.", "koi8r"),
            ("shift_jis", "東京からこんにちは。また会いましょう。", "shift_jis"),
        ):
            when = self.tick()
            header = (
                f"Delivered-To: {self.mailbox.address}\nDate: {format_datetime(when)}\n"
                f"From: Pen Pal <penpal@example.org>\nTo: {self.mailbox.address}\n"
                f"Subject: Greetings in {charset}\n"
                f"Message-ID: {_message_id(rng, 'example.org')}\nMIME-Version: 1.0\n"
                f"Content-Type: text/plain; charset={charset}\n"
                "Content-Transfer-Encoding: 8bit\n\n"
            )
            raw = header.encode() + text.encode(charset) + b"\n"
            yield MailMessage(raw, inbox, (), when, kind)

        message = self.envelope(sent=False, when=self.tick(), subject="No id here")
        del message["Message-ID"]
        message.set_content("This message was sent by a client that sets no Message-ID.")
        yield MailMessage(message.as_bytes(), ("Archive",), ("\\Seen",), self.moment, "no_msgid")

        message = self.envelope(sent=False, when=self.tick(), subject="Undated")
        del message["Date"]
        message.set_content("A gateway dropped my Date header.")
        yield MailMessage(message.as_bytes(), inbox, (), self.moment, "no_date")

        message = self.envelope(sent=False, when=self.tick(), subject="The raw footage")
        message.set_content("Here is the whole recording, uncut.")
        message.add_attachment(
            rng.randbytes(huge_attachment_bytes),
            maintype="video",
            subtype="mp4",
            filename="recording.mp4",
        )
        yield MailMessage(message.as_bytes(), inbox, ("\\Seen",), self.moment, "huge_attachment")

        forwarded = self.envelope(sent=False, when=self.tick(), subject="Original note")
        forwarded.set_content("The note that gets forwarded.")
        message = self.envelope(sent=False, when=self.tick(), subject="Fwd: Original note")
        message.set_content("Forwarding this, see attached.")
        message.add_attachment(forwarded)
        yield MailMessage(message.as_bytes(), inbox, ("\\Seen",), self.moment, "forwarded")

        reused = _message_id(rng, "broken-mailer.example.com")
        for index, subject in enumerate(("Newsletter, first", "Newsletter, second")):
            message = self.envelope(sent=False, when=self.tick(), subject=subject)
            message.replace_header("Message-ID", reused)
            message.replace_header("From", f"Mailer {index} <news{index}@example.com>")
            message.set_content(f"Issue {index + 1} of a newsletter whose mailer reuses ids.")
            yield MailMessage(message.as_bytes(), inbox, ("\\Seen",), self.moment, "reused_id")

        message = self.envelope(sent=False, when=self.tick(), subject="Quoting")
        message.set_content("Hello,\nFrom here on we meet on Fridays.\n>From the minutes.\nBye")
        yield MailMessage(message.as_bytes(), inbox, ("\\Seen",), self.moment, "from_lines")

        when = self.tick()
        raw = (
            f"Delivered-To: {self.mailbox.address}\nDate: {format_datetime(when)}\n"
            "From: Odd Sender <odd@example.org>\n"
            f"To: {self.mailbox.address}\nSubject: =?utf-8?q?unterminated\n"
            f"Message-ID: {_message_id(rng, 'example.org')}\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b1"\n\n'
            "--b1\nContent-Type: text/plain; charset=x-unknown-charset\n\nodd but readable\n"
            "--b1\nContent-Type: application/octet-stream; name=bad.bin\n"
            "Content-Transfer-Encoding: base64\n\nnot*valid*base64!!\n"
        ).encode()
        yield MailMessage(raw, inbox, (), when, "tolerated")

        when = self.tick()
        yield MailMessage(
            b"this is not a mail message\njust some text that ended up in the mailbox\n",
            inbox,
            (),
            when,
            "malformed",
        )


def _zone(rng: random.Random) -> timezone:
    return timezone(timedelta(hours=rng.choice((-8, -5, 0, 1, 2, 9))))


def generate_mailbox(
    address: str,
    *,
    seed: int,
    count: int = 60,
    huge_attachment_bytes: int = 3 * 1024**2,
    special: bool = True,
    now: datetime = DEFAULT_NOW,
) -> Mailbox:
    """A mailbox of `count` ordinary messages, then (with `special`) one of each odd shape.

    Dates run up to `now`; replies thread to earlier messages of the mailbox.
    """
    rng = random.Random(seed)
    local = address.split("@")[0]
    name = " ".join(part.capitalize() for part in local.replace("_", ".").split("."))
    mailbox = Mailbox(address, name)
    builder = _Builder(mailbox, rng, now - timedelta(days=count // 2 + 30))
    mailbox.messages.extend(builder.regular() for _ in range(count))
    if special:
        mailbox.messages.extend(builder.special(huge_attachment_bytes))
    return mailbox


def add_mail(mailbox: Mailbox, count: int, *, seed: int) -> list[MailMessage]:
    """Append `count` new ordinary messages, dated after the newest one; returns them."""
    newest = max(m.internal_date for m in mailbox.messages)
    builder = _Builder(mailbox, random.Random(seed), newest)
    added = [builder.regular() for _ in range(count)]
    mailbox.messages.extend(added)
    return added


# exports -------------------------------------------------------------------------------------
def _from_line(message: MailMessage, sender: str = "MAILER-DAEMON") -> bytes:
    return f"From {sender} {message.internal_date.astimezone(UTC):%a %b %d %H:%M:%S %Y}\n".encode()


def _mboxrd(raw: bytes) -> bytes:
    """mboxrd quoting: every line matching `>*From ` gets one more `>`."""
    lines = raw.split(b"\n")
    quoted = [b">" + line if line.lstrip(b">").startswith(b"From ") else line for line in lines]
    return b"\n".join(quoted)


def _entry(from_line: bytes, extra_headers: bytes, raw: bytes) -> bytes:
    body = _mboxrd(raw)
    if not body.endswith(b"\n"):
        body += b"\n"
    return from_line + extra_headers + body + b"\n"


def _status_headers(flags: Sequence[str]) -> bytes:
    status = "RO" if "\\Seen" in flags else "O"
    x_status = "".join(_STATUS_LETTERS[f] for f in flags if f in _STATUS_LETTERS and f != "\\Seen")
    return f"Status: {status}\nX-Status: {x_status}\n".encode()


def write_mbox(messages: Iterable[MailMessage], path: Path) -> Path:
    """A plain mbox file (mboxrd quoting, Status/X-Status flags, as mutt writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        stream_mbox(messages, handle)
    return path


def _takeout_entry(message: MailMessage, thread_id: int) -> bytes:
    labels = ",".join(message.gmail_labels)
    stamp = f"{message.internal_date.astimezone(UTC):%a %b %d %H:%M:%S +0000 %Y}"
    headers = f"X-GM-THRID: {thread_id}\nX-Gmail-Labels: {labels}\n".encode()
    return _entry(f"From {thread_id}@xxx {stamp}\n".encode(), headers, message.raw)


def write_takeout(mailbox: Mailbox, path: Path, *, seed: int = 0) -> Path:
    """A Google Takeout ZIP: Gmail's one mbox with X-GM-THRID and X-Gmail-Labels headers."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(TAKEOUT_MBOX, "w", force_zip64=True) as member:
            for message in mailbox.messages:
                member.write(
                    _takeout_entry(message, 1_700_000_000_000_000_000 + rng.getrandbits(40))
                )
        archive.writestr("Takeout/archive_browser.html", "<html><body>Takeout</body></html>")
    return path


def _thunderbird_path(folder: str) -> str:
    """Thunderbird's file for a folder: `Inbox`, `Work.sbd/Projects`."""
    *parents, leaf = ("Inbox" if folder == "INBOX" else folder).split("/")
    return "/".join([f"{p}.sbd" for p in parents] + [leaf])


def write_thunderbird(mailbox: Mailbox, root: Path) -> Path:
    """A Thunderbird profile's local folders: one mbox file per folder (subfolders in `.sbd`
    folders), `.msf` index files beside them, flags in X-Mozilla-Status."""
    local = root / "Mail" / "Local Folders"
    folders = sorted({f for m in mailbox.messages for f in m.folders})
    for folder in folders:
        path = local / _thunderbird_path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            for message in mailbox.folder(folder):
                bits = sum(_MOZILLA_BITS.get(f, 0) for f in message.flags)
                status = f"X-Mozilla-Status: {bits:04x}\nX-Mozilla-Status2: 00000000\n".encode()
                handle.write(_entry(_from_line(message, "- "), status, message.raw))
        path.with_name(path.name + ".msf").write_bytes(b'// <!-- <mdb:mork:z v="1.4"/> -->\n')
    (root / "prefs.js").write_text('user_pref("mail.ready", true);\n', encoding="utf-8")
    return root


# IMAP delivery -------------------------------------------------------------------------------
class ImapAppender(Protocol):
    """The part of imapclient.IMAPClient that delivery needs."""

    def folder_exists(self, folder: str) -> bool: ...

    def create_folder(self, folder: str) -> Any: ...

    def append(
        self, folder: str, msg: bytes, flags: Sequence[str] = (), msg_time: datetime | None = None
    ) -> Any: ...


def deliver(client: ImapAppender, messages: Iterable[MailMessage]) -> int:
    """APPEND each message to each of its folders (creating them), with its flags and date."""
    count = 0
    for message in messages:
        for folder in message.folders:
            if folder != "INBOX" and not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, message.crlf, message.flags, message.internal_date)
            count += 1
    return count


def stream_mbox(messages: Iterable[MailMessage], handle: IO[bytes]) -> int:
    """Write an mbox to an open file; returns the bytes written (for large generated files)."""
    written = 0
    for message in messages:
        entry = _entry(_from_line(message), _status_headers(message.flags), message.raw)
        handle.write(entry)
        written += len(entry)
    return written
