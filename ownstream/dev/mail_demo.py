"""The mailbox part of `make demo`: a live IMAP account and an export that joins it by rule.

When Dovecot is installed, a local IMAP server gets a generated mailbox, an `imap` connection
collects it, and a Google Takeout export of the same account is imported: the `mail-account`
rule joins it to that connection (the account address equals the export's unanimous
Delivered-To), and the messages both paths carry are one record each. Without Dovecot, the
export is imported alone (its own, identified connection) and the skip is said plainly.
"""

from __future__ import annotations

from pathlib import Path

from imapclient import IMAPClient

from ownstream.dev.dovecot import Dovecot, DovecotUnavailable
from ownstream.dev.mail_data import deliver, generate_mailbox, write_takeout
from ownstream.grants.issue import issue_grant
from ownstream.home import Home

ADDRESS = "alice@example.org"
PASSWORD = "demo-password"


def add_mailbox(home: Home, folder: Path, *, port: int = 8765) -> str:
    """Set up the mailbox in `home` (files in `folder`); returns what to print."""
    box = generate_mailbox(ADDRESS, seed=17, count=300, huge_attachment_bytes=2 * 1024**2)
    export = write_takeout(box, folder / "takeout-alice.zip")
    runtime = home.runtime()
    lines = ["", "Mail:"]
    try:
        with Dovecot() as server:
            server.add_user(ADDRESS, PASSWORD)
            with IMAPClient(server.host, port=server.port, ssl_context=server.ssl_context()) as c:
                c.login(ADDRESS, PASSWORD)
                deliver(c, box.messages)
            connected = runtime.connect(
                "imap",
                secrets={"password": PASSWORD},
                settings=server.imap_settings(ADDRESS),
                display_name="Alice's mailbox",
            )
            connection_id = connected.connection.connection_id
            [run] = runtime.run_connection(connection_id)
        lines.append(
            f"  {connection_id}  IMAP (a local Dovecot, now stopped): {run.tally.new} messages"
        )
    except DovecotUnavailable as exc:
        lines.append(f"  IMAP SKIPPED: {exc}; importing the export alone")
    imported = runtime.import_artifact("mbox", export)
    receipt = imported.receipt
    joined = home.store.connection(receipt.connection_id)
    rule = next((p.rule_id for p in joined.paths if p.connector_key == "mbox"), None)
    lines.append(
        f"  Takeout export → {receipt.connection_id} ({receipt.counts['new']} new, "
        f"{receipt.counts['updated']} enriched"
        + (f", joined by rule {rule})" if rule else ", its own connection)")
    )
    _, token = issue_grant(
        home.store,
        home.catalog,
        "demo-mail-app",
        {"streams": [{"name": "messages", "fields": ["date", "from", "subject", "labels"]}]},
    )
    lines += [
        f"  A client grant reads messages (date, from, subject, labels): export MAIL_TOKEN={token}",
        f'  curl -s -H "Authorization: Bearer $MAIL_TOKEN" '
        f"'http://127.0.0.1:{port}/v1/search?q=harbour&streams=messages&limit=3'",
        "",
    ]
    return "\n".join(lines)
