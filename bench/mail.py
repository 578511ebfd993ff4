"""Mail benchmarks: the mbox importer and the IMAP connector against the standard library and
a plain imapclient FETCH, on the same files and the same server.

- mbox import (both passes, parsing, records, the whole runtime into SQLite) in messages/s and
  MB/s vs a floor: `mailbox.mbox` reading the same file and `email` (policy.default) parsing
  each message, reading the headers and decoding the text parts the importer reads; peak RSS
  of the importing process at 1/4, 1/2, 3/4 and all of the file.
- IMAP first sync of N messages vs a floor: one login, then `UID FETCH … BODY.PEEK[]` of the
  same messages in batches of 500, nothing else.

`python -m bench.mail [--quick]` runs it alone; `bench/run.py` calls `run()` and adds `rows()`
to the report. The IMAP figure needs Dovecot and is left out, saying so, without it.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import os
import subprocess
import sys
import tempfile
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ADDRESS = "bench@example.org"
PASSWORD = "bench-password"
FULL_MBOX_MESSAGES = 40_000
FULL_IMAP_MESSAGES = 10_000
QUICK_MBOX_MESSAGES = 2_000
QUICK_IMAP_MESSAGES = 300
APPEND_BATCH = 200
FETCH_BATCH = 500


def _rss_peak() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _mailbox(count: int) -> Any:
    from ownstream.dev.mail_data import generate_mailbox

    return generate_mailbox(ADDRESS, seed=7, count=count, special=False)


# mbox (children: each in a fresh interpreter, so each reports its own peak RSS) ---------------
def child_import(path: Path, home: Path, total: int) -> dict[str, Any]:
    from ownstream.home import Home

    samples: list[tuple[int, float]] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("message") == "importing":
            samples.append((int(event.get("count") or 0), _rss_peak()))

    started = time.perf_counter()
    result = Home(home).runtime(on_progress).import_artifact("mbox", path)
    seconds = time.perf_counter() - started
    peak = _rss_peak()
    quarters = [next((rss for n, rss in samples if n >= total * q / 4), peak) for q in (1, 2, 3)]
    return {"seconds": seconds, "new": result.receipt.counts["new"], "rss": [*quarters, peak]}


def child_connector(path: Path, total: int) -> dict[str, Any]:
    """The importer alone (no runtime, no database): its own memory as the file is read."""
    from ownstream.connectors.mbox.connector import collect
    from ownstream.runtime.sdk import drive

    start = {
        "run_id": "run_bench",
        "collection_mode": "full_refresh",
        "scope": {"streams": [{"name": "messages"}, {"name": "mail_folders"}]},
        "artifact": {"path": str(path)},
    }
    samples: list[tuple[int, float]] = []
    for message in drive(collect, start, {}):
        if message["type"] == "PROGRESS" and message["message"] == "importing":
            samples.append((int(message["count"]), _rss_peak()))
    quarters = [next((rss for n, rss in samples if n >= total * q / 4), 0.0) for q in (1, 2, 3)]
    return {"rss": [*quarters, _rss_peak()]}


def _parse(parser: BytesParser[Any], raw: bytes) -> None:
    """What the floor does with one message: parse it, read the headers and text parts the
    importer reads."""
    message = parser.parsebytes(raw)
    for name in ("message-id", "date", "from", "to", "cc", "subject"):
        str(message.get(name, ""))
    for part in message.walk():
        if part.get_content_maintype() == "text":
            part.get_content()


def child_floor(path: Path) -> dict[str, Any]:
    parser = BytesParser(policy=policy.default)
    started = time.perf_counter()
    messages = 0
    for raw in mailbox.mbox(path, create=False).itervalues():
        _parse(parser, raw.as_bytes())
        messages += 1
    return {"seconds": time.perf_counter() - started, "messages": messages, "rss": _rss_peak()}


def _child(kind: str, **params: Any) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "bench.mail", "--child", kind, "--params", json.dumps(params)]
    done = subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def bench_mbox(work: Path, count: int) -> dict[str, Any]:
    from ownstream.dev.mail_data import write_mbox

    path = write_mbox(_mailbox(count).messages, work / "bench.mbox")
    ours = _child("import", path=str(path), home=str(work / "home-mbox"), total=count)
    alone = _child("connector", path=str(path), total=count)
    floor = _child("floor", path=str(path))
    return {
        "messages": count,
        "bytes": path.stat().st_size,
        "ours": ours,
        "connector": alone,
        "floor": floor,
    }


# IMAP -----------------------------------------------------------------------------------------
def bench_imap(work: Path, count: int) -> dict[str, Any] | None:
    from imapclient import IMAPClient

    from ownstream.dev.dovecot import Dovecot, DovecotUnavailable
    from ownstream.home import Home

    messages = _mailbox(count).messages
    try:
        server = Dovecot().start()
    except DovecotUnavailable:
        return None
    try:
        server.add_user(ADDRESS, PASSWORD)

        def client() -> IMAPClient:
            logged_in = IMAPClient(server.host, port=server.port, ssl_context=server.ssl_context())
            logged_in.login(ADDRESS, PASSWORD)
            return logged_in

        with client() as c:
            for start in range(0, len(messages), APPEND_BATCH):
                batch = messages[start : start + APPEND_BATCH]
                c.multiappend("INBOX", [{"msg": m.crlf, "flags": m.flags} for m in batch])
        started = time.perf_counter()
        fetched = 0
        parsing = 0.0
        parser = BytesParser(policy=policy.default)
        with client() as c:
            c.select_folder("INBOX", readonly=True)
            uids = sorted(c.search("ALL"))
            for start in range(0, len(uids), FETCH_BATCH):
                bodies = c.fetch(uids[start : start + FETCH_BATCH], ["BODY.PEEK[]"])
                fetched += len(bodies)
                begin = time.perf_counter()
                for data in bodies.values():
                    _parse(parser, data[b"BODY[]"])
                parsing += time.perf_counter() - begin
        floor = time.perf_counter() - started - parsing
        runtime = Home(work / "home-imap").runtime()
        started = time.perf_counter()
        connected = runtime.connect(
            "imap",
            secrets={"password": PASSWORD},
            settings=server.imap_settings(ADDRESS),
        )
        [run] = runtime.run_connection(connected.connection.connection_id)
        ours = time.perf_counter() - started
        return {
            "messages": fetched,
            "inserted": run.tally.new,
            "ours": ours,
            "floor": floor,
            "parse": parsing,
        }
    finally:
        server.stop()


def run(work: Path, *, mbox_messages: int, imap_messages: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    return {
        "mbox": bench_mbox(work, mbox_messages),
        "imap": bench_imap(work, imap_messages),
    }


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool | None]]:
    """(figure, ownstream, baseline, ratio, target, met) rows for the report's table."""
    mbox = results["mbox"]
    count, megabytes = mbox["messages"], mbox["bytes"] / 2**20
    ours, floor = mbox["ours"]["seconds"], mbox["floor"]["seconds"]
    ratio = floor / ours
    rss, alone = mbox["ours"]["rss"], mbox["connector"]["rss"]
    found: list[tuple[str, str, str, str, str, bool | None]] = [
        (
            f"9 mbox import of {count:,} messages ({megabytes:,.0f} MB) vs the stdlib parsing it",
            f"{count / ours:,.0f} msg/s, {megabytes / ours:,.1f} MB/s ({ours:.1f} s)",
            f"{count / floor:,.0f} msg/s, {megabytes / floor:,.1f} MB/s ({floor:.1f} s)",
            f"{ratio:.2f}x",
            "≥ 0.5x",
            ratio >= 0.5,
        ),
        (
            "9 mbox import peak RSS at 1/4, 1/2, 3/4, all of the file: the importer alone "
            "(the whole import)",
            " → ".join(f"{v:.0f}" for v in alone)
            + " MiB ("
            + " → ".join(f"{v:.0f}" for v in rss)
            + " MiB)",
            f"floor {mbox['floor']['rss']:.0f} MiB",
            f"{alone[-1] / alone[0]:.2f}x growth",
            "flat (≤ 1.25x)",
            alone[-1] / alone[0] <= 1.25,
        ),
    ]
    imap = results["imap"]
    if imap is None:
        missing = "not measured: Dovecot is not installed"
        found.append(("9 IMAP first sync", missing, "", "", "", None))
    else:
        n, ours, floor, parse = imap["messages"], imap["ours"], imap["floor"], imap["parse"]
        found.append(
            (
                f"9 IMAP first sync of {n:,} messages vs a plain imapclient FETCH "
                "(and FETCH + stdlib parse)",
                f"{n / ours:,.0f} msg/s ({ours:.1f} s)",
                f"{n / floor:,.0f} msg/s ({floor:.1f} s); with parsing "
                f"{n / (floor + parse):,.0f} msg/s ({floor + parse:.1f} s)",
                f"{floor / ours:.2f}x ({(floor + parse) / ours:.2f}x)",
                "",
                None,
            )
        )
    return found


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.mail", description=summary)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("import", "connector", "floor"))
    parser.add_argument("--params", default="{}")
    args = parser.parse_args(argv)
    if args.child:
        params = json.loads(args.params)
        if args.child == "import":
            result = child_import(Path(params["path"]), Path(params["home"]), params["total"])
        elif args.child == "connector":
            result = child_connector(Path(params["path"]), params["total"])
        else:
            result = child_floor(Path(params["path"]))
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory(prefix="ownstream-bench-mail-") as work:
        results = run(
            Path(work),
            mbox_messages=QUICK_MBOX_MESSAGES if args.quick else FULL_MBOX_MESSAGES,
            imap_messages=QUICK_IMAP_MESSAGES if args.quick else FULL_IMAP_MESSAGES,
        )
    print("| Figure | ownstream | baseline | ratio | target | |\n|---|---|---|---|---|---|")
    for figure, ours, baseline, ratio, target, met in rows(results):
        verdict = "—" if met is None else ("met" if met else "**missed**")
        print(f"| {figure} | {ours} | {baseline} | {ratio} | {target} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
