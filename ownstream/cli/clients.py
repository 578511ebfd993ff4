"""`ownstream clients|authorizations|console-link`: who registered, who asks, and the owner's
browser sign-in.

The modules of clients and authorizations (authlib, joserfc, cryptography: about 25 ms) are
imported by the commands that use them, so every other command starts without them."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from ownstream.auth.console import PUBLIC_URL_SETTING, mint_link
from ownstream.auth.discovery import normalize_public_url, url_for_bind
from ownstream.cli.output import JsonOption, handles_errors, home_of, print_json, table
from ownstream.errors import InvalidRequest

clients_app = typer.Typer(help="Registered client applications.", no_args_is_help=True)
authorizations_app = typer.Typer(
    help="Requests for access waiting for your decision.", no_args_is_help=True
)


@clients_app.command("list")
@handles_errors
def clients_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    from ownstream.auth.clients import client_view

    store = home_of(ctx).store
    views = [client_view(store, c) for c in store.clients()]
    if as_json:
        print_json(views)
        return
    table(
        "Clients (self-registered, unverified)",
        ["client_id", "name", "auth", "redirect_uris", "active grants"],
        [
            [v["client_id"], v["client_name"], v["token_endpoint_auth_method"],
             ", ".join(v["redirect_uris"]), len(v["active_grants"])]
            for v in views
        ],
    )


@clients_app.command("show")
@handles_errors
def clients_show(ctx: typer.Context, client_id: str, as_json: bool = JsonOption) -> None:
    from ownstream.auth.clients import client_view, find_client

    store = home_of(ctx).store
    view = client_view(store, find_client(store, client_id))
    if as_json:
        print_json(view)
    else:
        typer.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())


@clients_app.command("delete")
@handles_errors
def clients_delete(ctx: typer.Context, client_id: str, as_json: bool = JsonOption) -> None:
    """Delete a client and revoke every grant it holds."""
    from ownstream.auth.clients import delete_client

    result = delete_client(home_of(ctx).store, client_id)
    if as_json:
        print_json(result)
    else:
        typer.echo(f"deleted {client_id}; revoked {len(result['revoked_grants'])} grant(s)")


@authorizations_app.command("list")
@handles_errors
def authorizations_list(
    ctx: typer.Context,
    status: str = typer.Option("pending", "--status", help="pending, approved, denied, …, all"),
    as_json: bool = JsonOption,
) -> None:
    from ownstream.auth.authorizations import authorization_view, status_of

    store = home_of(ctx).store
    views = [
        authorization_view(store, a)
        for a in store.authorizations()
        if status == "all" or status_of(a) == status
    ]
    if as_json:
        print_json(views)
        return
    table(
        "Authorization requests",
        ["id", "client", "flow", "user_code", "status", "streams", "expires_at"],
        [
            [v["id"], v["client_name"], v["flow"], v["user_code"], v["status"],
             ", ".join(s["name"] for s in (v["requested"] or {}).get("streams", []))
             or "(owner chooses)", v["expires_at"]]
            for v in views
        ],
    )


@authorizations_app.command("approve")
@handles_errors
def authorizations_approve(
    ctx: typer.Context,
    authorization_id: str,
    request: Path | None = typer.Option(
        None, "--request", help="Narrow (or choose) the selection: streams, expires_in, …"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Approve a request as asked, or narrowed by a grant-request-shaped JSON file."""
    from ownstream.auth.authorizations import approve

    decision = None
    if request is not None:
        try:
            decision = orjson.loads(request.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise InvalidRequest(f"cannot read {request}: {exc}", param="request") from exc
    home = home_of(ctx)
    outcome = approve(home.store, home.catalog, authorization_id, decision)
    assert outcome.grant is not None
    if as_json:
        print_json({"id": authorization_id, "status": "approved", "grant": outcome.grant.to_dict()})
        return
    typer.echo(f"approved {authorization_id}: grant {outcome.grant.grant_id}")
    for stream in outcome.grant.streams:
        typer.echo(
            f"  {stream.name}: {', '.join(stream.instance_ids)} fields {', '.join(stream.fields)}"
        )


@authorizations_app.command("deny")
@handles_errors
def authorizations_deny(
    ctx: typer.Context, authorization_id: str, as_json: bool = JsonOption
) -> None:
    from ownstream.auth.authorizations import deny

    deny(home_of(ctx).store, authorization_id)
    if as_json:
        print_json({"id": authorization_id, "status": "denied"})
    else:
        typer.echo(f"denied {authorization_id}")


@handles_errors
def console_link(
    ctx: typer.Context,
    public_url: str | None = typer.Option(
        None, "--public-url", help="The server's URL (default: the one `serve` last used)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Mint a one-time browser sign-in link for the owner console."""
    store = home_of(ctx).store
    base = normalize_public_url(
        public_url or store.auth_setting(PUBLIC_URL_SETTING) or url_for_bind("127.0.0.1", 8765)
    )
    url = mint_link(store, base)
    if as_json:
        print_json({"url": url})
    else:
        typer.echo(url)
