"""`ownstream grants|token|serve`: who may read, and the HTTP server they read from."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer

from ownstream.cli.output import JsonOption, handles_errors, home_of, print_json, table
from ownstream.errors import InvalidRequest
from ownstream.grants.issue import issue_grant
from ownstream.grants.tokens import mint

grants_app = typer.Typer(help="Grants: what a client may read.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens.", no_args_is_help=True)


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
    home = home_of(ctx)
    grant, token = issue_grant(home.store, home.catalog, client_id, body)
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
        print_json([{**g.to_dict(), "revoked_at": g.revoked_at} for g in grants])
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
    grant = home_of(ctx).store.grant(grant_id)
    payload = {**grant.to_dict(), "revoked_at": grant.revoked_at}
    if as_json:
        print_json(payload)
    else:
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


@grants_app.command("revoke")
@handles_errors
def grants_revoke(ctx: typer.Context, grant_id: str, as_json: bool = JsonOption) -> None:
    """Revoke a grant; its tokens stop working on the next request."""
    store = home_of(ctx).store
    with store.transaction():
        grant = store.revoke_grant(grant_id)
    if as_json:
        print_json({"revoked": True, "grant_id": grant.grant_id, "revoked_at": grant.revoked_at})
    else:
        typer.echo(f"revoked {grant.grant_id}")


@token_app.command("owner")
@handles_errors
def token_owner(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Mint an owner token (shown once; stored only hashed)."""
    store = home_of(ctx).store
    with store.transaction():
        token = mint(store, "owner")
    if as_json:
        print_json({"token_kind": "owner", "access_token": token})
    else:
        typer.echo(token)


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
    as_json: bool = JsonOption,
) -> None:
    """Serve the PDPP read surface, the owner API and client access over HTTP."""
    import threading

    import uvicorn

    from ownstream.api.app import create_app
    from ownstream.auth.console import PUBLIC_URL_SETTING, mint_link
    from ownstream.auth.discovery import normalize_public_url, url_for_bind
    from ownstream.scheduler import Worker

    home = home_of(ctx)
    url = normalize_public_url(public_url) if public_url else url_for_bind(host, port)
    home.store.put_auth_setting(PUBLIC_URL_SETTING, url)
    login = mint_link(home.store, url)
    storage = f"SQLite (WAL) {home.path / 'ownstream.db'}"
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
    if scheduler:
        loop = threading.Thread(
            target=Worker(home.runtime()).run_forever, args=(stop,), daemon=True, name="worker"
        )
        loop.start()
    try:
        uvicorn.run(create_app(home, url), host=host, port=port, log_level="warning")
    finally:
        stop.set()
