"""`ownstream connections|connect`: the owner's connections and how they come to be."""

from __future__ import annotations

import sys
import webbrowser
from contextlib import suppress
from pathlib import Path

import typer

from ownstream.auth.console import PUBLIC_URL_SETTING
from ownstream.cli.output import (
    JsonOption,
    err_console,
    handles_errors,
    home_of,
    print_json,
    table,
)
from ownstream.errors import InvalidRequest
from ownstream.owner import ConnectionOperations, ProviderOAuth, schedule_view
from ownstream.owner.provider_oauth import DEFAULT_SERVER_URL, SERVER_URL_ENV
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
    if health["remediation"]:
        typer.echo(f"  do: {health['remediation']}")
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
    pairs: list[str], files: list[str], stdin_name: str | None, wanted: list[str]
) -> dict[str, str]:
    """Secrets from --secret, --secret-file and --secret-stdin; a `wanted` one still missing
    is asked for at an interactive prompt (never echoed)."""
    secrets = _pairs(pairs, "--secret")
    for name, path in _pairs(files, "--secret-file").items():
        try:
            secrets[name] = Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path}: {exc}", param="--secret-file") from exc
    if stdin_name is not None:
        secrets[stdin_name] = sys.stdin.readline().rstrip("\r\n")
    if sys.stdin.isatty():
        for name in wanted:
            if name not in secrets:
                secrets[name] = typer.prompt(name, hide_input=True)
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
    oauth: bool = typer.Option(
        False,
        "--oauth",
        help="Authorize at the provider in a browser (authorization code with PKCE) instead "
        "of giving tokens; `ownstream serve` must be running at --server-url.",
    ),
    client_id: str | None = typer.Option(
        None, "--client-id", help="With --oauth: the app registered at the provider."
    ),
    server_url: str | None = typer.Option(
        None,
        "--server-url",
        envvar=SERVER_URL_ENV,
        help="With --oauth: the server's public URL, where the provider redirects back "
        f"(default: what `ownstream serve` announced, else {DEFAULT_SERVER_URL}).",
    ),
    browser: bool = typer.Option(
        True, "--browser/--no-browser", help="With --oauth: try to open the URL in a browser."
    ),
    wait: float = typer.Option(
        300.0, "--wait", min=1.0, help="With --oauth: seconds to wait for the approval."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Connect an account: probe its identity, resolve the connection, store its secrets."""
    home = home_of(ctx)
    manifest = home.catalog.manifest(connector_key)
    settings = _pairs(setting, "--setting")
    if oauth:
        flow = ProviderOAuth(home)
        needs_secret = manifest.oauth is not None and manifest.oauth.client_secret_required
        given = _secrets(
            secret, secret_file, secret_stdin, ["client_secret"] if needs_secret else []
        )
        extra = sorted(set(given) - {"client_secret"})
        if extra:
            raise InvalidRequest(
                f"--oauth obtains the tokens; give only client_secret (not {', '.join(extra)})",
                param="--secret",
            )
        started = flow.start(
            connector_key,
            redirect_base=server_url
            or home.store.auth_setting(PUBLIC_URL_SETTING)
            or DEFAULT_SERVER_URL,
            client_id=client_id,
            client_secret=given.get("client_secret"),
            settings=settings,
            display_name=name,
            connection_id=connection,
            allow_recreate=allow_recreate,
        )
        err_console.print(
            f"Open this URL to authorize {manifest.display_name} (waiting {wait:g}s):",
            highlight=False,
        )
        err_console.print(started.authorization_url, highlight=False, markup=False, soft_wrap=True)
        if browser:
            with suppress(webbrowser.Error):
                webbrowser.open(started.authorization_url)
        authorization = flow.wait(started.authorization_id, wait)
        assert authorization.connection_id is not None
        outcome = authorization.outcome or {}
        connected = home.store.connection(authorization.connection_id)
        created, identity = bool(outcome.get("created")), outcome.get("identity")
    else:
        # Through the owner operations, as the API does: audited, and enrolled in its schedule.
        result = ConnectionOperations(home).connect(
            connector_key,
            secrets=_secrets(
                secret,
                secret_file,
                secret_stdin,
                [field.name for field in manifest.secrets if field.required],
            ),
            settings=settings,
            display_name=name,
            connection_id=connection,
            allow_recreate=allow_recreate,
        )
        connected, created = result.connection, result.created
        identity = (
            None
            if result.identity is None
            else {"claim": result.identity.claim, "value": result.identity.value}
        )
    payload = {
        "connection_id": connected.connection_id,
        "status": connected.status,
        "created": created,
        "identity": identity,
        "connection": connection_view(connected),
    }
    if as_json:
        print_json(payload)
        return
    verb = "created" if created else "reused"
    who = f"{identity['claim']}={identity['value']}" if identity else "no identity"
    typer.echo(f"{verb} {connected.connection_id} ({who}) [{connected.status}]")


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
