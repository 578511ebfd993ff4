"""The ownstream benchmark suite: `python -m bench.run [--quick]` (or `make bench [QUICK=1]`).

One run builds a mail-like archive (3 connections of two connector types sharing the stream
`bench_messages`), pushes it through the whole runtime, and measures every figure against a
baseline taken in the same run on the same machine:

1. ingest (subprocess connector → validation → staged batches → records, change log, search
   index → publish) vs plain `executemany` into the same tables, and vs dlt; peak RSS;
2. re-import of an overlapping export (90 % duplicates) vs a plain SQL upsert;
3. record pages (first, ~80 % deep; one connection, merged across 3; a detail read),
   in-process (ASGI) and over HTTP (`ownstream serve`), vs the same SQL straight from SQLite,
   and what the published-version condition costs that SQL;
4. search (selective, mid, unselective terms; with and without `connection_id`) vs the same
   FTS5 query;
5. aggregations over every record (a count by day in UTC and in a zone, a count grouped by a
   field, a sum) and field windows of one record's body (by offset, around a match) vs the
   plain SQL computing the same answer, with and without the published-version condition;
6. `changes_since` after 1 % of records changed vs a full sync from `beginning`, and vs the
   same change-feed SQL walked straight;
7. deleting one connection of 3 vs the same deletes in plain SQL, and siblings' page latency;
8. the freeze check: owner writes and client reads against `ownstream serve` while large
   imports run, vs the same requests with no import; what publishing costs a 10k vs a
   100k-or-more record import, and the importing process's peak RSS;
9. mail: an mbox import vs the stdlib parsing it, and an IMAP first sync vs imapclient alone.

Heavy writes run in child processes so each reports its own peak RSS (VmHWM). The table is
printed and written to docs/benchmarks.md (a `--quick` run to bench/out/benchmarks-quick.md, so
the committed full-size report stays). Nothing here is a test; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import cProfile
import importlib.util
import io
import itertools
import json
import math
import os
import platform
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from bench import mail, reads, workload
from bench.servers import ownstream_server
from bench.workload import STREAM, percentile

REPO = Path(__file__).resolve().parents[1]
FULL_SIZE = 1_000_000
QUICK_SIZE = 20_000
SEED = 20260601
API_ACCOUNTS = ("ada", "bo")
EXPORT_ACCOUNT = "cy"
PAGE_LIMIT = 100
SEARCH_LIMIT = 10
REPEATS = 200
UPDATE_SHARE = 0.01  # share of all records the update pass changes
FLOOR_TXN_ROWS = 50_000
FULL_SYNC_BUDGET_SECONDS = 120.0
DLT_MODULES = ("dlt", "sqlalchemy", "alembic")  # dlt's SQLite destination needs all three
DLT_RECORDS = 250_000  # dlt loads at most this many (its rate, ~3k rec/s, is size-independent)
SMALL_IMPORT = 10_000  # the small side of the publish-cost pair (half the run's size below 20k)
SMALL_ACCOUNTS = ("sa", "sb", "sc")  # three small imports: their median publish is the figure
LARGE_ACCOUNT = "lg"  # the large import: the run's size, at least 10 x the small side
FREEZE_PACE_SECONDS = 0.1  # one round (an owner write, two client reads) this often
FREEZE_IDLE_ROUNDS = 50  # rounds with no import running: the baseline (fewer if --repeats is)
FREEZE_BUDGET_SECONDS = 1800.0  # the imports get this long; the request loop stops with them
SLOW_SECONDS = 1.0  # a request slower than this counts as a freeze


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# layout ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where one run keeps its files. Sizes are split evenly over the three accounts."""

    work: Path
    size: int

    @property
    def home(self) -> Path:
        return self.work / "home"

    @property
    def data(self) -> Path:
        return self.work / "data"

    @property
    def results(self) -> Path:
        return self.work / "results"

    @property
    def connectors(self) -> Path:
        return self.work / "connectors"

    @property
    def token_file(self) -> Path:
        return self.work / "owner.token"

    @property
    def floor_db(self) -> Path:
        return self.work / "floor.db"

    def counts(self) -> dict[str, int]:
        accounts = (*API_ACCOUNTS, EXPORT_ACCOUNT)
        base, extra = divmod(self.size, len(accounts))
        return {a: base + (1 if i < extra else 0) for i, a in enumerate(accounts)}

    def api_file(self, account: str) -> Path:
        return self.data / f"{account}.jsonl"

    def export_dir(self, account: str, number: int) -> Path:
        return self.data / f"{account}-export-{number}"

    def records_file(self, account: str) -> Path:
        """The original records of an account, whichever path delivers them."""
        if account == EXPORT_ACCOUNT:
            return self.export_dir(account, 1) / "records.jsonl"
        return self.api_file(account)

    def updates_file(self, account: str) -> Path:
        return self.data / f"{account}-updates.jsonl"

    def update_fraction(self) -> float:
        counts = self.counts()
        return UPDATE_SHARE * self.size / sum(counts[a] for a in API_ACCOUNTS)

    @property
    def small_import(self) -> int:
        """SMALL_IMPORT, less only for runs smaller than `--quick` (the smoke test's)."""
        return max(1, min(SMALL_IMPORT, self.size // 2))

    @property
    def large_import(self) -> int:
        return max(self.size, 10 * self.small_import)

    def import_sizes(self) -> dict[str, int]:
        """The freeze check's imports, in the order they run: three small, then the large."""
        small = self.small_import
        return {**dict.fromkeys(SMALL_ACCOUNTS, small), LARGE_ACCOUNT: self.large_import}

    def mail_sizes(self) -> dict[str, int]:
        """Messages of the mail section: full, quick, or scaled down below the quick size."""
        if self.size > QUICK_SIZE:
            return {
                "mbox_messages": mail.FULL_MBOX_MESSAGES,
                "imap_messages": mail.FULL_IMAP_MESSAGES,
            }
        share = self.size / QUICK_SIZE
        return {
            # the importer reports its progress (and so its RSS) every 1,000 messages
            "mbox_messages": max(1_000, round(mail.QUICK_MBOX_MESSAGES * share)),
            "imap_messages": max(50, round(mail.QUICK_IMAP_MESSAGES * share)),
        }

    def import_dir(self, account: str) -> Path:
        return self.data / f"{account}-import"


# data -----------------------------------------------------------------------------------------
def _write_original(path: Path, account: str, count: int) -> int:
    lines, _ = workload.write_jsonl(path, workload.generate(account, count, SEED))
    return lines


def _write_overlap(source: Path, target: Path, account: str) -> int:
    lines, _ = workload.write_jsonl(target, workload.overlapping(source, account, SEED))
    return lines


def _write_updates(source: Path, target: Path, fraction: float) -> int:
    lines, _ = workload.write_jsonl(target, workload.updates(source, SEED, fraction=fraction))
    return lines


def generate_data(layout: Layout) -> dict[str, Any]:
    """Write every file the run needs (reused when a previous run left the same ones)."""
    stamp = layout.data / "stamp.json"
    wanted = {"size": layout.size, "seed": SEED, "version": 3}
    if stamp.exists() and orjson.loads(stamp.read_bytes()) == wanted:
        log("reusing generated data")
        return {"seconds": 0.0, "reused": True}
    shutil.rmtree(layout.data, ignore_errors=True)
    layout.data.mkdir(parents=True)
    counts = layout.counts()
    folders = {layout.export_dir(EXPORT_ACCOUNT, n): EXPORT_ACCOUNT for n in (1, 2)}
    folders.update({layout.import_dir(a): a for a in layout.import_sizes()})
    for folder, account in folders.items():
        folder.mkdir()
        (folder / "account").write_text(account + "\n", encoding="utf-8")
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        first = [
            pool.submit(_write_original, layout.records_file(a), a, n) for a, n in counts.items()
        ] + [
            pool.submit(_write_original, layout.import_dir(a) / "records.jsonl", a, n)
            for a, n in layout.import_sizes().items()
        ]
        for future in first:
            future.result()
        second = [
            pool.submit(
                _write_overlap,
                layout.records_file(EXPORT_ACCOUNT),
                layout.export_dir(EXPORT_ACCOUNT, 2) / "records.jsonl",
                EXPORT_ACCOUNT,
            ),
            *[
                pool.submit(
                    _write_updates,
                    layout.api_file(a),
                    layout.updates_file(a),
                    layout.update_fraction(),
                )
                for a in API_ACCOUNTS
            ],
        ]
        for future in second:
            future.result()
    stamp.write_bytes(orjson.dumps(wanted))
    return {"seconds": time.perf_counter() - started, "reused": False}


# helpers --------------------------------------------------------------------------------------
def memory() -> dict[str, float]:
    """This process's resident set now and at its peak (VmHWM), in MiB."""
    found: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                found[name] = int(value.split()[0]) / 1024
    return found


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def open_raw(path: Path) -> sqlite3.Connection:
    """A connection with the store's own pragmas, so baselines get the same page cache, and
    its `record_json` (so SQL reads compressed record data as the store does)."""
    from ownstream.store.sqlite.database import CACHE_KIB
    from ownstream.store.sqlite.record_codec import RecordCodec, register

    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        f"PRAGMA cache_size = -{CACHE_KIB}",
        "PRAGMA temp_store = MEMORY",
    ):
        db.execute(pragma)
    register(db, RecordCodec())
    return db


def chunks(path: Path, size: int) -> Iterator[list[bytes]]:
    with path.open("rb") as handle:
        while True:
            lines = [line for line in itertools.islice(handle, size) if line.strip()]
            if not lines:
                return
            yield lines


def setup_catalog(home: Any, layout: Layout) -> None:
    """Register the shared definition and both connector types, as an operator would.

    The manifests are rendered into the work folder with this interpreter, next to a copy of
    the connector, so `../connector.py` resolves relative to each manifest's folder."""
    layout.connectors.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).with_name("connector.py"), layout.connectors / "connector.py")
    home.catalog.add_definition(workload.DEFINITION, home.store)
    for template in sorted((Path(__file__).parent / "manifests").glob("*.json")):
        document = orjson.loads(template.read_bytes())
        command = document["run"]["command"]
        document["run"]["command"] = [
            sys.executable if command[0] == "python3" else command[0],
            *command[1:],
        ]
        folder = layout.connectors / document["connector_key"]
        folder.mkdir(exist_ok=True)
        (folder / "manifest.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        home.catalog.add_manifest(folder, home.store)


def start_child(layout: Layout, phase: str, **params: Any) -> subprocess.Popen[bytes]:
    """Start one phase in a fresh interpreter; it leaves its results as JSON."""
    (layout.results / f"{phase}.json").unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
    }
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--child",
        phase,
        "--work",
        str(layout.work),
        "--size",
        str(layout.size),
        "--params",
        json.dumps(params),
    ]
    return subprocess.Popen(command, cwd=REPO, env=env)


def child_result(layout: Layout, phase: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    if process.wait() != 0:
        raise RuntimeError(f"the {phase} phase failed (exit code {process.returncode})")
    result: dict[str, Any] = orjson.loads((layout.results / f"{phase}.json").read_bytes())
    return result


def run_child(layout: Layout, phase: str, **params: Any) -> dict[str, Any]:
    return child_result(layout, phase, start_child(layout, phase, **params))


def save_result(layout: Layout, phase: str, result: dict[str, Any]) -> None:
    layout.results.mkdir(parents=True, exist_ok=True)
    (layout.results / f"{phase}.json").write_bytes(orjson.dumps(result))


# 1. ingest through the runtime (child) -------------------------------------------------------
def child_ingest(layout: Layout, params: dict[str, Any]) -> dict[str, Any]:
    from ownstream.home import Home
    from ownstream.owner import AccessOperations

    shutil.rmtree(layout.home, ignore_errors=True)
    home = Home(layout.home)
    setup_catalog(home, layout)
    secret, _ = AccessOperations(home).mint_owner_token()
    layout.token_file.write_text(secret, encoding="utf-8")
    counts = layout.counts()
    samples: list[dict[str, float]] = []
    done = 0
    started = time.perf_counter()

    def on_progress(event: dict[str, Any]) -> None:
        records = done + int(event.get("records") or 0)
        samples.append({"records": records, "at": time.perf_counter() - started, **memory()})

    runtime = home.runtime(on_progress)
    seconds: dict[str, float] = {}
    connections: dict[str, str] = {}
    for account in API_ACCOUNTS:
        begin = time.perf_counter()
        connected = runtime.connect(
            "bench-api",
            secrets={},
            settings={"account": account, "data": str(layout.api_file(account))},
            display_name=f"{account} mail",
        )
        connection_id = connected.connection.connection_id
        (outcome,) = runtime.run_connection(connection_id)
        if outcome.status != "succeeded" or outcome.tally.new != counts[account]:
            raise RuntimeError(f"ingest of {account} went wrong: {outcome.to_dict()}")
        seconds[account] = time.perf_counter() - begin
        connections[account] = connection_id
        done += counts[account]
    begin = time.perf_counter()
    imported = runtime.import_artifact("bench-export", layout.export_dir(EXPORT_ACCOUNT, 1))
    if imported.receipt.counts["new"] != counts[EXPORT_ACCOUNT]:
        raise RuntimeError(f"import went wrong: {imported.to_dict()}")
    seconds[EXPORT_ACCOUNT] = time.perf_counter() - begin
    connections[EXPORT_ACCOUNT] = imported.receipt.connection_id
    total = time.perf_counter() - started
    home.store.rename_connection(connections[EXPORT_ACCOUNT], f"{EXPORT_ACCOUNT} mail")
    end = memory()
    wal = db_bytes(layout.home / "ownstream.db")
    home.store.close()  # the last connection out checkpoints and removes the WAL
    quarters = [
        next((s["VmHWM"] for s in samples if s["records"] >= layout.size * q / 4), end["VmHWM"])
        for q in (1, 2, 3)
    ]
    compared = min(layout.size, DLT_RECORDS)
    first = next((s for s in samples if s["records"] >= compared), None)
    return {
        "seconds": total,
        "records": layout.size,
        "first_records": first["records"] if first else layout.size,
        "first_seconds": first["at"] if first else total,
        "per_account_seconds": seconds,
        "per_account_records": counts,
        "connections": connections,
        "rss_quarters": [*quarters, end["VmHWM"]],
        "rss_quarter": quarters[0],
        "rss_peak": end["VmHWM"],
        "db_bytes": db_bytes(layout.home / "ownstream.db"),
        "db_and_wal_bytes": wal,
    }


# 1a/2/7. the executemany floor (child) --------------------------------------------------------
def child_floor(layout: Layout, params: dict[str, Any]) -> dict[str, Any]:
    """The least SQL a store could issue for the same rows: no lookups, no plan, no lease."""
    from ownstream.store.sqlite.connections import PURGE_CHUNK
    from ownstream.store.sqlite.search_index import SLOTS, scope_token

    connections: dict[str, str] = params["connections"]
    for path in layout.work.glob(layout.floor_db.name + "*"):
        path.unlink()
    db = open_raw(layout.floor_db)
    db.executescript(resources.files("ownstream.store.sqlite").joinpath("schema.sql").read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    blank = ("",) * (SLOTS - 2)  # subject and body fill f0 and f1, as the store indexes them
    scopes = {c: f"{scope_token('s', STREAM)} {scope_token('c', c)}" for c in connections.values()}
    stages = {c: stage for stage, c in enumerate(connections.values(), start=1)}
    record_scopes: dict[str, int | None] = {}
    record_id = 0
    sql_seconds = 0.0
    started = time.perf_counter()
    per_account: dict[str, float] = {}
    for account, connection_id in connections.items():
        begin_account = time.perf_counter()
        key = "bench-export" if account == EXPORT_ACCOUNT else "bench-api"
        method = "owner_artifact" if account == EXPORT_ACCOUNT else "provider_api"
        stage, scope, paths = stages[connection_id], scopes[connection_id], f",{key},"
        db.execute(
            "INSERT INTO connections (connection_id, owner_id, source, display_name, "
            "display_name_is_placeholder, status, created_at, updated_at) "
            "VALUES (?, 'owner', 'benchmail', ?, 0, 'active', ?, ?)",
            (connection_id, account, now, now),
        )
        record_scope = db.execute(
            "INSERT INTO record_scopes (connection_id, stream) VALUES (?, ?)",
            (connection_id, STREAM),
        ).lastrowid
        record_scopes[connection_id] = record_scope
        for lines in chunks(layout.records_file(account), FLOOR_TXN_ROWS):
            records, changes, index = [], [], []
            for line in lines:
                data = orjson.loads(line)
                record_id += 1
                sent = data["sent_at"]
                records.append(
                    (
                        record_id,
                        record_scope,
                        data["id"],
                        stage,
                        line.rstrip(),
                        now,
                        sent,
                        sent[:-1] + ".000Z",
                        now,
                        paths,
                    )
                )
                changes.append((stage, record_id))
                index.append((record_id, scope, data["subject"], data["body"], *blank))
            begin = time.perf_counter()
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO record_rows (record_id, scope, record_key, stage, version, deleted, "
                "data, emitted_at, cursor_value, consent_time, updated_at, paths) "
                "VALUES (?, ?, ?, ?, 1, 0, ?, ?, ?, ?, ?, ?)",
                records,
            )
            db.executemany(
                "INSERT INTO record_changes (stage, record_id, version, op) "
                "VALUES (?, ?, 1, 'insert')",
                changes,
            )
            db.executemany(
                "INSERT INTO search_index (rowid, scope, f0, f1, f2, f3, f4, f5, f6, f7) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                index,
            )
            db.execute(
                "INSERT INTO stage_stats (stage, stream, connector_key, acquisition_method, "
                "count_delta, changed, seen) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                "SET count_delta = count_delta + excluded.count_delta, "
                "changed = changed + excluded.changed, seen = seen + excluded.seen",
                (stage, STREAM, key, method, len(records), len(records), len(records)),
            )
            db.execute("COMMIT")
            sql_seconds += time.perf_counter() - begin
        # publish: the stage becomes visible and its tallies become the connection's counts
        begin = time.perf_counter()
        db.execute("BEGIN")
        db.execute(
            "UPDATE connections SET published_stage = ? WHERE connection_id = ?",
            (stage, connection_id),
        )
        db.execute(
            "INSERT INTO stream_stats (connection_id, stream, record_count, last_updated) "
            "SELECT ?, stream, count_delta, ? FROM stage_stats WHERE stage = ?",
            (connection_id, now, stage),
        )
        db.execute("DELETE FROM stage_stats WHERE stage = ?", (stage,))
        db.execute("COMMIT")
        sql_seconds += time.perf_counter() - begin
        per_account[account] = time.perf_counter() - begin_account
    load_seconds = time.perf_counter() - started
    load_memory = memory()

    # 2. re-import floor: one upsert statement per row, changed rows only rewritten
    connection_id = connections[EXPORT_ACCOUNT]
    stage = len(connections) + 1
    started = time.perf_counter()
    reimported = 0
    for lines in chunks(layout.export_dir(EXPORT_ACCOUNT, 2) / "records.jsonl", FLOOR_TXN_ROWS):
        rows = []
        for line in lines:
            data = orjson.loads(line)
            record_id += 1
            sent = data["sent_at"]
            rows.append(
                (
                    record_id,
                    record_scopes[connection_id],
                    data["id"],
                    stage,
                    line.rstrip(),
                    now,
                    sent,
                    sent[:-1] + ".000Z",
                    now,
                    ",bench-export,",
                )
            )
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO record_rows (record_id, scope, record_key, stage, version, deleted, "
            "data, emitted_at, cursor_value, consent_time, updated_at, paths) "
            "VALUES (?, ?, ?, ?, 1, 0, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (scope, record_key, parked) DO UPDATE SET "
            "data = excluded.data, stage = excluded.stage, version = version + 1, "
            "updated_at = excluded.updated_at WHERE data != excluded.data",
            rows,
        )
        db.execute("COMMIT")
        reimported += len(rows)
    reimport_seconds = time.perf_counter() - started

    # 7. delete floor: the store's purge statements, chunk by chunk. A contentless index
    # forgets a row only when handed the values it indexed, so each chunk's data is read back.
    victim = connections[API_ACCOUNTS[0]]
    scope = scopes[victim]
    started = time.perf_counter()
    while True:
        db.execute("BEGIN")
        purged = db.execute(
            "SELECT record_id, data FROM records WHERE connection_id = ? LIMIT ?",
            (victim, PURGE_CHUNK),
        ).fetchall()
        if not purged:
            db.execute("DELETE FROM record_changes WHERE stage = ?", (stages[victim],))
            db.execute("DELETE FROM stream_stats WHERE connection_id = ?", (victim,))
            db.execute("DELETE FROM connections WHERE connection_id = ?", (victim,))
            db.execute("COMMIT")
            break
        forget = []
        for rowid, raw in purged:
            data = orjson.loads(raw)
            forget.append((rowid, scope, data["subject"], data["body"], *blank))
        db.executemany(
            "INSERT INTO search_index (search_index, rowid, scope, f0, f1, f2, f3, f4, f5, f6, "
            "f7) VALUES ('delete', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            forget,
        )
        ids = [row[0] for row in purged]
        id_marks = _marks(len(ids))
        db.execute(f"DELETE FROM record_changes WHERE record_id IN ({id_marks})", ids)
        db.execute(f"DELETE FROM record_evidence WHERE record_id IN ({id_marks})", ids)
        db.execute(f"DELETE FROM record_rows WHERE record_id IN ({id_marks})", ids)
        db.execute("COMMIT")
    delete_seconds = time.perf_counter() - started
    db.close()
    return {
        "seconds": load_seconds,
        "sql_seconds": sql_seconds,
        "per_account_seconds": per_account,
        "records": record_id - reimported,
        "rss_peak": load_memory["VmHWM"],
        "db_bytes": db_bytes(layout.floor_db),
        "reimport_seconds": reimport_seconds,
        "reimport_records": reimported,
        "delete_seconds": delete_seconds,
    }


# 1b. dlt (child) ------------------------------------------------------------------------------
def _take(handle: Any, wanted: int) -> list[bytes]:
    return [line for line in itertools.islice(handle, min(10_000, wanted)) if line.strip()]


def child_dlt(layout: Layout, params: dict[str, Any]) -> dict[str, Any]:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = str(layout.work / "dlt" / "data")
    # dlt is an optional comparison dependency (the `bench` extra), typed only when installed:
    # where it is not (a `.[dev]` environment), mypy can neither find it nor type its decorator
    import dlt  # type: ignore[import-not-found, unused-ignore]

    folder = layout.work / "dlt"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    accounts = (*API_ACCOUNTS, EXPORT_ACCOUNT)
    share = min(1.0, DLT_RECORDS / layout.size)
    files = [(layout.records_file(a), math.ceil(layout.counts()[a] * share)) for a in accounts]

    @dlt.resource(  # type: ignore[untyped-decorator, unused-ignore]
        name=STREAM, write_disposition="merge", primary_key="id"
    )
    def messages() -> Iterator[list[dict[str, Any]]]:
        for path, wanted in files:
            left = wanted
            with path.open("rb") as handle:
                while left > 0 and (lines := _take(handle, left)):
                    yield [orjson.loads(line) for line in lines]
                    left -= len(lines)

    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=dlt.destinations.sqlalchemy(f"sqlite:///{folder / 'dlt.db'}"),
        dataset_name="bench",
        pipelines_dir=str(folder / "pipelines"),
    )
    started = time.perf_counter()
    pipeline.run(messages())
    seconds = time.perf_counter() - started
    loaded = 0
    for path in folder.glob("*.db"):
        with contextlib.closing(sqlite3.connect(path)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if STREAM in tables:
                loaded = max(loaded, db.execute(f"SELECT count(*) FROM {STREAM}").fetchone()[0])
    return {
        "seconds": seconds,
        "records": loaded,
        "rss_peak": memory()["VmHWM"],
        "version": dlt.__version__,
        "db_bytes": sum(db_bytes(p) for p in folder.glob("*.db")),
    }


# 2. re-import (child) -------------------------------------------------------------------------
def child_reimport(layout: Layout, params: dict[str, Any]) -> dict[str, Any]:
    from ownstream.home import Home

    home = Home(layout.home)
    runtime = home.runtime()
    started = time.perf_counter()
    result = runtime.import_artifact("bench-export", layout.export_dir(EXPORT_ACCOUNT, 2))
    seconds = time.perf_counter() - started
    if result.status != "committed":
        raise RuntimeError(f"re-import went wrong: {result.to_dict()}")
    return {
        "seconds": seconds,
        "records": result.receipt.counts["parsed"],
        "counts": result.receipt.counts,
        "rss_peak": memory()["VmHWM"],
    }


# cProfile of an ingest (child; `--profile N`) ---------------------------------------------
def child_profile(layout: Layout, params: dict[str, Any]) -> dict[str, Any]:
    from ownstream.home import Home

    count = int(params["records"])
    source = layout.work / "profile.jsonl"
    workload.write_jsonl(source, workload.generate("pro", count, SEED))
    shutil.rmtree(layout.home, ignore_errors=True)
    home = Home(layout.home)
    setup_catalog(home, layout)
    runtime = home.runtime()
    connected = runtime.connect(
        "bench-api", secrets={}, settings={"account": "pro", "data": str(source)}
    )
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    (outcome,) = runtime.run_connection(connected.connection.connection_id)
    profiler.disable()
    seconds = time.perf_counter() - started
    report = io.StringIO()
    stats = pstats.Stats(profiler, stream=report)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    (layout.work / "profile.txt").write_text(report.getvalue(), encoding="utf-8")
    return {
        "seconds": seconds,
        "records": count,
        "status": outcome.status,
        "report": str(layout.work / "profile.txt"),
    }


# 8. the freeze check's imports (child) --------------------------------------------------------
def _timed_store(path: Path) -> Any:
    """The SQLite store, timing each `publish`: how long its transaction waited for the write
    lock and then held it, apart from the clean-up it runs after committing."""
    from ownstream.model import Acquisition
    from ownstream.store.base import Publication
    from ownstream.store.sqlite import SQLiteStore

    class TimedStore(SQLiteStore):
        def __init__(self, path: Path) -> None:
            self.publishes: list[dict[str, float]] = []
            # (waited, held) of each outermost transaction; opening the store already runs some
            self.transactions: list[tuple[float, float]] = []
            self.holds: list[float] = []  # every outermost transaction's hold, batches included
            super().__init__(path)

        @contextlib.contextmanager
        def _tx(self, *, commit_behind: bool = False) -> Iterator[sqlite3.Connection]:
            self._db()  # this thread's connection, and its transaction depth
            nested = self._local.depth > 0
            begin = time.perf_counter()
            with super()._tx(commit_behind=commit_behind) as db:
                held = time.perf_counter()
                yield db
            # a batch's commit behind holds the lock until it is done: timed to its end here
            self._await_commit()
            if not nested:
                self.transactions.append((held - begin, time.perf_counter() - held))
                self.holds.append(self.transactions[-1][1])

        def publish(self, acquisition: Acquisition, publication: Publication) -> None:
            self.transactions = []
            super().publish(acquisition, publication)
            (waited, held), *cleanup = self.transactions
            self.publishes.append(
                {"waited": waited, "held": held, "cleanup": sum(w + h for w, h in cleanup)}
            )

    return TimedStore(path)


def child_imports(layout: Layout, params: dict[str, Any]) -> dict[str, Any]:
    """The freeze check's imports, one after another, as the owner runs them: each into a new
    connection, with its publish time and this process's peak RSS after it."""
    from ownstream.home import Home
    from ownstream.owner import ConnectionOperations

    home = Home(layout.home)
    store = _timed_store(home.path / "ownstream.db")
    home.store = store
    operations = ConnectionOperations(home)
    start = memory()
    imports: dict[str, dict[str, Any]] = {}
    for account, count in layout.import_sizes().items():
        store.holds = []
        begin = time.perf_counter()
        result = operations.import_artifact("bench-export", layout.import_dir(account))
        seconds = time.perf_counter() - begin
        if result.status != "committed" or result.receipt.counts["new"] != count:
            raise RuntimeError(f"import of {account} went wrong: {result.to_dict()}")
        imports[account] = {
            "records": count,
            "seconds": seconds,
            "publish": store.publishes[-1],
            "holds": {
                "transactions": len(store.holds),
                "p95": percentile(store.holds, 0.95) if store.holds else 0.0,
                "max": max(store.holds, default=0.0),
            },
            "rss_peak": memory()["VmHWM"],
        }
    return {"start_rss": start["VmRSS"], "imports": imports}


CHILDREN: dict[str, Callable[[Layout, dict[str, Any]], dict[str, Any]]] = {
    "ingest": child_ingest,
    "floor": child_floor,
    "dlt": child_dlt,
    "reimport": child_reimport,
    "profile": child_profile,
    "imports": child_imports,
}


# timing ---------------------------------------------------------------------------------------
@dataclass
class Timing:
    """Latencies of one repeated operation, in milliseconds."""

    samples: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.samples, 0.50)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 0.95)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 0.99)

    def summary(self) -> dict[str, float]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99, "n": len(self.samples)}


def measure(action: Callable[[int], Any], repeats: int = REPEATS, warmup: int = 5) -> Timing:
    for i in range(warmup):
        action(i)
    timing = Timing()
    for i in range(repeats):
        begin = time.perf_counter()
        action(i)
        timing.samples.append((time.perf_counter() - begin) * 1000)
    return timing


class Api:
    """GET against the app in-process (Starlette TestClient) or over HTTP (httpx)."""

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.get(path, params=params, headers=self.headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params} → {response.status_code}: {response.text}")
        body: dict[str, Any] = response.json()
        return body

    def fetch(self, path: str, params: dict[str, Any] | None = None, status: int = 200) -> None:
        """A timed request: the status is checked, the body is not decoded client-side."""
        response = self.client.get(path, params=params, headers=self.headers)
        if response.status_code != status:
            raise RuntimeError(f"GET {path} {params} → {response.status_code}: {response.text}")


def http_server(layout: Layout) -> contextlib.AbstractContextManager[str]:
    """A real `ownstream serve` (with its worker) on a free loopback port, stopped after."""
    return ownstream_server(layout.home)


# 3. reads -------------------------------------------------------------------------------------
# The SQL the store runs, written out: a row is readable when its stage is published and no
# published stage superseded it (schema 2's visibility condition).
VISIBLE = (
    "{r}.stage <= {k}.published_stage AND ({r}.parked = 0 OR {r}.parked > {k}.published_stage)"
)
HORIZONS = "SELECT connection_id, published_stage FROM connections WHERE connection_id IN ({})"


def _marks(count: int) -> str:
    return ",".join("?" * count)


@dataclass(frozen=True)
class Query:
    """Statements run back to back, as the store runs them for one read."""

    statements: tuple[tuple[str, tuple[Any, ...]], ...]

    def run(self, db: sqlite3.Connection) -> list[Any]:
        rows: list[Any] = []
        for sql, params in self.statements:
            rows = db.execute(sql, params).fetchall()
        return rows


@dataclass(frozen=True)
class PageCase:
    name: str
    params: dict[str, Any]
    query: Query  # the horizons, then the page with the published-version condition
    plain: Query  # the same page without that condition: what schema 1 asked of SQLite


def _horizons(db: sqlite3.Connection, connection_ids: list[str]) -> dict[str, int]:
    return dict(db.execute(HORIZONS.format(_marks(len(connection_ids))), connection_ids).fetchall())


def _page_sql(
    horizons: dict[str, int] | None, connection_ids: list[str], after: tuple[str, str, str] | None
) -> tuple[str, tuple[Any, ...]]:
    """The page query of `records_page` (newest first): one index range per connection,
    merged. Without `horizons`, the same query minus the published-version condition."""
    parts, params = [], []
    for connection_id in sorted(connection_ids):
        where = ["connection_id = ?", "stream = ?", "deleted = 0"]
        part_params: list[Any] = [connection_id, STREAM]
        if horizons is not None:
            where += ["stage <= ?", "(parked = 0 OR parked > ?)"]
            part_params += [horizons[connection_id]] * 2
        if after is not None:
            value, after_connection, key = after
            if connection_id == after_connection:
                where.append("(cursor_value, record_key) < (?, ?)")
                part_params += [value, key]
            elif connection_id < after_connection:
                where.append("cursor_value <= ?")
                part_params.append(value)
            else:
                where.append("cursor_value < ?")
                part_params.append(value)
        parts.append(
            "SELECT * FROM (SELECT connection_id, record_key, data, emitted_at, cursor_value "
            f"FROM records WHERE {' AND '.join(where)} "
            "ORDER BY cursor_value DESC, record_key DESC LIMIT ?)"
        )
        params += [*part_params, PAGE_LIMIT + 1]
    sql = " UNION ALL ".join(parts)
    if len(parts) > 1:
        sql = (
            f"SELECT * FROM ({sql}) ORDER BY cursor_value DESC, connection_id DESC, "
            "record_key DESC LIMIT ?"
        )
        params.append(PAGE_LIMIT + 1)
    return sql, tuple(params)


def _page_query(
    db: sqlite3.Connection, connection_ids: list[str], after: tuple[str, str, str] | None
) -> tuple[Query, Query]:
    horizons = _horizons(db, connection_ids)
    lookup = (HORIZONS.format(_marks(len(connection_ids))), tuple(sorted(connection_ids)))
    return (
        Query((lookup, _page_sql(horizons, connection_ids, after))),
        Query((_page_sql(None, connection_ids, after),)),
    )


def _deep_position(db: sqlite3.Connection, connection_ids: list[str]) -> tuple[str, str, str]:
    """The (cursor value, connection, key) of the readable record ~80 % down newest-first."""
    where = (
        "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
        f"WHERE r.connection_id IN ({_marks(len(connection_ids))}) AND r.stream = ? "
        f"AND r.deleted = 0 AND {VISIBLE.format(r='r', k='k')}"
    )
    total = db.execute(f"SELECT count(*) {where}", [*connection_ids, STREAM]).fetchone()[0]
    row = db.execute(
        f"SELECT r.cursor_value, r.connection_id, r.record_key {where} "
        "ORDER BY r.cursor_value DESC, r.connection_id DESC, r.record_key DESC LIMIT 1 OFFSET ?",
        [*connection_ids, STREAM, int(total * 0.8)],
    ).fetchone()
    return (row[0], row[1], row[2])


def page_cases(
    home: Any,
    db: sqlite3.Connection,
    single: str,
    merged: list[str] | None,
    single_label: str = "1 connection",
) -> list[PageCase]:
    from ownstream.reads import cursors
    from ownstream.store.base import StoredRecord

    cases = []
    shapes: list[tuple[str, list[str], str | None]] = [(single_label, [single], single)]
    if merged is not None:
        shapes.append(("merged x3", merged, None))
    for label, ids, narrowed in shapes:
        base: dict[str, Any] = {"limit": PAGE_LIMIT}
        if narrowed is not None:
            base["connection_id"] = narrowed
        cases.append(PageCase(f"first page, {label}", base, *_page_query(db, ids, None)))
        value, connection_id, key = _deep_position(db, ids)
        # the cursor a page ending on that record hands out (newest first, the default order)
        last = StoredRecord(connection_id, STREAM, key, {}, "", value)
        token = cursors.page_cursor(home.vault, STREAM, "desc", last)
        cases.append(
            PageCase(
                f"deep page (80 %), {label}",
                {**base, "cursor": token},
                *_page_query(db, ids, (value, connection_id, key)),
            )
        )
    return cases


def _fetching(api: Api, path: str, params: dict[str, Any]) -> Callable[[int], None]:
    return lambda _i: api.fetch(path, params)


def _querying(db: sqlite3.Connection, query: Query) -> Callable[[int], Any]:
    return lambda _i: query.run(db)


def bench_pages(
    api: Api,
    db: sqlite3.Connection,
    cases: list[PageCase],
    repeats: int = REPEATS,
    *,
    plain: bool = False,
) -> dict[str, dict[str, Any]]:
    """Each page through the API vs its SQL; with `plain`, also that SQL's page query with
    and without the published-version condition (the condition's own cost)."""
    path = f"/v1/streams/{STREAM}/records"
    found: dict[str, dict[str, Any]] = {}
    for case in cases:
        body = api.get(path, case.params)
        rows = case.query.run(db)[:PAGE_LIMIT]
        if [r["id"] for r in body["data"]] != [r[1] for r in rows]:
            raise RuntimeError(f"{case.name}: the API page differs from the SQL page")
        timing = measure(_fetching(api, path, case.params), repeats)
        baseline = measure(_querying(db, case.query), repeats)
        found[case.name] = {
            "api": timing.summary(),
            "sql": baseline.summary(),
            "rows": len(body["data"]),
        }
        if plain:
            page_only = Query(case.query.statements[1:])
            found[case.name]["visible"] = measure(_querying(db, page_only), repeats).summary()
            found[case.name]["plain"] = measure(_querying(db, case.plain), repeats).summary()
    return found


def bench_request_floor(api: Api, repeats: int) -> dict[str, float]:
    """The cheapest request the app answers: routing, middleware and the error envelope."""
    return measure(lambda _i: api.fetch("/v1/no-such-route", status=404), repeats).summary()


def bench_detail(
    api: Api, db: sqlite3.Connection, connection_id: str, repeats: int = REPEATS
) -> dict[str, Any]:
    keys = [
        r[0]
        for r in db.execute(
            "SELECT record_key FROM records WHERE connection_id = ? AND stream = ? "
            "AND record_id % 997 = 0 LIMIT ?",
            (connection_id, STREAM, repeats + 10),
        )
    ]
    path = f"/v1/streams/{STREAM}/records/"
    sql = (
        "SELECT r.connection_id, r.record_key, r.data, r.emitted_at, r.cursor_value "
        "FROM records r JOIN connections k ON k.connection_id = r.connection_id "
        "WHERE r.connection_id IN (?) AND r.stream = ? AND r.record_key = ? AND r.deleted = 0 "
        f"AND {VISIBLE.format(r='r', k='k')} ORDER BY r.connection_id"
    )
    timing = measure(
        lambda i: api.fetch(path + keys[i % len(keys)], {"connection_id": connection_id}), repeats
    )
    baseline = measure(
        lambda i: db.execute(sql, (connection_id, STREAM, keys[i % len(keys)])).fetchall(),
        repeats,
    )
    return {"api": timing.summary(), "sql": baseline.summary()}


# 4. search ------------------------------------------------------------------------------------
def _search_query(
    db: sqlite3.Connection, connection_ids: list[str], term: str, *, scoped: bool = True
) -> Query:
    """`search` for one stream, the owner's fields: the grant is part of the MATCH (stream and
    connection scope tokens, the visible field columns), then the same filters again in SQL.
    Without `scoped`, the MATCH holds the term alone and SQL alone filters (schema 1's way)."""
    from ownstream.store.sqlite.search_index import scope_token

    fields_sql = "SELECT fields FROM search_fields WHERE stream = ?"
    indexed = orjson.loads(db.execute(fields_sql, (STREAM,)).fetchone()[0])
    slots = " ".join(f"f{i}" for i in range(len(indexed)))
    ids = sorted(connection_ids)
    tokens = " OR ".join(f'"{scope_token("c", c)}"' for c in ids)
    stream_token = scope_token("s", STREAM)
    match = f'(scope : "{stream_token}" AND scope : ({tokens}) AND {{{slots}}} : ("{term}"))'
    if not scoped:
        match = f'{{{slots}}} : ("{term}")'
    sql = (
        "SELECT f.rowid, r.connection_id, r.stream, r.record_key, r.data, r.emitted_at "
        "FROM search_index f JOIN records r ON r.record_id = f.rowid "
        "JOIN connections k ON k.connection_id = r.connection_id "
        f"WHERE search_index MATCH ? AND r.deleted = 0 AND {VISIBLE.format(r='r', k='k')} "
        f"AND ((r.stream = ? AND r.connection_id IN ({_marks(len(ids))}))) "
        "ORDER BY f.rowid DESC LIMIT ?"
    )
    return Query(((fields_sql, (STREAM,)), (sql, (match, STREAM, *ids, SEARCH_LIMIT + 1))))


def bench_search(
    api: Api, db: sqlite3.Connection, owned: list[str], narrowed: str, repeats: int = REPEATS
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for label, term in (
        ("selective", workload.SELECTIVE),
        ("mid", workload.MID),
        ("unselective", workload.UNSELECTIVE),
    ):
        hits = db.execute(
            "SELECT count(*) FROM search_index WHERE search_index MATCH ?", (f'"{term}"',)
        ).fetchone()[0]
        for scope, connection_id in (("all connections", None), ("connection_id", narrowed)):
            params: dict[str, Any] = {"q": term, "limit": SEARCH_LIMIT}
            ids = owned
            if connection_id is not None:
                params["connection_id"] = connection_id
                ids = [connection_id]
            query = _search_query(db, ids, term)
            body = api.get("/v1/search", params)
            rows = query.run(db)[:SEARCH_LIMIT]
            if [h["record_key"] for h in body["data"]] != [r[3] for r in rows]:
                raise RuntimeError(f"search {term!r} {scope}: the API differs from the SQL")
            timing = measure(_fetching(api, "/v1/search", params), repeats)
            baseline = measure(_querying(db, query), repeats)
            # a term-only MATCH can walk most of the index for a narrowed common term: fewer runs
            unscoped = _search_query(db, ids, term, scoped=False)
            if [r[3] for r in unscoped.run(db)[:SEARCH_LIMIT]] != [r[3] for r in rows]:
                raise RuntimeError(f"search {term!r} {scope}: the term-only MATCH differs")
            plain = measure(_querying(db, unscoped), max(5, repeats // 10), warmup=1)
            found[f"{label} ({hits:,} hits), {scope}"] = {
                "api": timing.summary(),
                "sql": baseline.summary(),
                "plain": plain.summary(),
                "hits": hits,
                "returned": len(body["data"]),
                "kind": label,
            }
    return found


# 6. changes_since -----------------------------------------------------------------------------
def page_through(api: Api, params: dict[str, Any], budget: float | None) -> dict[str, Any]:
    """Follow next_cursor to the end (or until `budget` seconds); time the whole walk."""
    path = f"/v1/streams/{STREAM}/records"
    query = dict(params)
    pages = records = 0
    started = time.perf_counter()
    complete = False
    while True:
        body = api.get(path, query)
        pages += 1
        records += len(body["data"])
        if not body["has_more"]:
            complete = True
            break
        query["cursor"] = body["next_cursor"]
        if budget is not None and time.perf_counter() - started > budget:
            break
    return {
        "seconds": time.perf_counter() - started,
        "pages": pages,
        "records": records,
        "complete": complete,
    }


def _changes_sql(connections: int, fields: int) -> str:
    """The query of `changes_page`: stages in publication order, each stage's changes in
    sequence order from the page position, a record kept at its last qualifying change."""
    field_marks = _marks(fields)

    def qualifies(alias: str) -> str:
        return (
            f"({alias}.op != 'update' OR EXISTS (SELECT 1 FROM json_each({alias}.fields) j "
            f"WHERE j.value IN ({field_marks})))"
        )

    return (
        "SELECT v.connection_id, v.record_key, v.data, v.emitted_at, v.deleted, "
        "v.deleted_at, s.publish_seq, c.seq FROM runs s "
        "JOIN record_changes c ON c.stage = s.run_seq "
        "JOIN records h ON h.record_id = c.record_id "
        "JOIN connections k ON k.connection_id = h.connection_id "
        "JOIN records v ON v.connection_id = h.connection_id AND v.stream = h.stream "
        f"AND v.record_key = h.record_key AND {VISIBLE.format(r='v', k='k')} "
        "WHERE s.publish_seq > ? AND s.publish_seq <= ? "
        "AND (s.publish_seq > ? OR (s.publish_seq = ? AND c.seq > ?)) "
        f"AND s.connection_id IN ({_marks(connections)}) AND h.stream = ? "
        f"AND {qualifies('c')} AND NOT EXISTS ("
        "SELECT 1 FROM record_changes later JOIN runs ls ON ls.run_seq = later.stage "
        "WHERE later.record_id = c.record_id AND later.seq > c.seq "
        f"AND ls.publish_seq <= ? AND {qualifies('later')}) "
        "ORDER BY s.publish_seq, c.seq LIMIT ?"
    )


def walk_changes_sql(
    db: sqlite3.Connection, connection_ids: list[str], fields: list[str], since: int, upto: int
) -> dict[str, Any]:
    """The change feed's SQL walked page by page, as `changes_since` pages it."""
    sql = _changes_sql(len(connection_ids), len(fields))
    after = (since, 0)
    pages = records = 0
    started = time.perf_counter()
    while True:
        rows = db.execute(
            sql,
            [
                since,
                upto,
                after[0],
                after[0],
                after[1],
                *connection_ids,
                STREAM,
                *fields,
                upto,
                *fields,
                PAGE_LIMIT + 1,
            ],
        ).fetchall()
        pages += 1
        records += min(len(rows), PAGE_LIMIT)
        if len(rows) <= PAGE_LIMIT:
            break
        after = (rows[PAGE_LIMIT - 1][6], rows[PAGE_LIMIT - 1][7])
    return {"seconds": time.perf_counter() - started, "pages": pages, "records": records}


def bench_changes(layout: Layout, home: Any, api: Api, db: sqlite3.Connection) -> dict[str, Any]:
    from ownstream.grants.scope import owner_connections
    from ownstream.reads import cursors

    store = home.store
    since = store.change_horizon()
    # the `next_changes_since` a feed read to its end now would hand out (reads/changes.py)
    token = cursors.encode(home.vault, "since", {"s": STREAM, "e": store.epoch(), "seq": since})
    runtime = home.runtime()
    started = time.perf_counter()
    changed = 0
    for account in API_ACCOUNTS:
        connected = runtime.connect(
            "bench-api",
            secrets={},
            settings={"account": account, "data": str(layout.updates_file(account))},
        )
        (outcome,) = runtime.run_connection(connected.connection.connection_id)
        if outcome.status != "succeeded" or outcome.tally.updated == 0:
            raise RuntimeError(f"update pass of {account} went wrong: {outcome.to_dict()}")
        changed += outcome.tally.updated
    update_seconds = time.perf_counter() - started
    upto = store.change_horizon()
    incremental = page_through(api, {"changes_since": token, "limit": PAGE_LIMIT}, None)
    if incremental["records"] != changed:
        raise RuntimeError(f"changes_since returned {incremental['records']}, not {changed}")
    fields = list(home.catalog.definition(STREAM).fields)
    sql_walk = walk_changes_sql(
        db, owner_connections(store, home.catalog, STREAM), fields, since, upto
    )
    if sql_walk["records"] != changed:
        raise RuntimeError(f"the change-feed SQL returned {sql_walk['records']}, not {changed}")
    full = page_through(
        api, {"changes_since": "beginning", "limit": PAGE_LIMIT}, FULL_SYNC_BUDGET_SECONDS
    )
    live = sum(r.record_count for r in store.stream_counts())
    full_pages = math.ceil(live / PAGE_LIMIT)
    estimated = (
        full["seconds"] if full["complete"] else full["seconds"] / full["pages"] * full_pages
    )
    return {
        "changed": changed,
        "update_seconds": update_seconds,
        "incremental": incremental,
        "sql": sql_walk,
        "full": full,
        "full_seconds": estimated,
        "full_pages": full_pages,
        "live": live,
    }


# 7. delete ------------------------------------------------------------------------------------
def bench_delete(
    home: Any, api: Api, db: sqlite3.Connection, connections: dict[str, str], repeats: int
) -> dict[str, Any]:
    from ownstream.owner import ConnectionOperations

    victim = connections[API_ACCOUNTS[0]]
    siblings = [connections[API_ACCOUNTS[1]], connections[EXPORT_ACCOUNT]]
    names = {v: k for k, v in connections.items()}
    cases = [c for s in siblings for c in page_cases(home, db, s, None, f"connection {names[s]}")]
    before = bench_pages(api, db, cases, repeats)
    started = time.perf_counter()
    summary = ConnectionOperations(home).delete(victim)
    seconds = time.perf_counter() - started
    after = bench_pages(api, db, cases, repeats)
    return {
        "seconds": seconds,
        "records": summary["records"],
        "before": before,
        "after": after,
        "siblings": siblings,
    }


# 8. the freeze check ----------------------------------------------------------------------------
def _latency(samples: list[float]) -> dict[str, float]:
    """Seconds → the freeze check's summary in milliseconds."""
    ms = [s * 1000 for s in samples]
    slow = sum(s > SLOW_SECONDS for s in samples)
    return {
        "n": len(ms),
        "p50": percentile(ms, 0.50),
        "p95": percentile(ms, 0.95),
        "max": max(ms),
        "slow": slow,
        "slow_share": slow / len(ms),
    }


def request_loop(
    requests: list[tuple[str, Callable[[int], None]]], keep_going: Callable[[int], bool]
) -> dict[str, dict[str, float]]:
    """Rounds of the given requests, one round per FREEZE_PACE_SECONDS, while `keep_going`."""
    samples: dict[str, list[float]] = {kind: [] for kind, _ in requests}
    round_number = 0
    while keep_going(round_number):
        started = time.perf_counter()
        for kind, request in requests:
            begin = time.perf_counter()
            request(round_number)
            samples[kind].append(time.perf_counter() - begin)
        round_number += 1
        time.sleep(max(0.0, FREEZE_PACE_SECONDS - (time.perf_counter() - started)))
    return {kind: _latency(values) for kind, values in samples.items()}


def bench_freeze(layout: Layout, token: str, renamed: str, repeats: int) -> dict[str, Any]:
    """Owner writes (a new grant, a rename, in turn) and client reads (a page, a search)
    against `ownstream serve`, first with nothing else running, then while the imports run."""
    import httpx

    owner = {"Authorization": f"Bearer {token}"}
    grant_body = {"client_id": "bench-freeze", "streams": [{"name": STREAM}]}

    def call(http: httpx.Client, method: str, path: str, expected: int, **kwargs: Any) -> None:
        response = http.request(method, path, **kwargs)
        if response.status_code != expected:
            raise RuntimeError(f"{method} {path} → {response.status_code}: {response.text}")

    with http_server(layout) as base, httpx.Client(base_url=base, timeout=120) as http:
        issued = http.post("/v1/owner/grants", json=grant_body, headers=owner)
        if issued.status_code != 201:
            raise RuntimeError(f"POST /v1/owner/grants → {issued.status_code}: {issued.text}")
        client = {"Authorization": f"Bearer {issued.json()['access_token']}"}

        def owner_write(i: int) -> None:
            if i % 2:
                body = {"display_name": f"{API_ACCOUNTS[1]} mail {i}"}
                path = f"/v1/owner/connections/{renamed}"
                call(http, "PATCH", path, 200, json=body, headers=owner)
            else:
                call(http, "POST", "/v1/owner/grants", 201, json=grant_body, headers=owner)

        page = {"limit": PAGE_LIMIT}
        search = {"q": workload.SELECTIVE, "limit": SEARCH_LIMIT}
        requests: list[tuple[str, Callable[[int], None]]] = [
            ("owner write", owner_write),
            (
                "client page",
                lambda _i: call(
                    http, "GET", f"/v1/streams/{STREAM}/records", 200, params=page, headers=client
                ),
            ),
            (
                "client search",
                lambda _i: call(http, "GET", "/v1/search", 200, params=search, headers=client),
            ),
        ]
        idle_rounds = min(FREEZE_IDLE_ROUNDS, max(10, repeats))
        idle = request_loop(requests, lambda i: i < idle_rounds)
        started = time.perf_counter()
        deadline = time.monotonic() + FREEZE_BUDGET_SECONDS
        importer = start_child(layout, "imports")
        try:
            busy = request_loop(
                requests, lambda _i: importer.poll() is None and time.monotonic() < deadline
            )
        finally:
            if importer.poll() is None:
                importer.kill()
        loop_seconds = time.perf_counter() - started
        imports = child_result(layout, "imports", importer)
    return {"idle": idle, "busy": busy, "seconds": loop_seconds, **imports}


# the report -----------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu
        )
    ram = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": platform.platform(),
    }


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} ms"
    return f"{value:.3g} ms" if value >= 0.1 else f"{value * 1000:.0f} µs"


def _rate(records: float, seconds: float) -> str:
    return f"{records / seconds:,.0f} rec/s ({seconds:.1f} s)"


def _x(value: float) -> str:
    """A ratio: two decimals near 1, fewer far from it, never a misleading 0.0x."""
    if value >= 10:
        return f"{value:,.0f}x"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


@dataclass
class Table:
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)

    def add(
        self,
        figure: str,
        ours: str,
        baseline: str,
        ratio: str,
        target: str = "",
        ok: bool | None = None,
    ) -> None:
        self.rows.append((figure, ours, baseline, ratio, target, _verdict(ok)))

    def markdown(self) -> str:
        header = ("Figure", "ownstream", "baseline", "ratio", "target", "")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def build_table(r: dict[str, Any]) -> Table:
    t = Table()
    ingest, floor, dlt = r["ingest"], r["floor"], r.get("dlt")
    ours = ingest["records"] / ingest["seconds"]
    floor_rate = floor["records"] / floor["seconds"]
    t.add(
        "1 ingest, whole runtime vs executemany floor (parse + insert)",
        _rate(ingest["records"], ingest["seconds"]),
        _rate(floor["records"], floor["seconds"]) + f"; SQL alone {floor['sql_seconds']:.1f} s",
        _x(ours / floor_rate),
        "≥ 0.6x",
        ours / floor_rate >= 0.6,
    )
    if dlt is not None:
        dlt_rate = dlt["records"] / dlt["seconds"]
        first = ingest["first_records"] / ingest["first_seconds"]
        t.add(
            f"1 ingest vs dlt {dlt['version']} → SQLite (sqlalchemy, merge on id), "
            f"both over the first {ingest['first_records']:,} records",
            _rate(ingest["first_records"], ingest["first_seconds"]),
            _rate(dlt["records"], dlt["seconds"]),
            _x(first / dlt_rate),
            "≥ 2x",
            first / dlt_rate >= 2,
        )
    growth = ingest["rss_peak"] / ingest["rss_quarter"]
    t.add(
        f"1 peak RSS of the ingest process at N/4, N/2, 3N/4, N ({r['size']:,} records)",
        " → ".join(f"{v:.0f}" for v in ingest["rss_quarters"]) + " MiB",
        f"floor {floor['rss_peak']:.0f} MiB" + (f"; dlt {dlt['rss_peak']:.0f} MiB" if dlt else ""),
        f"{growth:.2f}x growth",
        "flat (≤ 1.25x)",
        growth <= 1.25,
    )
    t.add(
        "1 database file after ingest (with the WAL before its checkpoint)",
        f"{ingest['db_bytes'] / 2**20:,.0f} MiB ({ingest['db_and_wal_bytes'] / 2**20:,.0f} MiB)",
        f"floor {floor['db_bytes'] / 2**20:,.0f} MiB",
        _x(ingest["db_bytes"] / floor["db_bytes"]),
        "",
    )
    re = r["reimport"]
    re_rate = re["records"] / re["seconds"]
    floor_re = floor["reimport_records"] / floor["reimport_seconds"]
    c = re["counts"]
    first_import = r["ingest"]["per_account_seconds"][EXPORT_ACCOUNT]
    t.add(
        f"2 re-import of an overlapping export ({c['duplicate']:,} dup, {c['updated']:,} "
        f"changed, {c['new']:,} new)",
        _rate(re["records"], re["seconds"])
        + f"; its first import {_rate(re['records'], first_import)}",
        "SQL upsert " + _rate(floor["reimport_records"], floor["reimport_seconds"]),
        _x(re_rate / floor_re),
        "",
    )
    for transport in ("in-process", "HTTP"):
        reads = r["reads"][transport]
        t.add(
            f"3 {transport}: request floor (unknown route → 404: harness, middleware, errors)",
            f"p50 {_ms(reads['floor']['p50'])} · p99 {_ms(reads['floor']['p99'])}",
            "",
            "",
            "",
        )
        for name, case in reads["pages"].items():
            api, sql = case["api"], case["sql"]
            target, ok = (
                ("p50 ≤ 5 ms", api["p50"] <= 5) if transport == "in-process" else ("", None)
            )
            t.add(
                f"3 {transport}: {name} (limit {PAGE_LIMIT})",
                f"p50 {_ms(api['p50'])} · p95 {_ms(api['p95'])} · p99 {_ms(api['p99'])}",
                f"SELECT p50 {_ms(sql['p50'])}",
                _x(api["p50"] / sql["p50"]),
                target,
                ok,
            )
        if transport == "in-process":
            for name, case in reads["pages"].items():
                with_it, without = case["visible"]["p50"], case["plain"]["p50"]
                t.add(
                    f"3 SQL: published-version condition, {name}",
                    f"page SELECT p50 {_ms(with_it)}",
                    f"without it p50 {_ms(without)}",
                    _x(with_it / without),
                    "",
                )
        detail = reads["detail"]
        t.add(
            f"3 {transport}: detail read",
            f"p50 {_ms(detail['api']['p50'])} · p95 {_ms(detail['api']['p95'])} · "
            f"p99 {_ms(detail['api']['p99'])}",
            f"SELECT p50 {_ms(detail['sql']['p50'])}",
            _x(detail["api"]["p50"] / detail["sql"]["p50"]),
            "",
        )
        pages = reads["pages"]
        for depth in ("first page", "deep page (80 %)"):
            merged = pages[f"{depth}, merged x3"]["api"]["p50"]
            single = pages[f"{depth}, 1 connection"]["api"]["p50"]
            in_process = transport == "in-process"
            t.add(
                f"3 {transport}: merged x3 vs 1 connection, {depth}",
                _ms(merged),
                _ms(single),
                _x(merged / single),
                "≤ 2x" if in_process else "",
                merged / single <= 2 if in_process else None,
            )
    for name, case in r["search"].items():
        api, sql = case["api"], case["sql"]
        limit = 30 if case["kind"] == "selective" else None
        ok = api["p99"] <= 300 and (limit is None or api["p50"] <= limit)
        target = ("p50 ≤ 30 ms, " if limit else "") + "p99 ≤ 300 ms"
        t.add(
            f"4 search {name}",
            f"p50 {_ms(api['p50'])} · p99 {_ms(api['p99'])}",
            f"FTS5 p50 {_ms(sql['p50'])} · p99 {_ms(sql['p99'])}",
            _x(api["p50"] / sql["p50"]),
            target,
            ok,
        )
    for name, case in r["search"].items():
        scoped, plain = case["sql"]["p50"], case["plain"]["p50"]
        t.add(
            f"4 SQL: grant scope inside the MATCH, {name}",
            f"scoped MATCH p50 {_ms(scoped)}",
            f"term-only MATCH p50 {_ms(plain)}",
            _x(scoped / plain),
            "",
        )
    _read_surface_rows(t, r["read_surface"])
    ch = r["changes"]
    share = ch["incremental"]["seconds"] / ch["full_seconds"]
    full = ch["full"]
    measured = (
        ""
        if full["complete"]
        else (f" (extrapolated from {full['pages']} of {ch['full_pages']:,} pages)")
    )
    t.add(
        f"6 changes_since after {ch['changed']:,} records changed "
        f"({ch['changed'] / ch['live']:.1%})",
        f"{ch['incremental']['seconds']:.2f} s, {ch['incremental']['pages']} pages",
        f"full sync {ch['full_seconds']:,.1f} s{measured}",
        f"{share:.2%}",
        "≤ 5 %",
        share <= 0.05,
    )
    t.add(
        "6 full sync (changes_since=beginning), time per page of "
        f"{PAGE_LIMIT} at {ch['live']:,} records",
        f"{full['seconds'] / full['pages'] * 1000:,.0f} ms/page over {full['pages']:,} pages",
        "changes_since page "
        f"{ch['incremental']['seconds'] / ch['incremental']['pages'] * 1000:,.0f} ms",
        "",
        "",
    )
    sql_walk = ch["sql"]
    api_page = ch["incremental"]["seconds"] / ch["incremental"]["pages"]
    sql_page = sql_walk["seconds"] / sql_walk["pages"]
    t.add(
        "6 changes_since after the update pass vs the same change-feed SQL walked straight",
        f"{api_page * 1000:.3g} ms/page",
        f"SQL {sql_page * 1000:.3g} ms/page",
        _x(api_page / sql_page),
        "",
    )
    t.add(
        "6 update pass through the runtime (incremental runs)",
        _rate(ch["changed"], ch["update_seconds"]),
        "",
        "",
        "",
    )
    de = r["delete"]
    t.add(
        f"7 delete one connection of 3 ({de['records']:,} records)",
        f"{de['seconds']:.1f} s",
        f"plain SQL deletes {floor['delete_seconds']:.1f} s",
        _x(de["seconds"] / floor["delete_seconds"]),
        "",
    )
    for name in de["before"]:
        before, after = de["before"][name]["api"]["p50"], de["after"][name]["api"]["p50"]
        t.add(
            f"7 sibling {name}, before → after delete",
            f"{_ms(before)} → {_ms(after)}",
            "",
            _x(after / before),
            "unchanged (≤ 1.25x)",
            after / before <= 1.25,
        )
    _freeze_rows(t, r)
    for row in mail.rows(r["mail"]):
        t.add(*row)
    return t


def _read_surface_rows(t: Table, found: dict[str, Any]) -> None:
    """Aggregations and field windows (bench/reads.py) against their SQL floors."""
    for name, case in found["aggregate"].items():
        api, sql, visible = case["api"], case["sql"], case["visible"]
        compared = (
            "" if case["compared"] else f"; shifted {reads.ZONE_BASELINE_OFFSET}, not compared"
        )
        t.add(
            f"5 aggregate {name} over {case['records']:,} records",
            f"p50 {_ms(api['p50'])} · p95 {_ms(api['p95'])}",
            f"SQL p50 {_ms(sql['p50'])}; with the published-version condition "
            f"{_ms(visible['p50'])}{compared}",
            _x(api["p50"] / sql["p50"]),
            "",
        )
    for name, case in found["field_window"].items():
        api, sql = case["api"], case["sql"]
        t.add(
            f"5 field window: {name} of `body`, one record",
            f"p50 {_ms(api['p50'])} · p95 {_ms(api['p95'])} · p99 {_ms(api['p99'])}",
            f"SQL substr p50 {_ms(sql['p50'])}",
            _x(api["p50"] / sql["p50"]),
            "",
        )


def _freeze_rows(t: Table, r: dict[str, Any]) -> None:
    fr = r["freeze"]
    imports = fr["imports"]
    small = [v for k, v in imports.items() if k != LARGE_ACCOUNT]
    large = imports[LARGE_ACCOUNT]
    small_size = small[0]["records"]
    label = f"{len(small)} x {small_size:,} + {large['records']:,}-record imports"
    for kind, busy in fr["busy"].items():
        idle = fr["idle"][kind]
        t.add(
            f"8 freeze check: {kind} during {label} ({busy['n']:,} requests)",
            f"p95 {_ms(busy['p95'])} · max {_ms(busy['max'])} · "
            f"{busy['slow_share']:.1%} over {SLOW_SECONDS:.0f} s",
            f"no import: p95 {_ms(idle['p95'])} · max {_ms(idle['max'])}",
            _x(busy["p95"] / idle["p95"]),
            f"none over {SLOW_SECONDS:.0f} s",
            busy["slow"] == 0,
        )
    first_import = r["ingest"]["per_account_seconds"][EXPORT_ACCOUNT]
    exported = r["ingest"]["per_account_records"][EXPORT_ACCOUNT]
    t.add(
        f"8 import while serving ({large['records']:,} records) vs the import of 1 (no server)",
        _rate(large["records"], large["seconds"]),
        _rate(exported, first_import),
        _x(large["records"] / large["seconds"] / (exported / first_import)),
        "",
    )
    median = sorted(small, key=lambda v: float(v["publish"]["held"]))[len(small) // 2]
    small_publish, large_publish = median["publish"], large["publish"]
    ratio = large_publish["held"] / small_publish["held"]

    def held(publish: dict[str, float]) -> str:
        return (
            f"holds the lock {_ms(publish['held'] * 1000)} (waited {_ms(publish['waited'] * 1000)};"
            f" clean-up after it {_ms(publish['cleanup'] * 1000)})"
        )

    t.add(
        f"8 publish: its transaction at the end of a {large['records']:,}- vs a "
        f"{small_size:,}-record import (median of {len(small)}), while serving",
        held(large_publish),
        held(small_publish),
        _x(ratio),
        "flat (≤ 2x)",
        ratio <= 2,
    )
    holds = large["holds"]
    t.add(
        f"8 write lock held by each transaction of the {large['records']:,}-record import "
        f"({holds['transactions']:,} transactions: batches, publish, clean-up)",
        f"p95 {_ms(holds['p95'] * 1000)} · max {_ms(holds['max'] * 1000)}",
        "",
        "",
        "each under 1 s",
        holds["max"] < SLOW_SECONDS,
    )
    small_rss = max(v["rss_peak"] for v in small)
    t.add(
        f"8 peak RSS of the importing process after the {small_size:,}- and the "
        f"{large['records']:,}-record imports",
        f"{small_rss:.0f} → {large['rss_peak']:.0f} MiB",
        f"at start {fr['start_rss']:.0f} MiB",
        f"{large['rss_peak'] / small_rss:.2f}x",
        "",
    )


def _findings(results: dict[str, Any]) -> list[str]:
    """Notes the table alone would hide."""
    notes = []
    changes = results["changes"]
    full = changes["full"]
    if not full["complete"]:
        notes += [
            f"Note: the full sync did not finish within {FULL_SYNC_BUDGET_SECONDS:.0f} s: "
            f"{full['pages']:,} of {changes['full_pages']:,} pages, "
            f"{full['seconds'] / full['pages']:,.2f} s each. Walking them all at that rate would "
            f"take about {changes['full_seconds'] / 3600:,.1f} h (an upper bound when a page "
            "costs the rest of its window, as early pages cost the most then).",
            "",
        ]
    return notes


def render(results: dict[str, Any], table: Table, command: str) -> str:
    from ownstream.store.sqlite.database import CACHE_KIB

    m = results["machine"]
    small_import = results["freeze"]["imports"][SMALL_ACCOUNTS[0]]["records"]
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {results['date']} in {results['elapsed'] / 60:.1f} min, at "
        f"{results['size']:,} records (3 connections of `{STREAM}`: 2 x `bench-api` runs, "
        "1 x `bench-export` import).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; Python {m['python']}, "
        f"SQLite {m['sqlite']}; {m['os']}. Its 1-minute load average, sampled at each phase, "
        f"went from {min(results['load']):.1f} to {max(results['load']):.1f} (above "
        f"{m['cores']}, other work shared the cores and latencies carry its noise).",
        "",
        "Each ratio is measured in the same run against the baseline beside it: ingest and "
        "re-import as records/s (ownstream ÷ baseline, higher is better); latencies as "
        "ownstream p50 ÷ baseline p50 (lower is better; p95 for the freeze check). Read pages "
        f"ask for `limit={PAGE_LIMIT}` as the owner; search asks for `limit={SEARCH_LIMIT}` and "
        "narrows to the first-ingested connection (oldest rows: the far end of newest-first "
        f"order). Latencies are over {results['repeats']} requests after 5 warm-up ones.",
        "",
        table.markdown(),
        "",
        *_findings(results),
        "Baselines: the *floor* parses the same JSON lines with orjson and inserts the same rows "
        "into records, record_changes, search_index (contentless FTS5) and stage_stats of a "
        "fresh database with the same schema and pragmas, "
        f"{FLOOR_TXN_ROWS:,} rows per transaction, then publishes each connection's stage in "
        'one small transaction ("SQL alone" is the time of those transactions); *dlt* loads '
        'the same lines with `write_disposition="merge"` on `id`, at most the first '
        f"{DLT_RECORDS:,} (a quarter of each file at full size, to keep the suite short), and "
        "is compared with ownstream's rate over its own first as many records; *SELECT* and "
        "*FTS5* run the statements the store runs for a page (the connections' published "
        "stages, then the page with the published-version condition), a detail read or a "
        "search (the stream's indexed fields, then the MATCH scoped by stream and connection "
        "tokens) straight on the same database file, without the API around them; the "
        "*published-version condition* rows time the page statement alone with and without "
        "that condition (without it, it is the query schema 1 ran); the aggregation rows (5) "
        f"take {reads.AGGREGATE_REPEATS} samples after one warm-up, and their floors "
        "run the same count, `GROUP BY` or sum on the records table alone, over every live row "
        "of the 3 connections, without grant scoping or the published-version condition (the "
        "run first checks that every live row is a published head, so both count the same "
        "records; the row also gives the floor's time with that condition, through the "
        "connections join the store uses), and the zoned count's floor shifts every moment by "
        f"one fixed offset ({reads.ZONE_BASELINE_OFFSET}) where the API follows the zone's "
        "rules, so its time is measured but its answer is not compared; the field-window floors "
        "take the same `substr` of the record's `body` (by offset, and around the first "
        "`instr` of the term) in SQL; the change-feed baseline "
        "walks the same pages with the store's change-feed query; the re-import floor is one "
        "`INSERT … ON CONFLICT DO UPDATE … WHERE data changed` per line, records table only; "
        "the delete floor runs the store's purge statements on the floor database (a "
        "contentless index forgets a row only when handed the text it indexed, so each chunk's "
        "data is read back and parsed).",
        "",
        "In-process requests go through Starlette's `TestClient`, whose thread portal costs about "
        "as much as the request itself: the *request floor* rows give that fixed cost. HTTP "
        "requests go to `ownstream serve` (with its worker) on a loopback port. Peak RSS is "
        "VmHWM of the process doing the ingest (the connector is a separate process), read "
        "when 1/4, 1/2 and 3/4 of the records had been ingested and at the end; SQLite's page "
        f"cache ({CACHE_KIB // 1024} MiB a connection) fills within the first quarter. A full "
        f"sync that does not finish within {FULL_SYNC_BUDGET_SECONDS:.0f} s is extrapolated from "
        "its pages so far.",
        "",
        "The freeze check (8) runs rounds of one owner write (a new grant via `POST "
        "/v1/owner/grants` and a rename via `PATCH /v1/owner/connections/…`, in turn) and two "
        "client reads (a first page and a selective search, with a client grant's token), "
        f"one round every {FREEZE_PACE_SECONDS * 1000:.0f} ms, against `ownstream serve`: "
        "first with nothing else running (the baseline), then while one process imports "
        f"{len(SMALL_ACCOUNTS)} archives of {small_import:,} records and one of the run's size "
        f"(at least {10 * small_import:,}), each into a new connection, one after another; the "
        "loop stops when that process exits. That process times each `publish`: how long its "
        "transaction waited for the write lock and then held it (the ratio compares the time "
        "held), and apart from it the clean-up it runs after committing; it times how long "
        "every write transaction of the large import held the lock (its batches, the publish "
        "and the clean-up: what an owner write can wait for); it reports its VmHWM after the "
        "small imports and after the large one.",
        "",
        "The mail rows (9): the mbox floor reads the same file with `mailbox.mbox` and parses "
        "each message with `email` (policy.default), reading the headers and decoding the text "
        "parts the importer reads; the import is both of its passes, record building and the "
        "whole runtime into SQLite (staged batches, published at the end). The IMAP baseline is "
        "a plain imapclient FETCH of the same messages from the same Dovecot, then the same "
        "FETCH followed by the stdlib parse.",
        "",
        "Regenerate with `make bench` (full size) or `make bench QUICK=1` (smoke size, written to\n"
        "`bench/out/benchmarks-quick.md`).",
        "",
    ]
    return "\n".join(lines)


# main -----------------------------------------------------------------------------------------
def run_suite(layout: Layout, *, with_dlt: bool, repeats: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from ownstream.api.app import create_app
    from ownstream.grants.scope import owner_connections
    from ownstream.home import Home

    started = time.perf_counter()
    loads: list[float] = []

    def step(message: str) -> None:
        """Log a phase and sample the load average: other work on the machine shows there."""
        loads.append(os.getloadavg()[0])
        log(message)

    results: dict[str, Any] = {
        "size": layout.size,
        "machine": machine(),
        "repeats": repeats,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    step(f"generating {layout.size:,} records in {layout.data}")
    results["generate"] = generate_data(layout)
    step("1. ingest through the runtime")
    results["ingest"] = run_child(layout, "ingest")
    connections: dict[str, str] = results["ingest"]["connections"]
    step("1. executemany floor (and the re-import and delete floors)")
    results["floor"] = run_child(layout, "floor", connections=connections)
    if with_dlt:
        step("1. dlt")
        results["dlt"] = run_child(layout, "dlt")
    step("2. re-import of an overlapping export")
    results["reimport"] = run_child(layout, "reimport")

    home = Home(layout.home)
    token = layout.token_file.read_text(encoding="utf-8").strip()
    db = open_raw(layout.home / "ownstream.db")
    single = connections[API_ACCOUNTS[0]]
    merged = sorted(connections.values())
    cases = page_cases(home, db, single, merged)
    owned = owner_connections(home.store, home.catalog, STREAM)
    results["reads"] = {}
    with TestClient(create_app(home)) as client:
        api = Api(client, token)
        step("3. reads in-process")
        results["reads"]["in-process"] = {
            "floor": bench_request_floor(api, repeats),
            "pages": bench_pages(api, db, cases, repeats, plain=True),
            "detail": bench_detail(api, db, single, repeats),
        }
        step("4. search")
        results["search"] = bench_search(api, db, owned, single, repeats)
        step("3. reads over HTTP")
        import httpx

        with http_server(layout) as base, httpx.Client(base_url=base, timeout=60) as http:
            remote = Api(http, token)
            results["reads"]["HTTP"] = {
                "floor": bench_request_floor(remote, repeats),
                "pages": bench_pages(remote, db, cases, repeats),
                "detail": bench_detail(remote, db, single, repeats),
            }
        step("5. aggregations and field windows")
        results["read_surface"] = reads.bench_reads(api, db, owned, measure, repeats)
        step("6. changes_since after an update pass")
        results["changes"] = bench_changes(layout, home, api, db)
        step("7. delete one connection")
        results["delete"] = bench_delete(home, api, db, connections, repeats)
    db.close()
    step("8. freeze check: requests to `ownstream serve` while imports run")
    results["freeze"] = bench_freeze(layout, token, connections[API_ACCOUNTS[1]], repeats)
    step("9. mail: mbox import and IMAP first sync")
    results["mail"] = mail.run(layout.work / "mail", **layout.mail_sizes())
    results["elapsed"] = time.perf_counter() - started
    results["load"] = [*loads, os.getloadavg()[0]]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE:,} records")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"records (default {FULL_SIZE:,}; below {QUICK_SIZE:,}, the freeze check's imports "
        "and the mail section shrink too)",
    )
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-dlt", action="store_true", help="skip the dlt baseline")
    parser.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help=f"requests per latency figure (default {REPEATS})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the report ('-' for nowhere)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=None,
        metavar="N",
        help="only profile an ingest of N records with cProfile",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = args.size or (QUICK_SIZE if args.quick else FULL_SIZE)

    if args.child:
        layout = Layout(args.work, size)
        result = CHILDREN[args.child](layout, json.loads(args.params))
        save_result(layout, args.child, result)
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="ownstream-bench-"))
    layout = Layout(work.resolve(), size)
    layout.results.mkdir(parents=True, exist_ok=True)
    try:
        if args.profile is not None:
            result = run_child(layout, "profile", records=args.profile)
            print(Path(result["report"]).read_text(encoding="utf-8"))
            print(f"{result['records'] / result['seconds']:,.0f} rec/s under the profiler")
            return 0
        with_dlt = not args.no_dlt
        missing = [m for m in DLT_MODULES if importlib.util.find_spec(m) is None]
        if with_dlt and missing:
            log(f"{', '.join(missing)} not installed (pip install -e '.[bench]'): no dlt baseline")
            with_dlt = False
        results = run_suite(layout, with_dlt=with_dlt, repeats=args.repeats)
        (layout.results / "all.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        table = build_table(results)
        command = "make bench" + (" QUICK=1" if args.quick else "")
        if args.size:
            command = f"python -m bench.run --size {args.size}"
        print(table.markdown())
        if args.output is None:
            # the committed report holds a full-size run; smoke sizes go beside the work files
            args.output = REPO / (
                "bench/out/benchmarks-quick.md" if args.quick else "docs/benchmarks.md"
            )
        if str(args.output) != "-":
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(render(results, table, command), encoding="utf-8")
            log(f"wrote {args.output}")
        return 0
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep or args.work is not None:
            log(f"work folder kept: {work}")


if __name__ == "__main__":
    raise SystemExit(main())
