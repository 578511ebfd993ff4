"""`rekey_records` of the SQLite store: an interrupted re-key resumes where its committed chunks
stopped (what every backend must do is in tests/store/contract/test_rekey_contract.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ownstream.store.sqlite import SQLiteStore
from ownstream.store.sqlite import rekey as rekey_module
from tests.store.contract.conftest import Clock, Harness
from tests.store.contract.test_rekey_contract import collect, keys, play, renamed


def test_an_interrupted_rekey_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rekey_module, "REKEY_CHUNK", 2)
    clock = Clock()
    harness = Harness(SQLiteStore(tmp_path / "db.sqlite", clock=clock), clock)
    first = harness.connection("a")
    collect(harness, first, *(play(f"p{i}", f"t{i}", 10 + i) for i in range(5)))
    calls = 0

    def failing(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the process died")
        return renamed(data)

    with pytest.raises(RuntimeError):
        harness.store.rekey_records("plays", failing, upgrade="plays@2")
    # the first chunk was committed, the second rolled back, and nothing was marked done
    assert keys(harness, first) == ["v2:p0", "v2:p1", "p2", "p3", "p4"]
    report = harness.store.rekey_records("plays", renamed, upgrade="plays@2")
    assert report is not None and (report.rekeyed, report.unchanged) == (3, 2)
    assert keys(harness, first) == [f"v2:p{i}" for i in range(5)]
    harness.store.close()
