"""Dovecot for tests: one server per test session (per xdist worker), a fresh user per test.

The server is `ownstream.dev.dovecot.Dovecot` (the demo and bench use it too): the system's
dovecot binary, a config in a temporary folder, IMAP over TLS on a free loopback port.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from imapclient import IMAPClient

from ownstream.dev.dovecot import Dovecot, DovecotUnavailable, find_binary

from . import missing

USERS = 100
"""Mailboxes made before the server's first login (Dovecot reads new users only once a
second); each test takes the next one."""
_users = itertools.count(1)


@dataclass(frozen=True)
class MailUser:
    """A mailbox on the test server and the settings an `imap` connection needs for it."""

    server: Dovecot
    address: str
    password: str

    def client(self) -> IMAPClient:
        """A logged-in client, for delivering and changing mail behind the connector's back."""
        client = IMAPClient(
            self.server.host, port=self.server.port, ssl_context=self.server.ssl_context()
        )
        client.login(self.address, self.password)
        return client

    def settings(self, **extra: str) -> dict[str, str]:
        return {**self.server.imap_settings(self.address), **extra}


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if find_binary() is None:
        missing("Dovecot", "no dovecot binary (apt-get install dovecot-imapd)")
    try:
        server = Dovecot().start()
    except DovecotUnavailable as exc:
        missing("Dovecot", str(exc))
    for number in range(1, USERS + 1):
        server.add_user(f"user{number}@example.org", f"secret-{number}")
    yield server
    server.stop()


@pytest.fixture
def mail_user(dovecot: Dovecot) -> MailUser:
    """A new, empty mailbox `userN@example.org` (password `secret-N`)."""
    number = next(_users)
    assert number <= USERS, f"raise USERS in {__name__}"
    return MailUser(dovecot, f"user{number}@example.org", f"secret-{number}")
