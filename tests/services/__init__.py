"""Real services for tests (PostgreSQL, Dovecot, Chromium), from the system's packages.

Each fixture starts its service itself, in a temporary directory on a loopback port. When the
service's binaries are missing, `missing()` skips the test with a loud message, unless
`OWNSTREAM_REQUIRE_SERVICES=1` (set by `.ci/run`), which turns the skip into a failure: CI must
never pass by skipping what it was meant to check. `make test` first tries to install missing
packages with apt (`tools/ensure-services`).
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

REQUIRE_ENV = "OWNSTREAM_REQUIRE_SERVICES"
SKIPPED: list[str] = []


def required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def missing(service: str, why: str) -> NoReturn:
    """Skip (locally) or fail (CI) a test whose real service cannot be had here."""
    message = f"{service} is not available: {why}"
    if required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 makes it mandatory)", pytrace=False)
    SKIPPED.append(message)
    pytest.skip(f"SKIPPED, NOT TESTED: {message}")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
