"""`ownstream connections|connect`: the owner's connections and how they come to be."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ownstream.cli.output import JsonOption, handles_errors, home_of, print_json, table
from ownstream.errors import InvalidRequest
from ownstream.owner import ConnectionOperations, schedule_view
from ownstream.views import connection_view

connections_app = typer.Typer(
    help="Connections: one account, device or archive source each.", no_args_is_help=True
)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, content = value.partition("=")
        if not sep or not name:
            raise InvalidRequest(f"{option} takes NAME=VALUE, got {value!r}", param=option)
        pairs[name] = content
    return pairs


@connections_app.command("list")
@handles_errors
def connections_list(
    ctx: typer.Context, source: str | None = typer.Option(None), as_json: bool = JsonOption
) -> None:
    """List connections with their identity, acquisition paths, schedule and health."""
    ops = ConnectionOperations(home_of(ctx))
    entries = [ops.connection_entry(c) for c in ops.home.store.connections(source=source)]
    if as_json:
        print_json(entries)  # the entries of GET /v1/owner/connections
        return
    table(
        "Connections",
        ["connection_id", "source", "display name", "status", "health", "identity", "paths"],
        [
            [
                e["connection_id"],
                e["source"],
                e["display_name"] + (" (placeholder)" if e["display_name_is_placeholder"] else ""),
                e["status"],
                e["health"]["state"],
                f"{e['identity']['claim']}={e['identity']['value']}" if e["identity"] else "none",
                ", ".join(
                    f"{p['connector_key']} ({p['acquisition_method']})"
                    for p in e["acquisition_paths"]
                ),
            ]
            for e in entries
        ],
    )


@connections_app.command("show")
@handles_errors
def connections_show(ctx: typer.Context, connection_id: str, as_json: bool = JsonOption) -> None:
    """One connection: identity, attached paths, coverage per path, counts, runs and batches."""
    detail = ConnectionOperations(home_of(ctx)).detail(connection_id)
    if as_json:
        print_json(detail)
        return
    identity = detail["identity"]
    typer.echo(f"{detail['connection_id']}  {detail['display_name']}  [{detail['status']}]")
    typer.echo(f"source: {detail['source']}")
    health = detail["health"]
    typer.echo(f"health: {health['state']} ({health['reason_code']}): {health['message']}")
    for advisory in health["advisories"]:
        typer.echo(f"  advisory: {advisory}")
    schedule = detail["schedule"]
    typer.echo(
        "schedule: "
        + (
            f"every {schedule['interval_seconds']}s, "
            f"{'paused' if schedule['paused'] else 'enabled' if schedule['enabled'] else 'off'}, "
            f"next {schedule['next_due_at']}"
            if schedule
            else "none"
        )
    )
    typer.echo(
        "identity: "
        + (
            f"{identity['claim']}={identity['value']} (proven by {identity['proven_by']})"
            if identity
            else "none"
        )
    )
    table(
        "Acquisition paths",
        ["connector_key", "method", "attached", "proved identity", "rule"],
        [
            [
                p["connector_key"],
                p["acquisition_method"],
                p["attached_at"],
                p["proved_identity"],
                p["rule_id"],
            ]
            for p in detail["acquisition_paths"]
        ],
    )
    table(
        "Coverage",
        ["stream", "path", "method", "from", "to", "records seen", "last"],
        [
            [
                c["stream"],
                c["connector_key"],
                c["acquisition_method"],
                c["window_start"],
                c["window_end"],
                c["records_seen"],
                c["last_batch_id"] or c["last_run_id"],
            ]
            for c in detail["coverage"]
        ],
    )
    table(
        "Streams",
        ["stream", "records", "last updated"],
        [[s["stream"], s["record_count"], s["last_updated"]] for s in detail["streams"]],
    )


@connections_app.command("rename")
@handles_errors
def connections_rename(
    ctx: typer.Context, connection_id: str, display_name: str, as_json: bool = JsonOption
) -> None:
    """Give a connection a meaningful label (the only label clients ever see)."""
    connection = ConnectionOperations(home_of(ctx)).rename(connection_id, display_name)
    if as_json:
        print_json(connection_view(connection))
    else:
        typer.echo(f"{connection.connection_id} is now {connection.display_name!r}")


def _secrets(
    ctx: typer.Context,
    connector_key: str,
    pairs: list[str],
    files: list[str],
    stdin_name: str | None,
) -> dict[str, str]:
    """Secrets from --secret, --secret-file and --secret-stdin; a required one still missing
    is asked for at an interactive prompt (never echoed)."""
    secrets = _pairs(pairs, "--secret")
    for name, path in _pairs(files, "--secret-file").items():
        try:
            secrets[name] = Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path}: {exc}", param="--secret-file") from exc
    if stdin_name is not None:
        secrets[stdin_name] = sys.stdin.readline().rstrip("\r\n")
    manifest = home_of(ctx).catalog.manifest(connector_key)
    if sys.stdin.isatty():
        for field in manifest.secrets:
            if field.required and field.name not in secrets:
                secrets[field.name] = typer.prompt(field.name, hide_input=True)
    return secrets


@handles_errors
def connect(
    ctx: typer.Context,
    connector_key: str,
    secret: list[str] = typer.Option(
        [],
        "--secret",
        help="NAME=VALUE, repeatable. Visible in `ps` and shell history: prefer "
        "--secret-stdin, --secret-file or the prompt.",
    ),
    secret_file: list[str] = typer.Option(
        [], "--secret-file", help="NAME=PATH: read a secret from a file, repeatable."
    ),
    secret_stdin: str | None = typer.Option(
        None, "--secret-stdin", help="NAME: read that secret from the first line of stdin."
    ),
    setting: list[str] = typer.Option([], "--setting", help="NAME=VALUE, repeatable."),
    name: str | None = typer.Option(None, "--name", help="A display name for the connection."),
    connection: str | None = typer.Option(
        None, "--connection", help="Attach to (or re-credential) this connection."
    ),
    allow_recreate: bool = typer.Option(
        False, "--allow-recreate", help="Re-create an identity the owner deleted."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Connect an account: probe its identity, resolve the connection, store its secrets."""
    # Through the owner operations, as the API does: audited, and enrolled in its schedule.
    result = ConnectionOperations(home_of(ctx)).connect(
        connector_key,
        secrets=_secrets(ctx, connector_key, secret, secret_file, secret_stdin),
        settings=_pairs(setting, "--setting"),
        display_name=name,
        connection_id=connection,
        allow_recreate=allow_recreate,
    )
    view = connection_view(result.connection)
    payload = {
        "connection_id": result.connection.connection_id,
        "status": result.connection.status,
        "created": result.created,
        "identity": None
        if result.identity is None
        else {"claim": result.identity.claim, "value": result.identity.value},
        "connection": view,
    }
    if as_json:
        print_json(payload)
        return
    verb = "created" if result.created else "reused"
    who = f"{result.identity.claim}={result.identity.value}" if result.identity else "no identity"
    typer.echo(f"{verb} {result.connection.connection_id} ({who}) [{result.connection.status}]")


def _lifecycle(name: str, help_text: str) -> None:
    @connections_app.command(name, help=help_text)
    @handles_errors
    def command(ctx: typer.Context, connection_id: str, as_json: bool = JsonOption) -> None:
        ops = ConnectionOperations(home_of(ctx))
        connection = getattr(ops, name)(connection_id)
        if as_json:
            print_json(ops.connection_entry(connection))
        else:
            typer.echo(f"{connection.connection_id} is {connection.status}")


_lifecycle("revoke", "Stop collecting from a connection; its records stay readable.")
_lifecycle("reactivate", "Resume a revoked connection.")


@connections_app.command("delete")
@handles_errors
def connections_delete(
    ctx: typer.Context,
    connection_id: str,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = JsonOption,
) -> None:
    """Erase one connection and all its data (records, history, state, credentials)."""
    if not yes and not as_json:
        typer.confirm(f"Delete {connection_id} and all its records?", abort=True)
    result = ConnectionOperations(home_of(ctx)).delete(connection_id)
    if as_json:
        print_json(result)
    else:
        typer.echo(f"deleted {connection_id}: {result['records']} records")


@connections_app.command("diagnostics")
@handles_errors
def connections_diagnostics(
    ctx: typer.Context, connection_id: str, as_json: bool = JsonOption
) -> None:
    """Health verdict and the evidence behind it."""
    diagnostics = ConnectionOperations(home_of(ctx)).diagnostics(connection_id)
    if as_json:
        print_json(diagnostics)
        return
    health = diagnostics["health"]
    typer.echo(f"{connection_id}: {health['state']} ({health['reason_code']}) {health['message']}")
    if health["remediation"]:
        typer.echo(f"  do: {health['remediation']}")
    for gap in diagnostics["known_gaps"]:
        typer.echo(
            f"  gap [{gap.get('reason')}] {gap.get('stream') or '-'} via "
            f"{gap.get('connector_key')} ({gap.get('acquisition_method')}): {gap.get('message')}"
        )


@connections_app.command("schedule")
@handles_errors
def connections_schedule(
    ctx: typer.Context,
    connection_id: str,
    interval: int | None = typer.Option(None, "--interval", help="Seconds between runs."),
    jitter: int = typer.Option(0, "--jitter", help="Random extra seconds."),
    disable: bool = typer.Option(False, "--disable"),
    pause: bool = typer.Option(False, "--pause"),
    resume: bool = typer.Option(False, "--resume"),
    as_json: bool = JsonOption,
) -> None:
    """Set, disable, pause or resume a connection's schedule."""
    ops = ConnectionOperations(home_of(ctx))
    if pause or resume:
        schedule = ops.pause_schedule(connection_id, pause)
    else:
        current = ops.home.store.schedule(connection_id)
        seconds = interval or (current.interval_seconds if current else None)
        if seconds is None:
            raise InvalidRequest("give --interval SECONDS", param="interval")
        schedule = ops.put_schedule(
            connection_id, enabled=not disable, interval_seconds=seconds, jitter_seconds=jitter
        )
    view = schedule_view(schedule)
    if as_json:
        print_json(view)
    else:
        typer.echo(f"{connection_id}: {view}")
