"""`ownstream import|run|runs|records`: collecting, and reading back what was collected."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from ownstream.cli.output import (
    JsonOption,
    handles_errors,
    home_of,
    print_json,
    progress_bar,
    table,
)
from ownstream.errors import InvalidRequest
from ownstream.model import ReadScope
from ownstream.owner import ConnectionOperations
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


@handles_errors
def records(
    ctx: typer.Context,
    connection_id: str,
    stream: str,
    limit: int = typer.Option(25, "--limit", min=1, max=1000),
    as_json: bool = JsonOption,
) -> None:
    """Owner read of one connection's stream, newest first."""
    home = home_of(ctx)
    home.store.connection(connection_id)
    definition = home.catalog.definition(stream)
    scope = ReadScope(definition, (connection_id,), definition.fields)
    page, has_more = home.store.records_page(scope, limit=limit)
    rows = [
        {
            "id": r.record_key,
            "stream": stream,
            "connection_id": r.connection_id,
            "emitted_at": r.emitted_at,
            "data": r.data,
        }
        for r in page
    ]
    if as_json:
        print_json({"data": rows, "has_more": has_more})
        return
    fields = list(definition.fields)[:6]
    table(
        f"{stream} · {connection_id}",
        fields,
        [[str(r.data.get(f, ""))[:40] for f in fields] for r in page],
    )
    if has_more:
        typer.echo(f"… more; use --limit (showing {len(rows)})")


@handles_errors
def audit(
    ctx: typer.Context,
    connection: str | None = typer.Option(None, "--connection"),
    actor: str | None = typer.Option(None, "--actor", help="owner, scheduler, client, system"),
    operation: str | None = typer.Option(None, "--operation"),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JsonOption,
) -> None:
    """The audit trail of owner, client and scheduler actions (never secrets or contents)."""
    events = home_of(ctx).store.audit_events(
        connection_id=connection, actor_kind=actor, operation=operation, limit=limit
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
    once: bool = typer.Option(False, "--once", help="One pass over due connections, then exit."),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between passes."),
    as_json: bool = JsonOption,
) -> None:
    """Run scheduled connections as they come due (a standalone worker). SIGTERM or Ctrl-C
    stop it after the runs in progress end."""
    import signal
    import threading

    from ownstream.logs import configure
    from ownstream.scheduler import Worker

    configure()

    runner = Worker(home_of(ctx).runtime())
    if once:
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
    stop = threading.Event()
    for stopping in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stopping, lambda number, frame: stop.set())
    runner.run_forever(stop, poll)


@handles_errors
def migrate(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Upgrade the database to this version's schema (serve and every command also do it)."""
    home = home_of(ctx)
    home.catalog  # noqa: B018 - opening the store upgrades it; the catalog re-indexes search
    payload = {"home": str(home.path), "backend": home.store.capabilities.backend}
    if as_json:
        print_json(payload)
    else:
        typer.echo(f"{home.path}: up to date ({payload['backend']})")
