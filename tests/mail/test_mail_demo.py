"""`make demo`'s mailbox: an IMAP connection and a Takeout export joined by rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownstream.dev import mail_demo
from ownstream.home import Home


@pytest.mark.usefixtures("dovecot")  # the demo starts its own server; this checks it can
def test_the_mail_demo_joins_the_export_to_the_imap_connection(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    text = mail_demo.add_mailbox(home, tmp_path / "mail")
    [connection] = home.store.connections(source="mail")
    assert {p.connector_key for p in connection.paths} == {"imap", "mbox"}
    assert connection.connection_id in text and "joined by rule mail-account" in text
    assert "MAIL_TOKEN=osc_" in text
