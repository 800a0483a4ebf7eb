"""Where the CLI writes (tables and results to stdout, failures to stderr), and how it
writes the values every command shows."""

import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.client import Api

out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # piped: tables keep whole ids rather than fit 80 columns
    out.width = max(out.width, 160)


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value))


def percent(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def when(value: str | None) -> str:
    return value.replace("T", " ")[:19] if value else "-"


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Limit = Annotated[int, typer.Option(help="How many (newest first).")]
Offset = Annotated[int, typer.Option(help="How many to skip.")]


def print_page(
    api: Api,
    what: str,
    limit: int,
    offset: int,
    as_json: bool,
    columns: Sequence[str],
    row: Callable[[dict[str, Any]], Sequence[str]],
) -> None:
    """``mnist jobs`` and its kind: a page of ``GET /<what>``, as JSON or as a table
    titled ``<what> 1-20 of N`` with a ``row`` of ``columns`` an item (ids kept whole)."""
    page = api.get(f"/{what}", limit=limit, offset=offset)
    if as_json:
        print_json(page)
        return
    table = Table(title=f"{what} {offset + 1}-{offset + len(page['items'])} of {page['total']}")
    for column in columns:
        table.add_column(column, no_wrap=column == "id")
    for item in page["items"]:
        table.add_row(*row(item))
    out.print(table)
