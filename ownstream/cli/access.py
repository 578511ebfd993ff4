"""`ownstream grants|token|access-log|serve|mcp`: who may read, and the servers they read from."""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import orjson
import typer

from ownstream.cli.output import JsonOption, handles_errors, home_of, print_json, table
from ownstream.errors import InvalidRequest
from ownstream.home import loose_permissions
from ownstream.logs import configure
from ownstream.owner import AccessOperations
from ownstream.owner.access import OWNER_TOKEN_TTL_SECONDS, grant_view, token_view

grants_app = typer.Typer(help="Grants: what a client may read.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens: mint, list, revoke.", no_args_is_help=True)
log = logging.getLogger("ownstream.serve")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@grants_app.command("create")
@handles_errors
def grants_create(
    ctx: typer.Context,
    client_id: str = typer.Option(..., "--client-id"),
    request: Path = typer.Option(..., "--request", help="A PDPP-style selection (JSON)."),
    as_json: bool = JsonOption,
) -> None:
    """Issue a grant and its client access token (shown once)."""
    try:
        body = orjson.loads(request.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InvalidRequest(f"cannot read {request}: {exc}", param="request") from exc
    grant, token = AccessOperations(home_of(ctx)).issue_grant(client_id, body)
    payload = {"grant_id": grant.grant_id, "access_token": token, "grant": grant.to_dict()}
    if as_json:
        print_json(payload)
        return
    typer.echo(f"grant {grant.grant_id} for {client_id}")
    for stream in grant.streams:
        typer.echo(
            f"  {stream.name}: {', '.join(stream.instance_ids)} fields {', '.join(stream.fields)}"
        )
    typer.echo(f"access token (shown once): {token}")


@grants_app.command("list")
@handles_errors
def grants_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    grants = home_of(ctx).store.grants()
    if as_json:
        print_json([grant_view(g) for g in grants])
        return
    table(
        "Grants",
        ["grant_id", "client", "mode", "streams", "expires", "revoked"],
        [
            [
                g.grant_id,
                g.client_id,
                g.access_mode,
                ", ".join(s.name for s in g.streams),
                g.expires_at,
                g.revoked_at,
            ]
            for g in grants
        ],
    )


@grants_app.command("show")
@handles_errors
def grants_show(ctx: typer.Context, grant_id: str, as_json: bool = JsonOption) -> None:
    payload = grant_view(home_of(ctx).store.grant(grant_id))
    if as_json:
        print_json(payload)
    else:
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


@grants_app.command("revoke")
@handles_errors
def grants_revoke(ctx: typer.Context, grant_id: str, as_json: bool = JsonOption) -> None:
    """Revoke a grant; its tokens stop working on the next request."""
    grant = AccessOperations(home_of(ctx)).revoke_grant(grant_id)
    if as_json:
        print_json({"revoked": True, "grant_id": grant.grant_id, "revoked_at": grant.revoked_at})
    else:
        typer.echo(f"revoked {grant.grant_id}")


@token_app.command("owner")
@handles_errors
def token_owner(
    ctx: typer.Context,
    ttl: int = typer.Option(
        OWNER_TOKEN_TTL_SECONDS, "--ttl", help="Seconds until it expires (default 30 days)."
    ),
    no_expiry: bool = typer.Option(
        False, "--no-expiry", help="Never expires (until revoked). Not recommended."
    ),
    label: str | None = typer.Option(None, "--label", help="What it is for."),
    as_json: bool = JsonOption,
) -> None:
    """Mint an owner token (shown once; stored only hashed)."""
    secret, token = AccessOperations(home_of(ctx)).mint_owner_token(
        ttl_seconds=None if no_expiry else ttl, label=label
    )
    if as_json:
        print_json({**token_view(token), "access_token": secret})
    else:
        typer.echo(secret)
        typer.echo(
            f"({token.token_id}, expires {token.expires_at or 'never'}; shown once)", err=True
        )


@token_app.command("list")
@handles_errors
def token_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Owner and client tokens: id, kind, grant, expiry, revocation, last use (never the token)."""
    tokens = AccessOperations(home_of(ctx)).tokens()
    if as_json:
        print_json([token_view(t) for t in tokens])
        return
    table(
        "Tokens",
        ["token_id", "kind", "grant", "label", "expires", "revoked", "last used"],
        [
            [t.token_id, t.kind, t.grant_id, t.label, t.expires_at, t.revoked_at, t.last_used_at]
            for t in tokens
        ],
    )


@token_app.command("revoke")
@handles_errors
def token_revoke(ctx: typer.Context, token_id: str, as_json: bool = JsonOption) -> None:
    """Revoke one token; it stops working on the next request."""
    token = AccessOperations(home_of(ctx)).revoke_token(token_id)
    if as_json:
        print_json(token_view(token))
    else:
        typer.echo(f"revoked {token.token_id}")


@handles_errors
def access_log(
    ctx: typer.Context,
    client_id: str | None = typer.Option(None, "--client-id"),
    since: str | None = typer.Option(None, "--since", help="A day, YYYY-MM-DD."),
    as_json: bool = JsonOption,
) -> None:
    """How much each client read, per stream and connection and day (never what it read)."""
    home = home_of(ctx)
    home.usage.flush()
    entries = home.store.access_log(client_id=client_id, since=since)
    if as_json:
        print_json([asdict(e) for e in entries])
        return
    table(
        "Access",
        ["day", "client", "grant", "stream", "connection", "reads", "records"],
        [
            [e.day, e.client_id, e.grant_id, e.stream, e.connection_id, e.reads, e.records]
            for e in entries
        ],
    )


@handles_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    public_url: str | None = typer.Option(
        None,
        "--public-url",
        help="The base URL clients use (default: from --host/--port); OAuth needs https "
        "unless it is a loopback address.",
    ),
    scheduler: bool = typer.Option(True, "--worker/--no-worker", help="Run scheduled connections."),
    log_format: str = typer.Option("text", "--log-format", help="text or json."),
    log_level: str = typer.Option("info", "--log-level"),
    as_json: bool = JsonOption,
) -> None:
    """Serve the PDPP read surface, the owner API and client access over HTTP."""
    import uvicorn

    from ownstream.api.app import SHUTDOWN_GRACE_SECONDS, create_app
    from ownstream.auth.console import PUBLIC_URL_SETTING, mint_link
    from ownstream.auth.discovery import normalize_public_url, url_for_bind
    from ownstream.scheduler import Worker

    if log_format not in ("text", "json"):
        raise InvalidRequest("--log-format is text or json", param="log_format")
    configure(log_level, "json" if log_format == "json" else "text")
    home = home_of(ctx)
    url = normalize_public_url(public_url) if public_url else url_for_bind(host, port)
    if host not in LOOPBACK:
        log.warning(
            "listening on %s: beyond this machine, anyone who can reach the port can try "
            "tokens; put it behind TLS (a reverse proxy) before exposing it",
            host,
        )
    loose = loose_permissions(home.path)
    if loose:
        log.warning(
            "other users of this machine may read the owner's data; run `chmod -R go-rwx %s` "
            "(loose: %s)",
            home.path,
            ", ".join(loose[:5]),
        )
    home.store.put_auth_setting(PUBLIC_URL_SETTING, url)
    login = mint_link(home.store, url)
    backend = home.store.capabilities.backend
    storage = f"SQLite (WAL) {home.path / 'ownstream.db'}" if backend == "sqlite" else backend
    if as_json:
        print_json(
            {"url": url, "home": str(home.path), "storage": storage, "worker": scheduler,
             "console_login_url": login}
        )
    else:
        typer.echo(
            f"ownstream is serving {url}\n"
            f"  data directory  {home.path}\n"
            f"  storage         {storage}\n"
            f"  worker          {'on' if scheduler else 'off'}\n"
            f"  owner sign-in   {login}\n"
            "                  (one-time link; `ownstream console-link` mints a fresh one)"
        )
    sys.stdout.flush()
    stop = threading.Event()
    loop = threading.Thread(
        target=Worker(home.runtime()).run_forever, args=(stop,), daemon=True, name="worker"
    )
    if scheduler:
        loop.start()
    try:
        uvicorn.run(
            create_app(home, url), host=host, port=port, log_level="warning", log_config=None
        )
    finally:
        # uvicorn has stopped taking requests: let a scheduled run in progress end cleanly
        # (a run cut off later is reclaimed when its lease lapses, as after a crash)
        stop.set()
        if loop.is_alive():
            loop.join(SHUTDOWN_GRACE_SECONDS)


@handles_errors
def mcp(
    ctx: typer.Context,
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        help="A file holding the client token (else OWNSTREAM_TOKEN); never pass a token "
        "as an argument.",
    ),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve MCP on stdin/stdout for a desktop assistant, reading as one client token."""
    from ownstream.mcp.stdio import read_token, serve_stdio

    serve_stdio(home_of(ctx), read_token(token_file), log_level)
