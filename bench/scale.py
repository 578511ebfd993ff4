"""PostgreSQL figures: `python -m bench.scale [--quick]` (and `make bench`, after bench.run).

Two parts, on a throw-away cluster of the machine's PostgreSQL (`ownstream.dev.postgres`; fsync
on, synchronous_commit off: like SQLite's WAL with synchronous=NORMAL, a crash loses at most
the last moments, never consistency), all on loopback:

1. one column per backend, the same workload, seed and requests for both (bench/run.py's
   mail-like records, 3 connections sharing `bench_messages`): ingest through the runtime,
   record pages (first and 80 % deep, one connection and merged x3: the fan-in), search
   (selective, mid, unselective; all connections and one), and `changes_since` after 1 % of
   the records changed (plus the full sync's cost per page);
2. scale-out on PostgreSQL: the throughput of 1, 2 and 4 `ownstream worker` processes (one run
   at a time each) collecting N connections at once, and client reads per second with 1 and 2
   `ownstream serve` processes on one database, loaded by the same client processes.

Every loop is bounded (counts, or a fixed duration). `run()` returns the results and
`render()` the markdown, for bench/run.py to include; run alone, this module writes
docs/benchmarks-postgresql.md (a --quick run: bench/out/benchmarks-postgresql-quick.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import workload
from bench.servers import free_port
from bench.workload import STREAM, percentile
from ownstream.dev.processes import stop_process

REPO = Path(__file__).resolve().parents[1]
FULL_SIZE = 1_000_000
QUICK_SIZE = 20_000
SEED = 20260601  # bench/run.py's: the same records
ACCOUNTS = ("ada", "bo", "cy")  # two API runs, one export import
UPDATE_SHARE = 0.01
PAGE_LIMIT = 100
SEARCH_LIMIT = 10
SCALE_CONNECTIONS = 8
SCALE_WORKERS = (1, 2, 4)
SCALE_SERVERS = (1, 2)
CLIENT_PROCESSES = 4
DURABLE = {
    "fsync": "on",
    "synchronous_commit": "off",
    "full_page_writes": "on",
    "shared_buffers": "256MB",  # SQLite's page cache in bench/run.py is 256 MiB too
    "max_wal_size": "4GB",
}


def log(message: str) -> None:
    print(f"[bench.scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Sizes:
    def __init__(self, size: int, quick: bool) -> None:
        self.size = size
        self.repeats = 50 if quick else 200
        self.full_sync_budget = 10.0 if quick else 30.0
        self.per_scale_connection = 2_500 if quick else 25_000
        self.read_seconds = 3.0 if quick else 10.0

    def counts(self) -> dict[str, int]:
        base, extra = divmod(self.size, len(ACCOUNTS))
        return {a: base + (1 if i < extra else 0) for i, a in enumerate(ACCOUNTS)}


# data -----------------------------------------------------------------------------------------
def generate(work: Path, sizes: Sizes) -> dict[str, Path]:
    """The JSON-lines files (reused when a previous run made the same): per account its
    records, per API account its update pass, per scale-out connection its records."""
    data = work / "data"
    stamp = data / "stamp.json"
    wanted = {"size": sizes.size, "scale": sizes.per_scale_connection, "seed": SEED}
    files = {account: data / f"{account}.jsonl" for account in ACCOUNTS}
    files |= {f"{a}-updates": data / f"{a}-updates.jsonl" for a in ACCOUNTS[:2]}
    files |= {f"s{i}": data / f"s{i}.jsonl" for i in range(SCALE_CONNECTIONS)}
    if stamp.exists() and orjson.loads(stamp.read_bytes()) == wanted:
        return files
    shutil.rmtree(data, ignore_errors=True)
    for account, count in sizes.counts().items():
        workload.write_jsonl(files[account], workload.generate(account, count, SEED))
    fraction = UPDATE_SHARE * sizes.size / sum(sizes.counts()[a] for a in ACCOUNTS[:2])
    for account in ACCOUNTS[:2]:
        workload.write_jsonl(
            files[f"{account}-updates"],
            workload.updates(files[account], SEED, fraction=fraction),
        )
    for i in range(SCALE_CONNECTIONS):
        workload.write_jsonl(
            files[f"s{i}"], workload.generate(f"s{i}", sizes.per_scale_connection, SEED)
        )
    (export := data / "cy-export").mkdir()
    (export / "account").write_text("cy\n", encoding="utf-8")
    shutil.copy(files["cy"], export / "records.jsonl")
    stamp.write_bytes(orjson.dumps(wanted))
    return files


def register(home: Any, work: Path) -> None:
    """The shared definition and both bench connector types, rendered for this interpreter."""
    folder = work / "connectors"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "bench" / "connector.py", folder / "connector.py")
    home.catalog.add_definition(workload.DEFINITION, home.store)
    for template in sorted((REPO / "bench" / "manifests").glob("*.json")):
        document = orjson.loads(template.read_bytes())
        command = document["run"]["command"]
        document["run"]["command"] = [
            sys.executable if command[0] == "python3" else command[0],
            *command[1:],
        ]
        if document["acquisition_method"] == "provider_api":  # workers may run it
            document["refresh_policy"] = {"recommended_mode": "manual", "background_safe": True}
        target = folder / document["connector_key"]
        target.mkdir(exist_ok=True)
        (target / "manifest.json").write_bytes(orjson.dumps(document))
        home.catalog.add_manifest(target, home.store)


@contextlib.contextmanager
def database(url: str | None) -> Iterator[None]:
    """`Home` uses this PostgreSQL database (None: SQLite in the data directory) meanwhile."""
    from ownstream.home import DATABASE_URL_ENV

    before = os.environ.pop(DATABASE_URL_ENV, None)
    if url is not None:
        os.environ[DATABASE_URL_ENV] = url
    try:
        yield
    finally:
        os.environ.pop(DATABASE_URL_ENV, None)
        if before is not None:
            os.environ[DATABASE_URL_ENV] = before


def raw_query(home: Any, url: str | None) -> Callable[[str, tuple[Any, ...]], list[Any]]:
    """Straight SQL on the home's database (`?` marks on both backends)."""
    if url is None:
        db = sqlite3.connect(home.path / "ownstream.db")
        return lambda sql, params: db.execute(sql, params).fetchall()
    import psycopg

    pg = psycopg.connect(url, autocommit=True)
    return lambda sql, params: pg.execute(sql.replace("?", "%s"), params).fetchall()


# timing ---------------------------------------------------------------------------------------
def timed(action: Callable[[], Any], repeats: int, warmup: int = 5) -> dict[str, float]:
    """p50, p95 and p99 of `action`, in milliseconds."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return {f"p{q}": percentile(samples, q / 100) for q in (50, 95, 99)}


class Api:
    """GETs against the app in-process (Starlette's TestClient), checked for 200."""

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.client.get(path, params=params, headers=self.headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body


# 1. a column per backend ----------------------------------------------------------------------
def column(work: Path, files: dict[str, Path], sizes: Sizes, url: str | None) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from ownstream.api.app import create_app
    from ownstream.home import Home
    from ownstream.owner import AccessOperations
    from ownstream.reads import cursors

    backend = "postgresql" if url else "sqlite"
    home_dir = work / f"home-{backend}"
    shutil.rmtree(home_dir, ignore_errors=True)
    found: dict[str, Any] = {}
    with database(url):
        home = Home(home_dir)
        register(home, work)
        token, _ = AccessOperations(home).mint_owner_token()
        runtime = home.runtime()
        log(f"{backend}: ingest of {sizes.size:,} records")
        started = time.perf_counter()
        connections = {}
        for account in ACCOUNTS[:2]:
            connected = runtime.connect(
                "bench-api", secrets={}, settings={"account": account, "data": str(files[account])}
            )
            connections[account] = connected.connection.connection_id
            (outcome,) = runtime.run_connection(connections[account])
            if outcome.status != "succeeded":
                raise RuntimeError(f"ingest of {account}: {outcome.to_dict()}")
        imported = runtime.import_artifact("bench-export", files["cy"].parent / "cy-export")
        connections["cy"] = imported.receipt.connection_id
        found["ingest_seconds"] = time.perf_counter() - started
        query = raw_query(home, url)
        with TestClient(create_app(home)) as client:
            api = Api(client, token)
            log(f"{backend}: pages")
            found["pages"] = pages(api, home, query, connections, sizes, cursors.encode)
            log(f"{backend}: search")
            found["search"] = search(api, connections["ada"], sizes)
            log(f"{backend}: changes_since")
            found["changes"] = changes(api, home, files, sizes, cursors.encode)
        home.store.close()
    return found


def _deep(query: Callable[[str, tuple[Any, ...]], list[Any]], ids: list[str]) -> tuple[Any, ...]:
    """The (cursor value, connection, key) ~80 % down the newest-first order of `ids`."""
    marks = ", ".join("?" * len(ids))
    where = f"connection_id IN ({marks}) AND stream = ? AND NOT deleted AND parked = 0"
    [(total,)] = query(f"SELECT count(*) FROM records WHERE {where}", (*ids, STREAM))
    [row] = query(
        f"SELECT cursor_value, connection_id, record_key FROM records WHERE {where} "
        "ORDER BY cursor_value DESC, connection_id DESC, record_key DESC LIMIT 1 OFFSET ?",
        (*ids, STREAM, int(total * 0.8)),
    )
    return tuple(row)


def pages(
    api: Api,
    home: Any,
    query: Callable[[str, tuple[Any, ...]], list[Any]],
    connections: dict[str, str],
    sizes: Sizes,
    encode: Callable[[Any, str, dict[str, Any]], str],
) -> dict[str, Any]:
    path = f"/v1/streams/{STREAM}/records"
    found = {}
    for label, ids, narrowed in (
        ("1 connection", [connections["ada"]], connections["ada"]),
        ("merged x3", sorted(connections.values()), None),
    ):
        base: dict[str, Any] = {"limit": PAGE_LIMIT}
        if narrowed is not None:
            base["connection_id"] = narrowed
        value, connection_id, key = _deep(query, ids)
        deep = encode(
            home.vault,
            "page",
            {"s": STREAM, "o": "desc", "v": value, "c": connection_id, "r": key},
        )
        for depth, params in (("first page", base), ("deep page (80 %)", {**base, "cursor": deep})):
            assert len(api.get(path, params)["data"]) == PAGE_LIMIT
            found[f"{depth}, {label}"] = timed(partial(api.get, path, params), sizes.repeats)
    return found


def search(api: Api, narrowed: str, sizes: Sizes) -> dict[str, Any]:
    found = {}
    for label, term in (
        ("selective", workload.SELECTIVE),
        ("mid", workload.MID),
        ("unselective", workload.UNSELECTIVE),
    ):
        for scope, extra in (
            ("all connections", {}),
            ("connection_id", {"connection_id": narrowed}),
        ):
            params = {"q": term, "limit": SEARCH_LIMIT, **extra}
            found[f"{label} ({term}), {scope}"] = {
                **timed(partial(api.get, "/v1/search", params), sizes.repeats),
                "hits": len(api.get("/v1/search", params)["data"]),
            }
    return found


def walk(api: Api, params: dict[str, Any], budget: float | None) -> dict[str, Any]:
    """Follow next_cursor to the end, or for `budget` seconds."""
    path = f"/v1/streams/{STREAM}/records"
    pages = records = 0
    started = time.perf_counter()
    while True:
        body = api.get(path, params)
        pages += 1
        records += len(body["data"])
        if not body["has_more"]:
            return {
                "seconds": time.perf_counter() - started,
                "pages": pages,
                "records": records,
                "complete": True,
            }
        params = {**params, "cursor": body["next_cursor"]}
        if budget is not None and time.perf_counter() - started > budget:
            return {
                "seconds": time.perf_counter() - started,
                "pages": pages,
                "records": records,
                "complete": False,
            }


def changes(
    api: Api,
    home: Any,
    files: dict[str, Path],
    sizes: Sizes,
    encode: Callable[[Any, str, dict[str, Any]], str],
) -> dict[str, Any]:
    store = home.store
    token = encode(
        home.vault, "since", {"s": STREAM, "e": store.epoch(), "seq": store.change_horizon()}
    )
    runtime = home.runtime()
    changed = 0
    for account in ACCOUNTS[:2]:
        connected = runtime.connect(
            "bench-api",
            secrets={},
            settings={"account": account, "data": str(files[f"{account}-updates"])},
        )
        (outcome,) = runtime.run_connection(connected.connection.connection_id)
        changed += outcome.tally.updated
    incremental = walk(api, {"changes_since": token, "limit": PAGE_LIMIT}, None)
    if incremental["records"] != changed:
        raise RuntimeError(f"changes_since returned {incremental['records']}, not {changed}")
    full = walk(api, {"changes_since": "beginning", "limit": PAGE_LIMIT}, sizes.full_sync_budget)
    return {
        "changed": changed,
        "incremental": incremental,
        "full_ms_per_page": full["seconds"] / full["pages"] * 1000,
    }


# 2. scale-out ---------------------------------------------------------------------------------
@contextlib.contextmanager
def processes(commands: list[list[str]], env: dict[str, str]) -> Iterator[list[Any]]:
    """Child processes for the duration, stopped by their own pids."""
    started = [
        subprocess.Popen(
            c, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for c in commands
    ]
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            stop_process(process, grace=30)


def workers(cluster: Any, work: Path, files: dict[str, Path], sizes: Sizes) -> dict[int, Any]:
    """Records per second of k worker processes collecting SCALE_CONNECTIONS connections,
    from the first run's start to the last run's end (process start-up excluded)."""
    from ownstream.clock import parse_iso
    from ownstream.home import Home

    found = {}
    for count in SCALE_WORKERS:
        name = f"scale_workers_{count}"
        cluster.drop_database(name)
        url = cluster.create_database(name)
        home_dir = work / f"home-workers-{count}"
        shutil.rmtree(home_dir, ignore_errors=True)
        with database(url):
            home = Home(home_dir)
            register(home, work)
            runtime = home.runtime()
            ids = []
            for i in range(SCALE_CONNECTIONS):
                connected = runtime.connect(
                    "bench-api",
                    secrets={},
                    settings={"account": f"s{i}", "data": str(files[f"s{i}"])},
                )
                ids.append(connected.connection.connection_id)
                home.store.put_schedule(
                    ids[-1],
                    enabled=True,
                    interval_seconds=86_400,
                    jitter_seconds=0,
                    next_due_at="2000-01-01T00:00:00.000Z",
                    origin="owner",
                )
            env = {**os.environ, "OWNSTREAM_HOME": str(home_dir)}
            command = [
                sys.executable,
                "-m",
                "ownstream",
                "worker",
                "--poll",
                "0.2",
                "--parallel",
                "1",
            ]
            log(f"scale-out: {count} worker process(es), {SCALE_CONNECTIONS} connections")
            deadline = time.monotonic() + 60 + SCALE_CONNECTIONS * sizes.per_scale_connection / 200
            with processes([command] * count, env):
                while not all(
                    (r := home.store.runs(c, limit=1)) and r[0].status != "running" for c in ids
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the workers did not finish in time")
                    time.sleep(0.25)
            runs = [home.store.runs(c, limit=1)[0] for c in ids]
            if any(r.status != "succeeded" for r in runs):
                raise RuntimeError(f"a scaled run failed: {[r.error for r in runs]}")
            first = min(parse_iso(r.started_at) for r in runs)
            last = max(parse_iso(r.ended_at) for r in runs if r.ended_at)
            seconds = (last - first).total_seconds()
            found[count] = {
                "seconds": seconds,
                "records": SCALE_CONNECTIONS * sizes.per_scale_connection,
            }
            home.store.close()
        cluster.drop_database(name)
    return found


def servers(url: str, work: Path, sizes: Sizes) -> dict[int, Any]:
    """Client reads per second (first page of one connection, limit 100, as the owner) with 1
    and 2 serve processes on the column's PostgreSQL database, from CLIENT_PROCESSES clients."""
    from ownstream.home import Home
    from ownstream.owner import AccessOperations

    home_dir = work / "home-postgresql"
    with database(url):
        home = Home(home_dir)
        token, _ = AccessOperations(home).mint_owner_token()
        [connection] = [c.connection_id for c in home.store.connections()][:1]
        home.store.close()
    env = {**os.environ, "OWNSTREAM_HOME": str(home_dir), "OWNSTREAM_DATABASE_URL": url}
    found = {}
    for count in SCALE_SERVERS:
        ports = [free_port() for _ in range(count)]
        public = f"http://127.0.0.1:{free_port()}"
        commands = [
            [
                sys.executable,
                "-m",
                "ownstream",
                "serve",
                "--no-worker",
                "--port",
                str(port),
                "--public-url",
                public,
                "--log-level",
                "warning",
            ]
            for port in ports
        ]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        log(f"scale-out: reads with {count} serve process(es)")
        with processes(commands, env):
            for base in bases:
                _wait_up(base)
            clients = [
                [
                    sys.executable,
                    "-m",
                    "bench.scale",
                    "--client",
                    bases[i % count],
                    "--token",
                    token,
                    "--connection",
                    connection,
                    "--seconds",
                    str(sizes.read_seconds),
                ]
                for i in range(CLIENT_PROCESSES)
            ]
            with processes(clients, env) as running:
                reads = sum(
                    int(p.communicate(timeout=sizes.read_seconds + 120)[0]) for p in running
                )
        found[count] = {"reads": reads, "seconds": sizes.read_seconds}
    return found


def _wait_up(base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/.well-known/oauth-protected-resource").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base} did not come up")
        time.sleep(0.1)


def client(base: str, token: str, connection: str, seconds: float) -> int:
    """One load-generating client: first pages, back to back, for `seconds`; reads done."""
    done = 0
    params: dict[str, str | int] = {"limit": PAGE_LIMIT, "connection_id": connection}
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if http.get(f"/v1/streams/{STREAM}/records", params=params).status_code == 200:
                done += 1
    return done


# the report -----------------------------------------------------------------------------------
def run(work: Path, *, size: int, quick: bool) -> dict[str, Any]:
    """Both parts; what `render` reports."""
    from ownstream.dev.postgres import PostgresCluster

    sizes = Sizes(size, quick)
    started = time.perf_counter()
    log(f"generating {size:,} records (and the scale-out files) in {work / 'data'}")
    files = generate(work, sizes)
    results: dict[str, Any] = {
        "size": size,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    with PostgresCluster(settings=DURABLE) as cluster:
        results["machine"] = machine(cluster)
        url = cluster.create_database("bench_column")
        results["sqlite"] = column(work, files, sizes, None)
        results["postgresql"] = column(work, files, sizes, url)
        results["workers"] = workers(cluster, work, files, sizes)
        results["servers"] = servers(url, work, sizes)
    results["elapsed"] = time.perf_counter() - started
    return results


def machine(cluster: Any) -> dict[str, str]:
    import psycopg

    with psycopg.connect(cluster.url("postgres")) as db:
        row = db.execute("SHOW server_version").fetchone()
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu
        )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": str(row[0]) if row else "?",
    }


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _x(value: float) -> str:
    return f"{value:.2f}x"


def render(r: dict[str, Any]) -> str:
    sq, pg = r["sqlite"], r["postgresql"]
    m = r["machine"]
    lines = [
        "## PostgreSQL (`python -m bench.scale`)",
        "",
        f"Produced on {r['date']} in {r['elapsed'] / 60:.1f} min at {r['size']:,} records; "
        f"{m['cpu']}, {m['cores']} cores; Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgresql']} (fsync on, synchronous_commit off, shared_buffers 256MB). "
        "Both columns run the same workload and the same requests, in-process; latencies are "
        "p50 (p95 or p99) over the same number of requests; ratios are PostgreSQL ÷ SQLite.",
        "",
        "| Figure | SQLite | PostgreSQL | ratio |",
        "|---|---|---|---|",
    ]
    rate = {k: r["size"] / c["ingest_seconds"] for k, c in (("sqlite", sq), ("postgresql", pg))}
    lines.append(
        f"| 1 ingest through the runtime (2 API runs + 1 import) | {rate['sqlite']:,.0f} rec/s "
        f"({sq['ingest_seconds']:.0f} s) | {rate['postgresql']:,.0f} rec/s "
        f"({pg['ingest_seconds']:.0f} s) | {_x(rate['postgresql'] / rate['sqlite'])} |"
    )
    for name, s in sq["pages"].items():
        p = pg["pages"][name]
        lines.append(
            f"| 3 {name} (limit {PAGE_LIMIT}) | p50 {_ms(s['p50'])} · p95 "
            f"{_ms(s['p95'])} | p50 {_ms(p['p50'])} · p95 {_ms(p['p95'])} | "
            f"{_x(p['p50'] / s['p50'])} |"
        )
    for depth in ("first page", "deep page (80 %)"):
        fan = [
            c["pages"][f"{depth}, merged x3"]["p50"] / c["pages"][f"{depth}, 1 connection"]["p50"]
            for c in (sq, pg)
        ]
        lines.append(
            f"| 3 fan-in: merged x3 ÷ 1 connection, {depth} | {_x(fan[0])} | {_x(fan[1])} | |"
        )
    for name, s in sq["search"].items():
        p = pg["search"][name]
        lines.append(
            f"| 4 search {name} | p50 {_ms(s['p50'])} · p99 {_ms(s['p99'])} | "
            f"p50 {_ms(p['p50'])} · p99 {_ms(p['p99'])} | {_x(p['p50'] / s['p50'])} |"
        )
    cs, cp = sq["changes"], pg["changes"]
    lines.append(
        f"| 5 changes_since after {cs['changed']:,} records changed ({UPDATE_SHARE:.0%}) | "
        f"{cs['incremental']['seconds']:.2f} s, {cs['incremental']['pages']} pages | "
        f"{cp['incremental']['seconds']:.2f} s, {cp['incremental']['pages']} pages | "
        f"{_x(cp['incremental']['seconds'] / cs['incremental']['seconds'])} |"
    )
    lines.append(
        f"| 5 full sync (changes_since=beginning), per page of {PAGE_LIMIT} | "
        f"{_ms(cs['full_ms_per_page'])} | {_ms(cp['full_ms_per_page'])} | "
        f"{_x(cp['full_ms_per_page'] / cs['full_ms_per_page'])} |"
    )
    lines += [
        "",
        "| Scale-out on one PostgreSQL database | throughput | vs one process |",
        "|---|---|---|",
    ]
    workers, servers = r["workers"], r["servers"]
    one = workers[min(workers)]
    for count, w in sorted(workers.items()):
        rate_w = w["records"] / w["seconds"]
        lines.append(
            f"| {count} `ownstream worker` process(es), one run at a time each, "
            f"{SCALE_CONNECTIONS} connections x {w['records'] // SCALE_CONNECTIONS:,} records | "
            f"{rate_w:,.0f} rec/s ({w['seconds']:.1f} s) | "
            f"{_x(rate_w / (one['records'] / one['seconds']))} |"
        )
    base = servers[min(servers)]
    for count, s in sorted(servers.items()):
        lines.append(
            f"| {count} `ownstream serve` process(es), first pages (limit {PAGE_LIMIT}) from "
            f"{CLIENT_PROCESSES} client processes over HTTP | "
            f"{s['reads'] / s['seconds']:,.0f} reads/s | {_x(s['reads'] / base['reads'])} |"
        )
    lines += [
        "",
        "The scale-out figures are bounded by the machine: every process (workers or servers, "
        "their connector processes, the load-generating clients and PostgreSQL itself) shares "
        f"its {m['cores']} cores, so more processes than cores add contention, not throughput. "
        "On more cores the same processes spread out.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE:,} records")
    parser.add_argument("--size", type=int, default=None, help=f"records (default {FULL_SIZE:,})")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--output", type=Path, default=None, help="report file ('-': none)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--connection", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(client(args.client, args.token, args.connection, args.seconds))
        return 0
    size = args.size or (QUICK_SIZE if args.quick else FULL_SIZE)
    work = args.work or Path(tempfile.mkdtemp(prefix="ownstream-scale-"))
    results = run(work, size=size, quick=args.quick)
    report = render(results)
    print(report)
    output = args.output or (
        REPO / "bench" / "out" / "benchmarks-postgresql-quick.md"
        if args.quick
        else REPO / "docs" / "benchmarks-postgresql.md"
    )
    if str(output) != "-":
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("# Benchmarks: PostgreSQL\n\n" + report, encoding="utf-8")
        log(f"wrote {output}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
