"""`bench.versus` runs end to end at a tiny size and reports every figure.

It needs sqlite-utils and Datasette, which only the `bench` extra installs: without them the
test is skipped, saying so. Nothing is timed here; `make bench` is where the figures are read.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FIGURES = (
    "first import of",
    "first import, CPU",
    "first import, records/s",
    "first import, written to disk",
    "first import, peak RSS",
    "peak RSS of the import at",
    "disk per entry",
    "re-import of the same archive",
    "first page, requests/s",
    "deep page (80 %), requests/s",
    "search, rare words",
    "search, common term (",
    "search, common term, one connection",
)


def test_tiny_versus_reports_every_figure(tmp_path: Path) -> None:
    missing = [m for m in ("sqlite_utils", "datasette") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"bench.versus needs {', '.join(missing)} (the bench extra: "
            "pip install -e '.[dev,bench]'); NOT RUN"
        )
    report = tmp_path / "versus.md"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.versus",
            "--plays",
            "1500",
            "--rss-sizes",
            "600",
            "--seconds",
            "0.3",
            "--work",
            str(tmp_path / "work"),
            "--output",
            str(report),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    text = report.read_text(encoding="utf-8")
    absent = [figure for figure in FIGURES if f"| {figure}" not in text]
    assert not absent, f"figures missing from the report: {absent}\n{text}"
    assert "| record rows (data: zstd against a per-stream dictionary; columns) |" in text, text
    assert text.count("<!-- versus:start -->") == 1
