"""`rekey_records` of the SQLite store: an interrupted re-key resumes where its committed chunks
stopped, and match keys of an older format are refreshed (what every backend must do is in
tests/store/contract/test_rekey_contract.py)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from ownstream.records import match_key
from ownstream.store.planner import stored_match_key
from ownstream.store.sqlite import SQLiteStore
from ownstream.store.sqlite import rekey as rekey_module
from tests.store.contract.conftest import Clock, Harness
from tests.store.contract.test_rekey_contract import PLAYS, collect, keys, play, renamed
from tests.store.test_planner import RULE


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


def test_match_keys_of_the_previous_format_are_refreshed(tmp_path: Path) -> None:
    """A database whose match keys are the bare rule keys (format 1) gets the stored format
    (the time window first) from a re-key that keeps every key, and pairs records again."""
    clock = Clock()
    store = SQLiteStore(tmp_path / "db.sqlite", clock=clock)
    harness = Harness(store, clock)
    first = harness.connection("a")
    acquisition = harness.stage(first, "plays-api")
    harness.write(acquisition, [play("p1", "alpha", precision="second")], PLAYS, RULE)
    harness.publish(acquisition)
    with closing(sqlite3.connect(tmp_path / "db.sqlite")) as db, db:
        (data,) = db.execute("SELECT data FROM records WHERE record_key = 'p1'").fetchone()
        db.execute("UPDATE records SET match_key = ?", (match_key(RULE, orjson.loads(data)),))

    def stored() -> str:
        with closing(sqlite3.connect(tmp_path / "db.sqlite")) as db:
            value: str = db.execute("SELECT match_key FROM records").fetchone()[0]
            return value

    assert stored() != stored_match_key(RULE, orjson.loads(data))
    report = store.rekey_records("plays", lambda _data: None, upgrade="plays:mk", rule=RULE)
    assert report is not None and (report.rekeyed, report.unchanged) == (1, 0)
    assert stored() == stored_match_key(RULE, orjson.loads(data))
    coarse = play("c1", "Alpha", 0, precision="minute", ms_played=181_000)
    acquisition = harness.stage(first, "plays-export")
    stats = harness.write(acquisition, [coarse], PLAYS, RULE)
    harness.publish(acquisition)
    assert stats.merged_with_existing == 1 and keys(harness, first) == ["p1"]
    again = store.rekey_records("plays", lambda _data: None, upgrade="plays:mk2", rule=RULE)
    assert again is not None and (again.rekeyed, again.unchanged) == (0, 1)
    store.close()
