"""The `ownstream` command."""

from __future__ import annotations

import gc
from pathlib import Path

import typer

from ownstream.cli import access, clients, collect, connections, dev
from ownstream.cli.catalog import connectors_app, rules_app, streams_app

app = typer.Typer(
    help="ownstream: your personal data server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", envvar="OWNSTREAM_HOME", help="Data directory (default ~/.ownstream)."
    ),
) -> None:
    ctx.obj = {"home": home}
    tune_garbage_collection()


def tune_garbage_collection() -> None:
    """The command's modules are loaded and live as long as the process: the cyclic collector
    need not walk them again (`gc.freeze`), and it runs after 10,000 net allocations instead
    of 700. Records are acyclic and freed as they go; importing 300,000 Spotify plays spent
    1.55 s of ~15 in the collector with the defaults, 0.21 s with these."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


app.add_typer(connectors_app, name="connectors")
app.add_typer(streams_app, name="streams")
app.add_typer(rules_app, name="rules")
app.add_typer(connections.connections_app, name="connections")
app.add_typer(collect.runs_app, name="runs")
app.command("connect")(connections.connect)
app.command("import")(collect.import_)
app.command("run")(collect.run)
app.command("records")(collect.records)
app.add_typer(access.grants_app, name="grants")
app.add_typer(access.token_app, name="token")
app.command("serve")(access.serve)
app.command("mcp")(access.mcp)
app.command("access-log")(access.access_log)
app.command("migrate")(collect.migrate)
app.add_typer(clients.clients_app, name="clients")
app.add_typer(clients.authorizations_app, name="authorizations")
app.command("console-link")(clients.console_link)
app.command("audit")(collect.audit)
app.command("worker")(collect.worker)
app.add_typer(dev.dev_app, name="dev")


if __name__ == "__main__":
    app()
