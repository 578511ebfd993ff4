"""`ownstream connections|connect`: the owner's connections and how they come to be."""

from __future__ import annotations

import typer

from ownstream.cli.output import JsonOption, handles_errors, home_of, print_json, table
from ownstream.errors import InvalidRequest
from ownstream.views import connection_detail, connection_view

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
    """List connections with their identity and acquisition paths."""
    connections = home_of(ctx).store.connections(source=source)
    if as_json:
        print_json([connection_view(c) for c in connections])
        return
    table(
        "Connections",
        ["connection_id", "source", "display name", "status", "identity", "paths"],
        [
            [
                c.connection_id,
                c.source,
                c.display_name + (" (placeholder)" if c.display_name_is_placeholder else ""),
                c.status,
                f"{c.identity.claim}={c.identity.value}" if c.identity else "none",
                ", ".join(f"{p.connector_key} ({p.acquisition_method})" for p in c.paths),
            ]
            for c in connections
        ],
    )


@connections_app.command("show")
@handles_errors
def connections_show(ctx: typer.Context, connection_id: str, as_json: bool = JsonOption) -> None:
    """One connection: identity, attached paths, coverage per path, counts, runs and batches."""
    home = home_of(ctx)
    detail = connection_detail(home.store, home.store.connection(connection_id))
    if as_json:
        print_json(detail)
        return
    identity = detail["identity"]
    typer.echo(f"{detail['connection_id']}  {detail['display_name']}  [{detail['status']}]")
    typer.echo(f"source: {detail['source']}")
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
    connection = home_of(ctx).store.rename_connection(connection_id, display_name)
    if as_json:
        print_json(connection_view(connection))
    else:
        typer.echo(f"{connection.connection_id} is now {connection.display_name!r}")


@handles_errors
def connect(
    ctx: typer.Context,
    connector_key: str,
    secret: list[str] = typer.Option([], "--secret", help="NAME=VALUE, repeatable."),
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
    result = (
        home_of(ctx)
        .runtime()
        .connect(
            connector_key,
            secrets=_pairs(secret, "--secret"),
            settings=_pairs(setting, "--setting"),
            display_name=name,
            connection_id=connection,
            allow_recreate=allow_recreate,
        )
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
