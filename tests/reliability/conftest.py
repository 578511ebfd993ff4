"""Processes of the real command against one data directory, and how to check it afterwards."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Owner

pytestmark = pytest.mark.reliability

LEASE_SECONDS = 2  # a killed process's lease lapses this fast here (60 s by default)


def environment(owner: Owner, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OWNSTREAM_HOME": str(owner.home_dir),
        "OWNSTREAM_LEASE_SECONDS": str(LEASE_SECONDS),
        **extra,
    }


def start(owner: Owner, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    """`ownstream ARGS` as its own process (so it can be killed -9)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ownstream", *args],
        env=environment(owner, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(owner: Owner, *args: str, timeout: float = 120) -> Any:
    """`ownstream ARGS --json` to completion; its JSON output."""
    done = subprocess.run(
        [sys.executable, "-m", "ownstream", *args, "--json"],
        env=environment(owner),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:] + done.stdout.decode()[-2000:]
    return json.loads(done.stdout)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def wait_until(condition: Callable[[], bool], seconds: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def rows(owner: Owner, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(owner.home_dir / "ownstream.db", timeout=30) as db:
        return db.execute(sql, params).fetchall()


def integrity(owner: Owner) -> None:
    """The file is sound, and what readers see agrees with the counts kept beside it."""
    assert rows(owner, "PRAGMA integrity_check") == [("ok",)]
    visible = dict(
        rows(
            owner,
            "SELECT r.connection_id || '/' || r.stream, count(*) FROM records r "
            "JOIN connections k ON k.connection_id = r.connection_id WHERE r.deleted = 0 "
            "AND r.stage <= k.published_stage AND (r.parked = 0 OR r.parked > k.published_stage) "
            "GROUP BY 1",
        )
    )
    counted = dict(
        rows(
            owner,
            "SELECT connection_id || '/' || stream, record_count FROM stream_stats "
            "WHERE record_count > 0",
        )
    )
    assert visible == counted


def journal_lines(count: int, user: str = "u1") -> list[Any]:
    return [
        {
            "entry_id": f"e{i:06d}",
            "written_at": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            "text": f"entry number {i} about the harbour",
        }
        for i in range(count)
    ]


@pytest.fixture
def journal_home(owner: Owner) -> Iterator[Owner]:
    owner.add_journal()
    owner.add_connector("scripted")
    owner.add_connector("scripted_background")  # may run on a schedule
    yield owner
