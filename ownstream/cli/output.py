"""Rendering for the CLI: `--json` prints machine-readable output, otherwise rich tables."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ownstream.errors import OwnstreamError
from ownstream.home import Home, default_home

console = Console()
err_console = Console(stderr=True)
P = ParamSpec("P")
R = TypeVar("R")

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def home_of(ctx: typer.Context) -> Home:
    obj = ctx.find_root().obj
    path: Path | None = obj.get("home") if isinstance(obj, dict) else None
    return Home(path or default_home())


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        # Text, not markup: a value such as "[draft]" is data, not a rich style tag
        view.add_row(*[Text("" if cell is None else str(cell)) for cell in row])
    console.print(view)


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Report a typed error as text or JSON (with its code) and exit non-zero."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OwnstreamError as exc:
            if kwargs.get("as_json"):
                print_json({"error": {"type": type(exc).__name__, **exc.to_dict()}})
            else:
                detail = escape(f"[{exc.code}] {exc.message}")
                err_console.print(f"[bold red]error[/] {detail}")
                for extra in exc.extra.get("available_connections", []):
                    err_console.print(
                        escape(f"  - {extra['connection_id']}  {extra['display_name']}")
                    )
            raise typer.Exit(1) from None

    return wrapper


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A rich progress display fed by runtime PROGRESS events; silent with --json."""
    if not enabled:
        yield lambda event: None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[records]} records"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None, records=0, note="")

        def update(event: dict[str, Any]) -> None:
            total, count = event.get("total"), event.get("count")
            bar.update(
                task,
                records=event.get("records", 0),
                note=str(event.get("message") or "")[:60],
                total=total if isinstance(total, int) else None,
                completed=count if isinstance(count, int) else None,
            )

        yield update
