"""Mail tests share the Dovecot fixtures and an owner's operations on a fresh home."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownstream.home import Home
from ownstream.owner import ConnectionOperations
from tests.services.dovecot import dovecot, mail_user

__all__ = ["dovecot", "mail_user"]


@pytest.fixture
def ops(tmp_path: Path) -> ConnectionOperations:
    return ConnectionOperations(Home(tmp_path / "home"))
