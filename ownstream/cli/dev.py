"""`ownstream dev`: development aids (a Spotify Web API test double). Never used by connectors."""

from __future__ import annotations

import typer

from ownstream.cli.output import JsonOption, handles_errors, print_json
from ownstream.owner.provider_oauth import CALLBACK_PATH, DEFAULT_SERVER_URL, SERVER_URL_ENV

dev_app = typer.Typer(help="Development aids.", no_args_is_help=True)
DEV_CLIENT_ID = "ownstream-dev"  # the app registered at the double


@dev_app.command("spotify-double")
@handles_errors
def spotify_double(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8766, "--port"),
    users: int = typer.Option(2, "--users", min=1, max=20, help="Generated users."),
    plays: int = typer.Option(3000, "--plays", help="Plays per user."),
    seed: int = typer.Option(1, "--seed"),
    server_url: str = typer.Option(
        DEFAULT_SERVER_URL,
        "--server-url",
        envvar=SERVER_URL_ENV,
        help="The ownstream server whose OAuth callback the double's app redirects to.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Serve a local Spotify Web API double with generated users; prints a token per user and
    how to connect them by OAuth instead."""
    from ownstream.dev.spotify_data import generate_catalog, generate_user
    from ownstream.dev.spotify_double import serve

    catalog = generate_catalog(seed=seed)
    people = [
        generate_user(f"user{i + 1}", seed=seed * 100 + i, plays=plays, catalog=catalog)
        for i in range(users)
    ]
    tokens = {f"dev-token-{person.id}": person.id for person in people}
    redirect_uri = server_url.rstrip("/") + CALLBACK_PATH

    def ready(base_url: str) -> None:
        info = {
            "base_url": base_url,
            "tokens": tokens,
            "client_id": DEV_CLIENT_ID,
            "redirect_uri": redirect_uri,
        }
        if as_json:
            print_json(info)
        else:
            typer.echo(f"Spotify Web API double on {base_url}")
            for token, user_id in tokens.items():
                typer.echo(
                    f"  ownstream connect spotify --secret access_token={token} "
                    f"--setting api_base_url={base_url}   # {user_id}"
                )
            typer.echo(
                f"By OAuth (app {DEV_CLIENT_ID}, redirecting to {redirect_uri}), with "
                "`ownstream serve` running:"
            )
            typer.echo(
                f"  ownstream connect spotify --oauth --client-id {DEV_CLIENT_ID} "
                f"--server-url {server_url} --setting api_base_url={base_url} "
                f"--setting token_url={base_url}/api/token "
                f"--setting authorization_url={base_url}/authorize"
            )

    serve(host, port, people, tokens, clients={DEV_CLIENT_ID: [redirect_uri]}, on_ready=ready)
