"""``mnist aliases | promote | rollback | delete | export | import``: a model's life
after training, over the HTTP API (see docs for what each step promises)."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.client import ApiError, api_of
from cli.console import out


class Format(StrEnum):
    npz = "npz"
    onnx = "onnx"


def _history(alias: dict[str, Any]) -> None:
    table = Table(title=f"alias {alias['name']} -> {alias['model_id']}")
    for column in ("at", "model", "previous", "source", "reason"):
        table.add_column(column, no_wrap=column in ("model", "previous"))
    for row in alias["history"]:
        table.add_row(
            row["at"].replace("T", " ")[:19],
            row["model_id"],
            row["previous_model_id"] or "-",
            row["source"],
            row["reason"] or "",
        )
    out.print(table)


def aliases(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Show this alias's history.")] = None,
) -> None:
    """Aliases and the models they point at (with NAME: its history, newest first)."""
    api = api_of(ctx)
    if name is not None:
        _history(api.get(f"/aliases/{name}"))
        return
    table = Table(title="aliases")
    for column in ("alias", "model", "updated"):
        table.add_column(column, no_wrap=True)
    for item in api.get("/aliases")["items"]:
        table.add_row(item["name"], item["model_id"], item["updated_at"].replace("T", " ")[:19])
    out.print(table)


def promote(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The model's id.")],
    alias: Annotated[str, typer.Option(help="The alias to point at it.")] = "production",
    reason: Annotated[str | None, typer.Option(help="Why, kept in the history.")] = None,
) -> None:
    """Point an alias at a model (production serves /predict by default)."""
    record = api_of(ctx).put(f"/aliases/{alias}", json={"model_id": model, "reason": reason})
    out.print(f"alias {record['name']} -> model {record['model_id']}", soft_wrap=True)


def rollback(
    ctx: typer.Context,
    alias: Annotated[str, typer.Argument(help="The alias to move back.")] = "production",
) -> None:
    """Point an alias back at the model it had before its last change."""
    record = api_of(ctx).post(f"/aliases/{alias}/rollback")
    out.print(f"alias {record['name']} -> model {record['model_id']} (rolled back)")


def delete(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The model's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a model's files and registry entry (refused while an alias points at it)."""
    if not yes and not typer.confirm(f"delete model {model} for good?"):
        raise typer.Exit(1)
    api_of(ctx).delete(f"/models/{model}")
    out.print(f"model {model} deleted")


def export(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The model's id.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write it.")],
    fmt: Annotated[Format, typer.Option("--format", help="npz (importable) or onnx.")] = Format.npz,
) -> None:
    """Download a model: the .npz as stored (for `mnist import` elsewhere), or ONNX."""
    path = "download" if fmt is Format.npz else "onnx"
    response = api_of(ctx).send("GET", f"/models/{model}/{path}")
    try:
        output.write_bytes(response.content)
    except OSError as exc:
        raise ApiError(f"cannot write {output}: {exc.strerror}") from None
    out.print(f"model {model} written to {output} ({len(response.content)} bytes, {fmt.value})")


def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An .npz from `mnist export`.")],
    source: Annotated[str | None, typer.Option(help="Where it came from (recorded).")] = None,
) -> None:
    """Import an exported model; it keeps its id."""
    try:
        payload = file.read_bytes()
    except OSError as exc:
        raise ApiError(f"cannot read {file}: {exc.strerror}") from None
    card = api_of(ctx).post(
        "/models",
        content=payload,
        params={"source": source} if source else None,
        headers={"Content-Type": "application/octet-stream"},
    )
    out.print(f"model {card['id']} imported (sha256 {card['sha256'][:12]}...)")


def register(app: typer.Typer) -> None:
    for command in (aliases, promote, rollback, delete, export):
        app.command()(command)
    app.command("import")(import_)
