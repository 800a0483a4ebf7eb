"""``mnist canary``: try a model on an alias's live traffic before it serves it all,
over the HTTP API (docs/lifecycle.md "Canary and shadow").

    mnist canary production MODEL --percent 10   # the candidate answers 10%
    mnist canary production MODEL --shadow       # it predicts beside the primary
    mnist canary production                      # the split and its statistics
    mnist canary production --promote            # or --abort
"""

from typing import Annotated, Any

import typer
from rich.table import Table

from cli.client import ApiError, api_of
from cli.console import out, percent


def _share(value: float | None, interval: list[float] | None = None) -> str:
    text = percent(value, 1)
    if value is not None and interval is not None:
        text += f" ({100 * interval[0]:.1f}-{100 * interval[1]:.1f})"
    return text


def _mode(split: dict[str, Any]) -> str:
    return f"canary {split['percent']}%" if split["mode"] == "canary" else "shadow"


def show(split: dict[str, Any]) -> None:
    """The split and its statistics as a table a person reads."""
    stats = split["stats"]
    out.print(
        f"alias {split['alias']}: {_mode(split)}, candidate {split['model_id']} beside "
        f"{split['primary_model_id']} since {split['started_at'].replace('T', ' ')[:19]}",
        soft_wrap=True,
    )
    table = Table()
    for column in ("", "requests", "images", "mean top p", "corrections", "accuracy (95%)"):
        table.add_column(column, justify="left" if not column else "right")
    for side in ("primary", "canary"):
        row = stats[side]
        top = row["mean_top_probability"]
        table.add_row(
            side,
            str(row["requests"]),
            str(row["images"]),
            "-" if top is None else f"{top:.3f}",
            str(row["corrections"]),
            _share(row["accuracy"], row["accuracy_interval"]),
        )
    out.print(table)
    shadow = stats["shadow"]
    if shadow["compared"] or shadow["dropped"] or split["mode"] == "shadow":
        out.print(
            f"shadow: {shadow['compared']} images compared, agreement "
            f"{_share(shadow['agreement'], shadow['agreement_interval'])}, "
            f"{shadow['dropped']} dropped",
            soft_wrap=True,
        )


def canary(
    ctx: typer.Context,
    alias: Annotated[str, typer.Argument(help="The alias whose traffic is split.")],
    model: Annotated[
        str | None, typer.Argument(metavar="[MODEL]", help="The candidate's id (to start).")
    ] = None,
    percent: Annotated[
        int | None, typer.Option(help="The candidate answers N% of the requests (1-99).")
    ] = None,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="The candidate predicts beside the primary.")
    ] = False,
    promote: Annotated[
        bool, typer.Option("--promote", help="Make the candidate the alias's target.")
    ] = False,
    abort: Annotated[bool, typer.Option("--abort", help="End the split; nothing changes.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, kept with the split.")] = None,
) -> None:
    """Canary or shadow a model on an alias; without MODEL: the split's statistics."""
    api = api_of(ctx)
    if promote or abort:
        if model is not None or percent is not None or shadow or (promote and abort):
            raise ApiError("--promote and --abort take only the ALIAS, and not both")
        if promote:
            record = api.post(f"/aliases/{alias}/canary/promote")
            out.print(f"alias {record['name']} -> model {record['model_id']} (promoted)")
            return
        ended = api.request("DELETE", f"/aliases/{alias}/canary")
        show(ended)
        out.print(f"split on {alias} aborted; {alias} stays on {ended['primary_model_id']}")
        return
    if model is None:
        if percent is not None or shadow:
            raise ApiError("give the MODEL to try: mnist canary ALIAS MODEL --percent N")
        show(api.get(f"/aliases/{alias}/canary"))
        return
    if (percent is not None) == shadow:
        raise ApiError("give exactly one of --percent N or --shadow")
    body: dict[str, Any] = {"model_id": model, "reason": reason}
    body |= {"mode": "shadow"} if shadow else {"mode": "canary", "percent": percent}
    show(api.put(f"/aliases/{alias}/canary", json=body))


def register(app: typer.Typer) -> None:
    app.command()(canary)
