"""``mnist sweep | sweeps | sweep-status | sweep-cancel``: hyper-parameter sweeps over the
HTTP API (``POST /sweeps`` and friends; see docs/sweeps.md).

``--space`` takes ``field=low:high`` (``:log`` for a log scale) or ``field=a,b,c``
(choices); a malformed one is an :class:`ApiError` (one line, exit 1) before anything
is sent.
"""

import json
import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from cli.client import Api, ApiError, api_of, given
from cli.console import AsJson, Limit, Offset, err, out, percent, print_page
from shared.schemas.params import InputScaling, LrSchedule, Preset

ENDED = {"succeeded", "failed", "cancelled"}
TRIAL_ENDED = {"complete", "pruned", "failed", "cancelled"}
POLL_SECONDS = 1.0


class Sampler(StrEnum):
    tpe = "tpe"
    random = "random"
    grid = "grid"


class Pruner(StrEnum):
    median = "median"
    none = "none"


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _choice(text: str) -> object:
    if text in ("true", "false"):
        return text == "true"
    try:
        return _number(text)
    except ValueError:
        return text


def parse_space(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["eta=0.001:0.2:log", "n_hidden=16:256", "lr_schedule=compound,inverse"]`` as
    the ``space`` of ``POST /sweeps``."""
    space: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip()
        usage = (
            f"--space {item!r}: expected FIELD=LOW:HIGH, FIELD=LOW:HIGH:log or FIELD=A,B,... "
            "(e.g. eta=0.001:0.2:log)"
        )
        if not sep or not name or not spec:
            raise ApiError(usage)
        if name in space:
            raise ApiError(f"--space {name} is given twice")
        if ":" in spec:
            parts = spec.split(":")
            log = len(parts) == 3 and parts[2] == "log"
            if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
                raise ApiError(usage)
            try:
                low, high = _number(parts[0]), _number(parts[1])
            except ValueError:
                raise ApiError(usage) from None
            space[name] = {"low": low, "high": high, "log": log}
        else:
            choices = [c.strip() for c in spec.split(",")]
            if not all(choices):
                raise ApiError(usage)
            space[name] = {"choices": [_choice(c) for c in choices]}
    if not space:
        raise ApiError("give at least one --space FIELD=LOW:HIGH[:log] or FIELD=A,B,...")
    return space


def _param(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_table(sweep: dict[str, Any]) -> Table:
    names = list(sweep["request"]["space"])
    done = sum(t["state"] in TRIAL_ENDED for t in sweep["trials"])
    title = f"sweep {sweep['id']} {sweep['status']}: {done} of {sweep['request']['trials']} trials"
    table = Table(title=title)
    for column in ("#", "state", "val acc", "epochs", *names, "model"):
        table.add_column(column, no_wrap=column == "model")
    best = (sweep.get("best") or {}).get("number")
    for trial in sorted(sweep["trials"], key=lambda t: t["number"]):
        table.add_row(
            str(trial["number"]),
            trial["state"],
            percent(trial["value"]),
            str(trial["epochs_run"]),
            *(_param(trial["params"].get(n, "-")) for n in names),
            trial["model_id"] or "-",
            style="bold green" if trial["number"] == best else None,
        )
    return table


def _summary(sweep: dict[str, Any]) -> None:
    line = f"sweep {sweep['id']} {sweep['status']}"
    if sweep.get("wall_seconds"):
        line += f" in {sweep['wall_seconds']:.1f} s"
    best = sweep.get("best")
    if best:
        params = ", ".join(f"{k}={_param(v)}" for k, v in best["params"].items())
        line += (
            f": best trial {best['number']} validation accuracy {percent(best['value'])} "
            f"({params}), model {best['model_id']}"
        )
    elif sweep.get("error"):
        line += f": {sweep['error']}"
    out.print(line, highlight=False, soft_wrap=True)
    gate = sweep.get("promotion")
    if gate:
        verdict = "promoted to" if gate["promoted"] else "not promoted to"
        out.print(f"{verdict} {gate['alias']}: {gate['reason']}", highlight=False, soft_wrap=True)


def _watch(api: Api, sweep_id: str) -> dict[str, Any]:
    """A live table of the trials (on stderr, so stdout keeps the result) until the
    sweep has ended and its promotion gate ran; returns the final record."""
    sweep = api.get(f"/sweeps/{sweep_id}")
    with Live(trials_table(sweep), console=err, refresh_per_second=4) as live:
        while not (sweep["status"] in ENDED and sweep["settled"]):
            time.sleep(POLL_SECONDS)
            sweep = api.get(f"/sweeps/{sweep_id}")
            live.update(trials_table(sweep))
    return sweep


def sweep(
    ctx: typer.Context,
    space: Annotated[
        list[str],
        typer.Option(
            "--space",
            help="A field to search: FIELD=LOW:HIGH, FIELD=LOW:HIGH:log or FIELD=A,B,... "
            "(repeat for several).",
        ),
    ],
    trials: Annotated[int, typer.Option(help="Trials in all.")] = 20,
    parallel: Annotated[int, typer.Option(help="At most this many trials at once.")] = 2,
    preset: Annotated[
        Preset | None, typer.Option(help="Base values start from this preset.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Base: passes over the data.")] = None,
    train_size: Annotated[int | None, typer.Option(help="Base: first N images.")] = None,
    minibatches: Annotated[int | None, typer.Option(help="Base: mini-batches per epoch.")] = None,
    n_hidden: Annotated[int | None, typer.Option(help="Base: hidden units.")] = None,
    eta: Annotated[float | None, typer.Option(help="Base: learning rate.")] = None,
    lr_schedule: Annotated[LrSchedule | None, typer.Option(help="Base: decay schedule.")] = None,
    input_scaling: Annotated[
        InputScaling | None, typer.Option(help="Base: what the network sees of a pixel.")
    ] = None,
    validation_fraction: Annotated[
        float | None, typer.Option(help="Base: share held out (default 0.1).")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Base: early stopping after N epochs without gain.")
    ] = None,
    sampler: Annotated[Sampler, typer.Option(help="How Optuna picks values.")] = Sampler.tpe,
    pruner: Annotated[Pruner, typer.Option(help="Stop trials behind the median.")] = (
        Pruner.median
    ),
    seed: Annotated[int | None, typer.Option(help="Seed of the sampler.")] = None,
    promote: Annotated[
        str | None, typer.Option(help="When it ends, put its best model through this alias's gate.")
    ] = None,
    min_gain: Annotated[float, typer.Option(help="With --promote: the gate's margin.")] = 0.0,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Follow it live (a table of trials) to its end.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Search hyper-parameters: TRIALS training jobs chosen by Optuna, best by validation
    accuracy (e.g. --space eta=0.001:0.2:log --space n_hidden=16:256)."""
    try:
        parsed = parse_space(space)
    except ApiError as exc:  # printed here: rich would read ":b:" in "a:b:log" as an emoji
        err.print(f"error: {exc}", highlight=False, markup=False, emoji=False, soft_wrap=True)
        raise typer.Exit(1) from None
    body: dict[str, Any] = {
        "space": parsed,
        "trials": trials,
        "parallel": parallel,
        "sampler": sampler.value,
        "pruner": pruner.value,
    }
    base = given(
        {
            "epochs": epochs,
            "train_size": train_size,
            "minibatches": minibatches,
            "n_hidden": n_hidden,
            "eta": eta,
            "lr_schedule": lr_schedule,
            "input_scaling": input_scaling,
            "validation_fraction": validation_fraction,
        }
    )
    if patience is not None:
        base["early_stopping"] = {"patience": patience}
    if base:
        body["base"] = base
    if seed is not None:
        body["seed"] = seed
    if promote is not None:
        body["promote"] = {"alias": promote, "min_gain": min_gain}
    api = api_of(ctx)
    query = {"preset": preset.value} if preset is not None else None
    accepted = api.post("/sweeps", json=body, params=query)
    if not wait:
        if as_json:
            out.print_json(json.dumps(accepted))
        else:
            out.print(f"sweep {accepted['id']} {accepted['status']}", soft_wrap=True)
            out.print(f"follow it: mnist sweep-status {accepted['id']}", soft_wrap=True)
        return
    final = _watch(api, accepted["id"])
    if as_json:
        out.print_json(json.dumps(final))
    else:
        out.print(trials_table(final))
        _summary(final)
    if final["status"] != "succeeded":
        raise typer.Exit(1)


def sweeps(
    ctx: typer.Context, limit: Limit = 20, offset: Offset = 0, as_json: AsJson = False
) -> None:
    """Sweeps, newest first."""
    columns = ("id", "status", "trials", "best val acc", "created")
    print_page(api_of(ctx), "sweeps", limit, offset, as_json, columns, _sweep_row)


def _sweep_row(item: dict[str, Any]) -> list[str]:
    done = sum(t["state"] in TRIAL_ENDED for t in item["trials"])
    return [
        item["id"],
        item["status"],
        f"{done}/{item['request']['trials']}",
        percent((item.get("best") or {}).get("value")),
        item["created_at"].replace("T", " ")[:19],
    ]


def sweep_status(
    ctx: typer.Context,
    sweep_id: Annotated[str, typer.Argument(metavar="ID", help="The sweep's id.")],
    as_json: AsJson = False,
) -> None:
    """One sweep: its trials (params, state, validation accuracy, model) and the best."""
    record = api_of(ctx).get(f"/sweeps/{sweep_id}")
    if as_json:
        out.print_json(json.dumps(record))
        return
    out.print(trials_table(record))
    _summary(record)


def sweep_cancel(
    ctx: typer.Context,
    sweep_id: Annotated[str, typer.Argument(metavar="ID", help="The sweep's id.")],
) -> None:
    """Cancel a sweep: no new trial starts, running ones stop at their next epoch."""
    record = api_of(ctx).post(f"/sweeps/{sweep_id}/cancel")
    out.print(
        f"sweep {record['id']} {record['status']}: no new trial starts; "
        "running trials stop at their next epoch",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command()(sweep)
    app.command()(sweeps)
    app.command("sweep-status")(sweep_status)
    app.command("sweep-cancel")(sweep_cancel)
