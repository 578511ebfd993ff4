"""ownstream against what a user would otherwise do: `python -m bench.versus [--quick]`.

The other way, on the same generated Spotify extended-history archive: unzip it, insert every
`Streaming_History_Audio_*.json` into one table with `ts` as its primary key (sqlite-utils'
`insert_all`, as `sqlite-utils insert --pk ts` runs it), `enable_fts` on the three fields
ownstream makes searchable in `listening_history` (track, artist and album names), and serve the
file with `datasette serve`. ownstream's way: `ownstream import spotify-export <zip>` into a
fresh home, then `ownstream serve` read with a client grant's token.

Each import runs in a child process measured with `wait4` (wall, user + system CPU, peak RSS,
bytes written). Disk is the database and its WAL after the import, per imported entry, broken
down by SQLite's `dbstat`. Requests/s come from a bounded loopback load generator (4 threads,
each its own keep-alive connection, for a fixed time), run against the two servers in turn, the
order swapped every round. Every ratio compares figures measured in the same run; nothing here
asserts a time. `make bench` runs it after `bench.run`; it writes its own section of
docs/benchmarks.md ("Against sqlite-utils and Datasette", between its markers: the rest of the file
is left as it is) or, with `--quick`, bench/out/benchmarks-versus-quick.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.servers import free_port, ownstream_script, ownstream_server, server

REPO = Path(__file__).resolve().parents[1]
FULL_PLAYS = 300_000
QUICK_PLAYS = 20_000
RSS_SIZES = (100_000, 1_000_000)  # imports whose peak RSS shows whether memory stays flat
QUICK_RSS_SIZES = (5_000, 40_000)
SEED = 18
USER = "versus.listener"
STREAM = "listening_history"
TABLE = "plays"
KEY = "ts"
SEARCHABLE = (  # the archive's names for listening_history's searchable fields
    "master_metadata_track_name",
    "master_metadata_album_artist_name",
    "master_metadata_album_album_name",
)
PAGE_LIMIT = 100
SEARCH_LIMIT = 25
CONCURRENCY = 4
ROUNDS = 2  # per side and case, alternating
SECONDS = 5.0  # one side's share of a round
QUICK_SECONDS = 1.0
DEEP_SHARE = 0.8
RSS_LIMIT_MIB = 128
FLAT_GROWTH = 1.25
START_MARK = "<!-- versus:start -->"
END_MARK = "<!-- versus:end -->"
REPORT = REPO / "docs" / "benchmarks.md"
QUICK_REPORT = REPO / "bench" / "out" / "benchmarks-versus-quick.md"
# What the table (issue 18) measured before the work: pages must stay this far ahead.
PAGE_LEAD = {"first page": 2.6, "deep page (80 %)": 49.0}


def log(message: str) -> None:
    print(f"[versus {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# the archive ------------------------------------------------------------------------------------
def write_archive(plays: int, folder: Path) -> Path:
    """A deterministic extended-history archive of `plays` music plays (plus the podcast and
    audiobook listens the generator interleaves), about 30,000 plays a year."""
    from ownstream.dev.spotify_data import generate_user
    from ownstream.dev.spotify_data import write_archive as write

    target = folder / f"{plays}"
    if (target / "my_spotify_data.zip").exists():
        return target / "my_spotify_data.zip"
    shutil.rmtree(target, ignore_errors=True)
    listener = generate_user(USER, seed=SEED, plays=plays, years=max(1.0, plays / 30_000))
    return write(listener, target, kind="extended")


def archive_entries(archive: Path) -> int:
    """Entries of the archive's audio histories: what both sides store, one row or record each."""
    with zipfile.ZipFile(archive) as opened:
        return sum(
            len(json.loads(opened.read(name)))
            for name in opened.namelist()
            if Path(name).name.startswith("Streaming_History_Audio_")
        )


# timed child processes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    rss_mib: float
    written_mib: float


def timed(command: list[str], cwd: Path | None = None) -> Run:
    """Run a command to completion: its wall time, CPU (user + system), peak RSS and writes.

    Peak RSS is the child's VmHWM, read every 50 ms while it runs (`ru_maxrss` would count the
    forking parent's memory: Linux keeps a process's high-water mark across exec)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    status_file = Path(f"/proc/{process.pid}/status")
    peak_kib = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError):
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
        time.sleep(0.05)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode})")
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mib=peak_kib / 1024,
        written_mib=usage.ru_oublock * 512 / 2**20,
    )


def _import_command(archive: Path, home: Path) -> list[str]:
    command = [ownstream_script(), "--home", str(home), "import", "spotify-export"]
    return [*command, str(archive), "--json"]


def import_ownstream(archive: Path, home: Path) -> Run:
    shutil.rmtree(home, ignore_errors=True)
    return timed(_import_command(archive, home))


def import_sqlite_utils(archive: Path, folder: Path, *, again: bool = False) -> Run:
    """The user's import in a child process (this module's `--child`): unzip, insert, FTS."""
    if not again:
        shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "bench.versus", "--child", "sqlite-utils"]
    command += ["--archive", str(archive), "--into", str(folder)]
    return timed([*command, "--again"] if again else command, cwd=REPO)


def child_sqlite_utils(archive: Path, folder: Path, again: bool) -> None:
    """Unzip, then insert each audio history file with `ts` as primary key and enable FTS on
    the searchable fields; `again` re-inserts the same files with `replace` (its re-import)."""
    import sqlite_utils  # type: ignore[import-not-found, unused-ignore]

    unzipped = folder / "unzipped"
    shutil.rmtree(unzipped, ignore_errors=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(unzipped)
    db = sqlite_utils.Database(folder / "spotify.db")
    table = db.table(TABLE)
    for path in sorted(unzipped.rglob("Streaming_History_Audio_*.json")):
        rows = json.loads(path.read_bytes())
        table.insert_all(rows, pk=KEY, alter=True, replace=again)
    if not again:
        table.enable_fts(list(SEARCHABLE))
    db.close()


# disk -------------------------------------------------------------------------------------------
OWNSTREAM_PARTS = {
    "record_rows": "record rows (data: zstd against a per-stream dictionary; columns)",
    "records_page": "records_page index (pages)",
    "sqlite_autoindex_record_rows_1": "records key index (unique)",
    "records_match": "records_match index (record rules)",
    "records_parked": "records_parked index",
    "record_changes": "record_changes (change log)",
    "changes_by_stage": "changes_by_stage index",
    "changes_by_record": "changes_by_record index",
    "record_evidence": "record_evidence (sightings)",
    "evidence_by_stage": "evidence_by_stage index",
    "record_dictionaries": "record dictionaries (zstd, one per connection and stream)",
    "record_scopes": "record scopes (connection and stream of each scope number)",
}
SQLITE_UTILS_PARTS = {TABLE: f"{TABLE} (rows)", f"sqlite_autoindex_{TABLE}_1": "primary key index"}


def disk(db: Path, parts: dict[str, str], fts: str) -> dict[str, int]:
    """Bytes per component (dbstat pages), the FTS shadow tables as one, and the WAL."""
    found: dict[str, int] = {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as opened:
        for name, size in opened.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            label = (
                parts.get(name)
                or ("search index (FTS5 shadow tables)" if name.startswith(fts) else None)
                or "everything else"
            )
            found[label] = found.get(label, 0) + int(size)
    wal = Path(f"{db}-wal")
    found["WAL"] = wal.stat().st_size if wal.exists() else 0
    return found


def db_size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


# servers ----------------------------------------------------------------------------------------
def datasette_server(db: Path) -> contextlib.AbstractContextManager[str]:
    script = shutil.which("datasette", path=str(Path(sys.executable).parent))
    if script is None:
        raise RuntimeError("no `datasette` beside this interpreter (pip install -e '.[bench]')")
    port = free_port()
    command = [script, "serve", str(db), "--host", "127.0.0.1", "--port", str(port)]
    # facet suggestions decorate its HTML pages: off, they would cost it seconds a table page
    command += ["--setting", "suggest_facets", "off"]
    return server(command, port, "/-/versions.json")


def client_token(home: Path, base: str) -> str:
    """A client grant's token for listening_history (all its fields), issued by the owner."""
    import httpx

    from ownstream.home import Home
    from ownstream.owner import AccessOperations

    owner, _ = AccessOperations(Home(home)).mint_owner_token()
    issued = httpx.post(
        base + "/v1/owner/grants",
        json={"client_id": "versus", "streams": [{"name": STREAM}]},
        headers={"Authorization": f"Bearer {owner}"},
        timeout=60,
    )
    if issued.status_code != 201:
        raise RuntimeError(f"POST /v1/owner/grants → {issued.status_code}: {issued.text}")
    token: str = issued.json()["access_token"]
    return token


# the load generator -----------------------------------------------------------------------------
@dataclass
class Load:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[len(ordered) // 2] * 1000 if ordered else 0.0


def load(
    base: str, path: str, params: dict[str, str], headers: dict[str, str], seconds: float
) -> Load:
    """`CONCURRENCY` threads, each with its own keep-alive connection, send the same request
    back to back for `seconds`; every answer must be 200."""
    import httpx

    stop = time.perf_counter() + seconds
    result = Load()
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            while time.perf_counter() < stop and not failures:
                began = time.perf_counter()
                response = http.get(path, params=params)
                took = time.perf_counter() - began
                if response.status_code != 200:
                    failures.append(
                        f"GET {path} {params} → {response.status_code}: {response.text[:300]}"
                    )
                    return
                with lock:
                    result.requests += 1
                    result.latencies.append(took)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    return result


@dataclass(frozen=True)
class Case:
    """One kind of request, as each side asks it."""

    label: str
    ownstream: tuple[str, dict[str, str]]
    datasette: tuple[str, dict[str, str]]
    target: float | None  # the least ownstream ÷ Datasette requests/s ratio to meet


def compare(
    cases: list[Case],
    own_base: str,
    own_headers: dict[str, str],
    datasette_base: str,
    seconds: float,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    """Each case against each server in turn, the order swapped every round."""
    found: dict[str, dict[str, Any]] = {}
    for case in cases:
        sides = {"ownstream": Load(), "datasette": Load()}
        for round_index in range(rounds):
            order = ["ownstream", "datasette"]
            if round_index % 2:
                order.reverse()
            for side in order:
                base, headers = (
                    (own_base, own_headers) if side == "ownstream" else (datasette_base, {})
                )
                path, params = case.ownstream if side == "ownstream" else case.datasette
                measured = load(base, path, params, headers, seconds)
                total = sides[side]
                total.requests += measured.requests
                total.seconds += measured.seconds
                total.latencies += measured.latencies
        found[case.label] = {
            side: {"rate": value.rate, "p50_ms": value.p50_ms, "requests": value.requests}
            for side, value in sides.items()
        }
        log(
            f"{case.label}: ownstream {sides['ownstream'].rate:,.0f}/s, "
            f"Datasette {sides['datasette'].rate:,.0f}/s"
        )
    return found


# what to ask ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Terms:
    rare: str  # every word of one rarely played track's title and artist
    rare_hits: int
    common: str  # the word in the most entries
    common_hits: int


def pick_terms(db: Path) -> Terms:
    """Search terms from the baseline's own FTS vocabulary (plain ASCII words, which both
    tokenizers split alike)."""
    with contextlib.closing(sqlite3.connect(db)) as opened:
        opened.execute(f"CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, {TABLE}_fts, 'row')")
        common, common_hits = opened.execute(
            "SELECT term, doc FROM temp.vocab WHERE length(term) >= 3 AND term GLOB '[a-z]*' "
            "AND term NOT GLOB '*[^a-z]*' ORDER BY doc DESC LIMIT 1"
        ).fetchone()
        candidates = opened.execute(
            f"SELECT {SEARCHABLE[0]}, {SEARCHABLE[1]}, count(*) AS plays FROM {TABLE} "
            f"WHERE {SEARCHABLE[0]} IS NOT NULL GROUP BY 1, 2 ORDER BY plays, 1, 2"
        ).fetchall()
        best: tuple[int, str] | None = None
        for track, artist, _ in candidates:
            words = f"{track} {artist}".lower().split()
            if not all(w.isascii() and w.isalpha() for w in words) or len(words) < 4:
                continue
            query = " ".join(dict.fromkeys(words))
            score = len(query.split())
            if best is None or score > best[0]:
                best = (score, query)
            if score >= 7:
                break
        if best is None:
            raise RuntimeError("no track with four or more plain words to search for")
        rare = best[1]
        match = " AND ".join(f'"{w}"' for w in rare.split())
        (rare_hits,) = opened.execute(
            f"SELECT count(*) FROM {TABLE}_fts WHERE {TABLE}_fts MATCH ?", (match,)
        ).fetchone()
    return Terms(rare, int(rare_hits), str(common), int(common_hits))


def deep_positions(own_db: Path, baseline_db: Path, home: Path) -> tuple[str, str]:
    """Cursors of the page that starts ~80 % down newest-first: ownstream's (sealed, as its
    pages issue them) and Datasette's (`_next`, fetched below from Datasette itself)."""
    from ownstream.home import Home
    from ownstream.reads.cursors import page_cursor
    from ownstream.store.base import StoredRecord

    with contextlib.closing(sqlite3.connect(f"file:{own_db}?mode=ro", uri=True)) as opened:
        (total,) = opened.execute(
            "SELECT count(*) FROM records WHERE stream = ? AND deleted = 0 AND parked = 0",
            (STREAM,),
        ).fetchone()
        cursor_value, connection_id, record_key = opened.execute(
            "SELECT cursor_value, connection_id, record_key FROM records WHERE stream = ? "
            "AND deleted = 0 AND parked = 0 "
            "ORDER BY cursor_value DESC, connection_id DESC, record_key DESC LIMIT 1 OFFSET ?",
            (STREAM, int(total * DEEP_SHARE)),
        ).fetchone()
    last = StoredRecord(connection_id, STREAM, record_key, {}, "", cursor_value)
    own = page_cursor(Home(home).vault, STREAM, "desc", last)
    with contextlib.closing(sqlite3.connect(f"file:{baseline_db}?mode=ro", uri=True)) as opened:
        (rows,) = opened.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        (ts,) = opened.execute(
            f"SELECT {KEY} FROM {TABLE} ORDER BY {KEY} DESC LIMIT 1 OFFSET ?",
            (int(rows * DEEP_SHARE),),
        ).fetchone()
    return own, str(ts)


def datasette_next(base: str, ts: str) -> str:
    """Datasette's own `_next` token for the row whose `ts` is `ts`, newest first."""
    import httpx

    answer = httpx.get(
        f"{base}/spotify/{TABLE}.json",
        params={"_sort_desc": KEY, "_size": "1", f"{KEY}__lte": ts},
        timeout=60,
    ).json()
    token = answer.get("next")
    if not token:
        raise RuntimeError(f"Datasette gave no next token: {str(answer)[:300]}")
    return str(token)


def cases(terms: Terms, own_deep: str, datasette_deep: str, connection_id: str) -> list[Case]:
    records = f"/v1/streams/{STREAM}/records"
    table = f"/spotify/{TABLE}.json"
    newest = {"_sort_desc": KEY}
    search = {"streams": STREAM, "limit": str(SEARCH_LIMIT)}
    searched = {**newest, "_size": str(SEARCH_LIMIT)}
    return [
        Case(
            "first page",
            (records, {"limit": str(PAGE_LIMIT)}),
            (table, {**newest, "_size": str(PAGE_LIMIT)}),
            PAGE_LEAD["first page"],
        ),
        Case(
            "deep page (80 %)",
            (records, {"limit": str(PAGE_LIMIT), "cursor": own_deep}),
            (table, {**newest, "_size": str(PAGE_LIMIT), "_next": datasette_deep}),
            PAGE_LEAD["deep page (80 %)"],
        ),
        Case(
            f"search, rare words ({terms.rare_hits} hits)",
            ("/v1/search", {**search, "q": terms.rare}),
            (table, {**searched, "_search": terms.rare}),
            1.0,
        ),
        Case(
            f"search, common term ({terms.common_hits:,} hits)",
            ("/v1/search", {**search, "q": terms.common}),
            (table, {**searched, "_search": terms.common}),
            1.0,
        ),
        Case(
            "search, common term, one connection (a column filter in Datasette)",
            ("/v1/search", {**search, "q": terms.common, "connection_id": connection_id}),
            (table, {**searched, "_search": terms.common, "username__exact": USER}),
            1.0,
        ),
    ]


# the run ----------------------------------------------------------------------------------------
def machine() -> str:
    import platform

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def versions() -> str:
    from importlib.metadata import version

    return f"sqlite-utils {version('sqlite-utils')}, Datasette {version('datasette')}"


def run(work: Path, plays: int, rss_sizes: tuple[int, ...], seconds: float) -> dict[str, Any]:
    loads: list[float] = []

    def step(message: str) -> None:
        loads.append(os.getloadavg()[0])
        log(f"{message} (load {loads[-1]:.1f})")

    results: dict[str, Any] = {"plays": plays, "date": datetime.now(UTC)}
    step(f"writing a {plays:,}-play archive")
    archive = write_archive(plays, work / "archives")
    entries = archive_entries(archive)
    results["entries"] = entries
    home, baseline = work / "home", work / "sqlite-utils"
    step("importing: ownstream, then sqlite-utils, then both again (alternating)")
    own_runs, su_runs = [], []
    for attempt in range(2):
        pair = [("own", home), ("su", baseline)]
        for side, folder in pair if attempt == 0 else reversed(pair):
            if side == "own":
                own_runs.append(import_ownstream(archive, folder))
            else:
                su_runs.append(import_sqlite_utils(archive, folder))
    own_db, su_db = home / "ownstream.db", baseline / "spotify.db"
    results["ownstream_import"] = min(own_runs, key=lambda r: r.wall)
    results["sqlite_utils_import"] = min(su_runs, key=lambda r: r.wall)
    results["disk"] = {
        "ownstream": disk(own_db, OWNSTREAM_PARTS, "search_index"),
        "sqlite-utils": disk(su_db, SQLITE_UTILS_PARTS, f"{TABLE}_fts"),
    }
    results["size"] = {"ownstream": db_size(own_db), "sqlite-utils": db_size(su_db)}
    with contextlib.closing(sqlite3.connect(f"file:{su_db}?mode=ro", uri=True)) as opened:
        results["columns"] = len(opened.execute(f"PRAGMA table_info({TABLE})").fetchall())
    step("re-importing the same archive")
    results["ownstream_again"] = timed(_import_command(archive, home))
    results["sqlite_utils_again"] = import_sqlite_utils(archive, baseline, again=True)
    rss: dict[int, float] = {plays: results["ownstream_import"].rss_mib}
    for size in rss_sizes:
        if size == plays:
            continue
        step(f"peak RSS: importing {size:,} plays")
        sized = write_archive(size, work / "archives")
        rss[size] = import_ownstream(sized, work / f"home-{size}").rss_mib
        shutil.rmtree(work / f"home-{size}", ignore_errors=True)
    results["rss"] = dict(sorted(rss.items()))
    step("serving: requests/s under the same load, alternating")
    terms = pick_terms(su_db)
    results["terms"] = terms
    own_deep, ts = deep_positions(own_db, su_db, home)
    with ownstream_server(home) as own_base, datasette_server(su_db) as datasette_base:
        token = client_token(home, own_base)
        with contextlib.closing(sqlite3.connect(f"file:{own_db}?mode=ro", uri=True)) as opened:
            (connection_id,) = opened.execute(
                "SELECT connection_id FROM connections LIMIT 1"
            ).fetchone()
        results["load"] = compare(
            cases(terms, own_deep, datasette_next(datasette_base, ts), connection_id),
            own_base,
            {"Authorization": f"Bearer {token}"},
            datasette_base,
            seconds,
            ROUNDS,
        )
    step("done")
    results["loads"] = loads
    return results


# the report -------------------------------------------------------------------------------------
def _x(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def table(results: dict[str, Any]) -> list[str]:
    own, su = results["ownstream_import"], results["sqlite_utils_import"]
    entries = results["entries"]
    rows = [
        "| figure | ownstream | sqlite-utils / Datasette | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]

    def add(figure: str, mine: str, theirs: str, ratio: str, target: str, ok: bool | None) -> None:
        verdict = "" if ok is None else _verdict(ok)
        rows.append(f"| {figure} | {mine} | {theirs} | {ratio} | {target} | {verdict} |")

    add(
        f"first import of {entries:,} entries, wall",
        f"{own.wall:.1f} s",
        f"{su.wall:.1f} s (unzip, insert, enable-fts)",
        _x(own.wall / su.wall),
        "≤ 1.0x",
        own.wall <= su.wall,
    )
    add(
        "first import, CPU (user + system)",
        f"{own.cpu:.1f} s",
        f"{su.cpu:.1f} s",
        _x(own.cpu / su.cpu),
        "",
        None,
    )
    add(
        "first import, records/s",
        f"{entries / own.wall:,.0f}",
        f"{entries / su.wall:,.0f}",
        _x(su.wall / own.wall),
        "",
        None,
    )
    add(
        "first import, written to disk (WAL, checkpoints, files)",
        f"{own.written_mib:,.0f} MiB",
        f"{su.written_mib:,.0f} MiB",
        _x(own.written_mib / max(su.written_mib, 1)),
        "",
        None,
    )
    add(
        "first import, peak RSS",
        f"{own.rss_mib:.0f} MiB",
        f"{su.rss_mib:.0f} MiB",
        _x(own.rss_mib / su.rss_mib),
        f"≤ {RSS_LIMIT_MIB} MiB",
        own.rss_mib <= RSS_LIMIT_MIB,
    )
    rss = results["rss"]
    sizes = sorted(rss)
    growth = rss[sizes[-1]] / rss[sizes[0]]
    add(
        "peak RSS of the import at " + " → ".join(f"{s:,}" for s in sizes) + " plays",
        " → ".join(f"{rss[s]:.0f}" for s in sizes) + " MiB",
        "",
        f"{growth:.2f}x growth",
        f"flat (≤ {FLAT_GROWTH}x), each ≤ {RSS_LIMIT_MIB} MiB",
        growth <= FLAT_GROWTH and max(rss.values()) <= RSS_LIMIT_MIB,
    )
    mine, theirs = results["size"]["ownstream"] / entries, results["size"]["sqlite-utils"] / entries
    add(
        "disk per entry (database + WAL)",
        f"{mine:,.0f} B",
        f"{theirs:,.0f} B (all {results['columns']} fields)",
        _x(mine / theirs),
        "≤ 2x",
        mine <= 2 * theirs,
    )
    again, su_again = results["ownstream_again"], results["sqlite_utils_again"]
    add(
        "re-import of the same archive, wall",
        f"{again.wall:.2f} s (a duplicate)",
        f"{su_again.wall:.1f} s (insert --replace)",
        _x(again.wall / su_again.wall),
        "",
        None,
    )
    for label, sides in results["load"].items():
        o, d = sides["ownstream"], sides["datasette"]
        target = next(c for c in PAGE_LEAD if label.startswith(c)) if "page" in label else None
        least = PAGE_LEAD[target] if target else 1.0
        ratio = o["rate"] / d["rate"]
        add(
            f"{label}, requests/s ({CONCURRENCY} connections)",
            f"{o['rate']:,.0f}/s (p50 {o['p50_ms']:.1f} ms)",
            f"{d['rate']:,.0f}/s (p50 {d['p50_ms']:.1f} ms)",
            _x(ratio),
            f"≥ {least}x",
            ratio >= least,
        )
    return rows


def breakdown(results: dict[str, Any]) -> list[str]:
    entries = results["entries"]
    own, su = results["disk"]["ownstream"], results["disk"]["sqlite-utils"]
    rows = ["| component | ownstream | B/entry | sqlite-utils | B/entry |", "|---|---|---|---|---|"]

    def cells(size: int | None) -> str:
        return "| |" if size is None else f"{_mib(size)} | {size / entries:,.0f} |"

    labels = sorted({*own, *su}, key=lambda k: -(own.get(k, 0) + su.get(k, 0)))
    for label in labels:
        rows.append(f"| {label} | {cells(own.get(label))} {cells(su.get(label))}")
    rows.append(f"| total | {cells(sum(own.values()))} {cells(sum(su.values()))}")
    return rows


def render(results: dict[str, Any], command: str) -> str:
    terms: Terms = results["terms"]
    loads = results["loads"]
    return "\n".join(
        [
            START_MARK,
            "## Against sqlite-utils and Datasette (`python -m bench.versus`)",
            "",
            f"Produced by `{command}` on {results['date']:%Y-%m-%d %H:%M} UTC, on a generated "
            f"extended-history archive of {results['plays']:,} music plays "
            f"({results['entries']:,} entries with its podcast and audiobook listens). Machine: "
            f"{machine()}; {versions()}. Its 1-minute load average went from {min(loads):.1f} "
            f"to {max(loads):.1f} during the run (2 cores shared with other work: compare the "
            "ratios, each measured in the same run, not the absolute figures).",
            "",
            *table(results),
            "",
            "Disk by component (`dbstat`; the FTS5 shadow tables as one):",
            "",
            *breakdown(results),
            "",
            "How: each import runs twice per side, alternating, in a fresh home or folder; the "
            "faster of the two is reported (wall, CPU and writes of that run from `wait4`, "
            "peak RSS as its VmHWM). The baseline commits every 100 rows (sqlite-utils' default "
            "batch, each a transaction with its fsyncs), so its wall time follows the disk's "
            "fsync latency more than its CPU does. The baseline unzips the archive, inserts "
            "each `Streaming_History_Audio_*.json` with "
            f'sqlite-utils\' `insert_all(pk="{KEY}", alter=True)` in one process (what `sqlite-'
            "utils insert` runs per file, without an interpreter start per file) and runs "
            "`enable_fts` on the track, album-artist and album names; it keeps every field of "
            "an entry, where ownstream keeps the 12 its definitions model plus its version "
            "history, provenance and search scope. Requests: "
            f"{CONCURRENCY} threads, each with its own keep-alive connection, for "
            f"{results.get('seconds', SECONDS):.0f} s per side, {ROUNDS} rounds, the order "
            "swapped each round; ownstream with a client grant's token for `listening_history`, "
            "Datasette's table JSON API newest first (`_sort_desc=ts`; `suggest_facets` off, which "
            "would otherwise add seconds of facet probes to every table page), pages of "
            f"{PAGE_LIMIT}, searches of {SEARCH_LIMIT} hits (Datasette adds its count of the "
            "matches, as it does by default). The deep page starts 80 % down (ownstream's sealed "
            "cursor; Datasette's own `_next` token). Search terms come from the baseline's FTS "
            f"vocabulary: the rare query is every word of one rarely played track and its "
            f"artist (`{terms.rare}`), the common term the word in most entries "
            f"(`{terms.common}`). The page targets keep ownstream as far ahead of Datasette as "
            "issue 18 measured before this work.",
            END_MARK,
            "",
        ]
    )


def write_report(text: str, target: Path) -> None:
    """Replace this report's section of `target` (between its markers), or add it at the end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.read_text(encoding="utf-8") if target.exists() else "# Benchmarks\n"
    start, end = old.find(START_MARK), old.find(END_MARK)
    if start >= 0 and end > start:
        text = old[:start] + text.rstrip("\n") + old[end + len(END_MARK) :]
    else:
        text = old.rstrip("\n") + "\n\n" + text
    target.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.versus", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PLAYS:,} plays, short loads")
    parser.add_argument("--plays", type=int, default=None, help=f"default {FULL_PLAYS:,}")
    parser.add_argument("--seconds", type=float, default=None, help="load per side and round")
    parser.add_argument("--rss-sizes", default=None, help="comma-separated plays (peak RSS)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--output", type=Path, default=None, help="report file, or - for none")
    parser.add_argument("--child", choices=["sqlite-utils"], help=argparse.SUPPRESS)
    parser.add_argument("--archive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--again", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_sqlite_utils(args.archive, args.into, args.again)
        return 0
    plays = args.plays or (QUICK_PLAYS if args.quick else FULL_PLAYS)
    seconds = args.seconds or (QUICK_SECONDS if args.quick else SECONDS)
    rss_sizes = (
        tuple(int(s) for s in args.rss_sizes.split(",") if s)
        if args.rss_sizes is not None
        else QUICK_RSS_SIZES
        if args.quick
        else RSS_SIZES
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="ownstream-versus-"))
    work.mkdir(parents=True, exist_ok=True)
    results = run(work, plays, rss_sizes, seconds)
    results["seconds"] = seconds
    command = "python -m bench.versus" + (" --quick" if args.quick else "")
    text = render(results, command)
    print(text)
    output = args.output or (QUICK_REPORT if args.quick else REPORT)
    if str(output) != "-":
        write_report(text, output)
        log(f"wrote {output}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
