"""Mail tests share the Dovecot fixtures and an owner's operations on a fresh home."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownstream.home import Home
from ownstream.operations import OwnerOperations
from tests.services.dovecot import dovecot, mail_user

__all__ = ["dovecot", "mail_user"]


@pytest.fixture
def ops(tmp_path: Path) -> OwnerOperations:
    return OwnerOperations(Home(tmp_path / "home"))
