"""The benchmark suite runs end to end and reports every figure, at a size below `--quick`.

Only completion and the presence of each figure are checked: benchmarks are never timed
assertions (the numbers depend on the machine; `make bench` is where they are read). At 6,000
records every section still runs (the freeze check against a real `ownstream serve` with
3 x 3,000 + 30,000-record imports, the mail section at 1,000 mbox messages), so the smoke test
catches a bench that no longer fits the store in about half a minute.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIZE = 6_000

FIGURES = (
    "1 ingest, whole runtime vs executemany floor",
    "1 peak RSS of the ingest process",
    "2 re-import of an overlapping export",
    "3 in-process: first page, 1 connection",
    "3 in-process: deep page (80 %), 1 connection",
    "3 in-process: first page, merged x3",
    "3 in-process: deep page (80 %), merged x3",
    "3 SQL: published-version condition, first page, 1 connection",
    "3 SQL: published-version condition, deep page (80 %), merged x3",
    "3 in-process: detail read",
    "3 HTTP: first page, 1 connection",
    "3 HTTP: deep page (80 %), merged x3",
    "3 HTTP: detail read",
    "4 search selective",
    "4 search mid",
    "4 search unselective",
    "4 SQL: grant scope inside the MATCH, selective",
    "5 aggregate count by day (UTC)",
    "5 aggregate count by day (Europe/Paris)",
    "5 aggregate count group_by from",
    "5 aggregate sum size_bytes",
    "5 field window: offset window",
    "5 field window: match window",
    "6 changes_since after",
    "6 changes_since after the update pass vs the same change-feed SQL",
    "7 delete one connection of 3",
    "7 sibling first page",
    "8 freeze check: owner write",
    "8 freeze check: client page",
    "8 freeze check: client search",
    "8 import while serving",
    "8 publish: its transaction",
    "8 peak RSS of the importing process",
    "9 mbox import of",
    "9 IMAP first sync",
)


def test_small_benchmark_reports_every_figure(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--size",
            str(SIZE),
            "--repeats",
            "5",
            "--work",
            str(tmp_path / "work"),
            "--output",
            str(report),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    table = completed.stdout
    expected = list(FIGURES)
    if all(importlib.util.find_spec(m) for m in ("dlt", "sqlalchemy", "alembic")):
        expected.append("1 ingest vs dlt")
    missing = [figure for figure in expected if f"| {figure}" not in table]
    assert not missing, f"figures missing from the table: {missing}\n{table}"
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1], f"a figure without a measurement: {row}"
    text = report.read_text(encoding="utf-8")
    assert "Machine:" in text and f"python -m bench.run --size {SIZE}" in text
    assert all(f"| {figure}" in text for figure in expected)
