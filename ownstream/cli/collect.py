"""`ownstream import|run|runs|records`: collecting, and reading back what was collected."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import typer

from ownstream.cli.output import (
    JsonOption,
    handles_errors,
    home_of,
    print_json,
    progress_bar,
    table,
)
from ownstream.errors import InvalidArgument, InvalidRequest
from ownstream.home import Home
from ownstream.model import ReadScope
from ownstream.owner import ConnectionOperations
from ownstream.owner.records import RecordPage, owner_scope, record_row, records_page
from ownstream.views import batch_view, run_view

runs_app = typer.Typer(help="Run history and import batches.", no_args_is_help=True)


@handles_errors
def import_(
    ctx: typer.Context,
    connector_key: str,
    path: Path,
    connection: str | None = typer.Option(
        None, "--connection", help="Import into this existing connection."
    ),
    allow_recreate: bool = typer.Option(
        False, "--allow-recreate", help="Re-create an identity the owner deleted."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Import an archive or file. All-or-nothing; the same bytes twice is a duplicate."""
    ops = ConnectionOperations(home_of(ctx))
    with progress_bar(not as_json, f"importing {path.name}") as on_progress:
        result = ops.import_artifact(
            connector_key,
            path,
            on_progress,
            connection_id=connection,
            allow_recreate=allow_recreate,
        )
    payload = result.to_dict()
    if as_json:
        print_json(payload)
        return
    counts = payload["counts"]
    typer.echo(
        f"{payload['status']}: batch {payload['batch_id']} → connection {payload['connection_id']}"
        f" ({payload['connection']['reason']})"
    )
    typer.echo(
        "  "
        + ", ".join(
            f"{name} {counts.get(name, 0)}"
            for name in ("parsed", "new", "updated", "duplicate", "merged_with_existing",
                         "skipped", "rejected")
        )
    )
    for entry in counts.get("rejections", []):
        typer.echo(f"  rejected {entry['count']}: {entry['reason']}")
    for reason, count in counts.get("omitted", {}).items():
        typer.echo(f"  left out {count}: {reason}")
    for warning in payload["warnings"]:
        typer.echo(f"  warning: {warning}")


@handles_errors
def run(
    ctx: typer.Context,
    connection_id: str | None = typer.Argument(None),
    connector: str | None = typer.Option(
        None, "--connector", help="Only this path (or, alone, the one connection that has it)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Collect now: a connection's runnable paths, or `--connector KEY` alone if unambiguous."""
    ops = ConnectionOperations(home_of(ctx))
    if connection_id is None:
        if connector is None:
            raise InvalidRequest("name a CONNECTION_ID or --connector KEY", param="connection_id")
        connection_id = ops.connector_connection(connector).connection_id
    with progress_bar(not as_json, f"running {connection_id}") as on_progress:
        outcomes = ops.run(connection_id, connector_key=connector, on_progress=on_progress)
    if as_json:
        print_json([o.to_dict() for o in outcomes])
    else:
        for outcome in outcomes:
            counts = outcome.tally
            typer.echo(
                f"{outcome.status}: {outcome.run_id} ({outcome.connector_key}, "
                f"{outcome.collection_mode}) new {counts.new}, updated {counts.updated}, "
                f"duplicate {counts.duplicate}, deleted {counts.deleted}, "
                f"rejected {counts.rejected}"
            )
            for gap in outcome.known_gaps:
                typer.echo(
                    f"  gap [{gap.reason}] {gap.stream or '-'}: {gap.message} "
                    f"→ {gap.recovery_action}"
                )
    if any(o.status != "succeeded" for o in outcomes):
        raise typer.Exit(1)


@runs_app.command("list")
@handles_errors
def runs_list(
    ctx: typer.Context,
    connection: str | None = typer.Option(None, "--connection"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JsonOption,
) -> None:
    """Runs and import batches, newest first, each with its acquisition method."""
    store = home_of(ctx).store
    if connection is not None:
        store.connection(connection)
    entries = [run_view(r) for r in store.runs(connection, limit=limit)]
    entries += [batch_view(b) for b in store.batches(connection_id=connection)]
    entries.sort(key=lambda e: e.get("started_at") or e.get("created_at") or "", reverse=True)
    if as_json:
        print_json(entries)
        return
    table(
        "Runs and import batches",
        ["kind", "id", "connection_id", "path", "method", "status", "when"],
        [
            [
                e["kind"],
                e.get("run_id") if e["kind"] == "run" else e["batch_id"],
                e["connection_id"],
                e["connector_key"],
                e["acquisition_method"],
                e["status"],
                e.get("started_at") or e.get("created_at"),
            ]
            for e in entries
        ],
    )


RECORD_FORMATS = ("table", "json", "ndjson", "csv")
EXPORT_PAGE = 1000


@handles_errors
def records(
    ctx: typer.Context,
    connection_id: str,
    stream: str,
    limit: int = typer.Option(25, "--limit", min=1, max=1000, help="Records per page."),
    cursor: str | None = typer.Option(None, "--cursor", help="Continue from a printed cursor."),
    every: bool = typer.Option(False, "--all", help="Every record, page after page."),
    output_format: str = typer.Option(
        "table", "--format", help="table, json, ndjson (one record a line) or csv."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Owner read of one connection's stream, newest first, paged with a cursor; `--all`
    exports the whole stream (streamed, one page in memory at a time)."""
    fmt = "json" if as_json else output_format
    if fmt not in RECORD_FORMATS:
        raise InvalidArgument(f"--format is one of {', '.join(RECORD_FORMATS)}", param="format")
    home = home_of(ctx)
    home.store.connection(connection_id)
    scope = owner_scope(home, stream, connection_id)
    size = EXPORT_PAGE if every else limit
    page = records_page(home, scope, limit=size, cursor=cursor)
    pages = _all_pages(home, scope, page, size) if every else iter([page])
    if fmt == "table":
        _records_table(stream, connection_id, scope.stream.fields, pages, every)
    elif fmt == "json" and not every:
        print_json({"data": [record_row(r) for r in page.records],
                    "has_more": page.next_cursor is not None, "next_cursor": page.next_cursor})
    else:
        _records_export(fmt, scope.stream.fields, pages)
        if page.next_cursor is not None and not every:
            typer.echo(f"more: --cursor {page.next_cursor}", err=True)


def _all_pages(home: Home, scope: ReadScope, first: RecordPage, size: int) -> Iterator[RecordPage]:
    page = first
    yield page
    while page.next_cursor is not None:
        page = records_page(home, scope, limit=size, cursor=page.next_cursor)
        yield page


def _records_table(
    stream: str, connection_id: str, fields: tuple[str, ...], pages: Iterator[RecordPage],
    every: bool,
) -> None:
    shown = list(fields)[:6]
    rows, next_cursor = [], None
    for page in pages:
        rows += [[str(r.data.get(f, ""))[:40] for f in shown] for r in page.records]
        next_cursor = page.next_cursor
    table(f"{stream} · {connection_id}", shown, rows)
    if next_cursor is not None and not every:
        typer.echo(f"more: --cursor {next_cursor}  (or --all)")


def _records_export(fmt: str, fields: tuple[str, ...], pages: Iterator[RecordPage]) -> None:
    """JSON (one array), NDJSON or CSV on stdout, written page by page."""
    out = sys.stdout
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["id", "connection_id", "emitted_at", *fields])
    first = True
    if fmt == "json":
        out.write("[")
    for page in pages:
        for record in page.records:
            if fmt == "csv":
                writer.writerow([record.record_key, record.connection_id, record.emitted_at,
                                 *(_csv_cell(record.data.get(f)) for f in fields)])
                continue
            line = orjson.dumps(record_row(record)).decode()
            if fmt == "ndjson":
                out.write(line + "\n")
            else:
                out.write(("\n" if first else ",\n") + line)
                first = False
    if fmt == "json":
        out.write("\n]\n")
    out.flush()


def _csv_cell(value: Any) -> str:
    """Text as is; numbers, lists and objects as JSON, the way sqlite-utils writes them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


@handles_errors
def audit(
    ctx: typer.Context,
    connection: str | None = typer.Option(None, "--connection"),
    actor: str | None = typer.Option(None, "--actor", help="owner, scheduler, client, system"),
    operation: str | None = typer.Option(None, "--operation"),
    before: int | None = typer.Option(
        None, "--before", min=1, help="Only events numbered (seq) below this: the next page."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JsonOption,
) -> None:
    """The audit trail of owner, client and scheduler actions (never secrets or contents)."""
    events = home_of(ctx).store.audit_events(
        connection_id=connection, actor_kind=actor, operation=operation, before=before,
        limit=limit,
    )
    if as_json:
        print_json([asdict(e) for e in events])
        return
    table(
        "Audit",
        ["at", "actor", "connection_id", "operation", "outcome"],
        [[e.at, e.actor_kind, e.connection_id, e.operation, e.outcome] for e in events],
    )


@handles_errors
def worker(
    ctx: typer.Context,
    once: bool = typer.Option(
        False,
        "--once",
        help="One pass (housekeeping, then up to --parallel due connections), then exit.",
    ),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between passes."),
    parallel: int = typer.Option(
        4, "--parallel", min=1, help="Connections this worker runs at once (and claims per pass)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run scheduled connections as they come due (a standalone worker; run several, on one
    PostgreSQL database, to share the due connections). SIGTERM or Ctrl-C stop it after the
    runs in progress end."""
    import signal
    import threading

    from ownstream.logs import configure
    from ownstream.scheduler import Worker

    runner = Worker(home_of(ctx).runtime(), max_parallel=parallel)
    if once:
        runner.maintain()
        results = runner.tick()
        payload = {
            connection_id: [o.to_dict() for o in result]
            if isinstance(result, list)
            else {"error": result.to_dict()}
            for connection_id, result in results.items()
        }
        if as_json:
            print_json(payload)
        else:
            typer.echo(f"ran {len(payload)} due connection(s)")
        return
    configure()  # a long-running worker logs its passes and failures to stderr
    stop = threading.Event()
    for stopping in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stopping, lambda number, frame: stop.set())
    runner.run_forever(stop, poll)


@handles_errors
def migrate(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Upgrade the database to this version's schema (serve and every command also do it)."""
    home = home_of(ctx)
    home.catalog  # noqa: B018 - opening the store upgrades it; the catalog re-indexes search
    payload = {
        "home": str(home.path),
        "backend": home.store.capabilities.backend,
        "storage": home.storage,
    }
    if as_json:
        print_json(payload)
    else:
        typer.echo(f"{home.storage}: up to date")
