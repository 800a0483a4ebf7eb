"""``mnist``: the service from a terminal (typer + rich), over its HTTP API only.

    mnist train --preset fast --wait   # queue a job and watch it train
    mnist jobs | status ID | cancel ID | models
    mnist predict digit.png | mnist predict --index 0
    mnist feedback digit.png --label 3 | mnist feedback list | mnist finetune --wait
    mnist sweep --space eta=0.001:0.2:log --trials 20 --wait | sweeps | sweep-status ID
    mnist canary production MODEL --percent 10 | canary production | --promote | --abort
    mnist serve                        # run scripts/dev: redis, worker, API

``--url`` and ``--api-key`` (or ``MNIST_URL`` and ``MNIST_API_KEY``) say where the
service is. Failures print one line on stderr and exit with status 1.
"""

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cli import canary, feedback, lifecycle, models, sweeps
from cli.client import Api, ApiError, api_of, given
from cli.console import AsJson, Limit, Offset, err, out, percent, print_json, print_page, when
from shared.schemas.params import InputScaling, LrSchedule, Preset

DEFAULT_URL = "http://127.0.0.1:8000"

app = typer.Typer(
    name="mnist",
    help="Train and query the mnist-service from the terminal (talks to its HTTP API).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Dtype(StrEnum):
    float32 = "float32"
    float64 = "float64"


@app.callback()
def _options(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="MNIST_URL", help="Where the API listens.", show_default=True)
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="MNIST_API_KEY", help="Sent as X-API-Key (when the server has one)."),
    ] = None,
) -> None:
    ctx.obj = Api(url, api_key)
    ctx.call_on_close(ctx.obj.close)


@app.command()
def train(
    ctx: typer.Context,
    preset: Annotated[
        Preset | None,
        typer.Option(
            help="Start from named settings: fast (>= 97.5% test accuracy in well under a "
            "minute) or book (the book's 1,000-epoch run, the server's default); "
            "the other options override it."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    n_hidden: Annotated[int | None, typer.Option(help="Hidden units.")] = None,
    eta: Annotated[float | None, typer.Option(help="Initial learning rate.")] = None,
    l1: Annotated[float | None, typer.Option(help="L1 penalty.")] = None,
    l2: Annotated[float | None, typer.Option(help="L2 penalty.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Momentum.")] = None,
    decrease_const: Annotated[float | None, typer.Option(help="Learning-rate decay.")] = None,
    lr_schedule: Annotated[LrSchedule | None, typer.Option(help="Decay schedule.")] = None,
    minibatches: Annotated[int | None, typer.Option(help="Mini-batches per epoch.")] = None,
    shuffle: Annotated[
        bool | None, typer.Option("--shuffle/--no-shuffle", help="Reshuffle every epoch.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the job's generator.")] = None,
    input_scaling: Annotated[
        InputScaling | None, typer.Option(help="What the network sees of a pixel.")
    ] = None,
    validation_fraction: Annotated[
        float | None,
        typer.Option(help="Share held out for validation (gives accuracy per epoch)."),
    ] = None,
    train_size: Annotated[int | None, typer.Option(help="Train on the first N images.")] = None,
    dtype: Annotated[Dtype | None, typer.Option(help="Arithmetic precision.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Follow the job live to its end.")
    ] = False,
    promote: Annotated[
        str | None,
        typer.Option(help="When it succeeds, point this alias at it if it is good enough."),
    ] = None,
    min_gain: Annotated[
        float, typer.Option(help="With --promote: accuracy needed over the alias's model.")
    ] = 0.0,
    as_json: AsJson = False,
) -> None:
    """Queue a training job (unset options: the preset's values, by default the book's run)."""
    params = given(
        {
            "epochs": epochs,
            "n_hidden": n_hidden,
            "eta": eta,
            "l1": l1,
            "l2": l2,
            "alpha": alpha,
            "decrease_const": decrease_const,
            "lr_schedule": lr_schedule,
            "minibatches": minibatches,
            "shuffle": shuffle,
            "seed": seed,
            "input_scaling": input_scaling,
            "validation_fraction": validation_fraction,
            "train_size": train_size,
            "dtype": dtype,
        }
    )
    api = api_of(ctx)
    if promote is not None:
        params["promote"] = {"alias": promote, "min_gain": min_gain}
    query = {"preset": preset.value} if preset is not None else None
    accepted = api.post("/jobs", json=params, params=query)
    job_id = accepted["id"]
    if not wait:
        if as_json:
            print_json(accepted)
        else:
            out.print(f"job {job_id} {accepted['status']}", soft_wrap=True)
            out.print(f"follow it: mnist status {job_id} (or train with --wait)", soft_wrap=True)
        return
    final = _follow(api, job_id)
    if as_json:
        print_json(final)
    _summary(final)
    if final["status"] != "succeeded":
        raise typer.Exit(1)


def _follow(api: Api, job_id: str) -> dict[str, Any]:
    """A live progress bar from the job's event stream; returns the final job record."""
    progress = Progress(
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        TextColumn("epoch"),
        MofNCompleteColumn(),
        TextColumn("cost {task.fields[cost]}"),
        TextColumn("acc {task.fields[acc]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )
    with progress:
        task = progress.add_task("queued", total=None, cost="-", acc="-")

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event in ("status", "end"):
                progress.update(task, description=data["status"], total=data["epochs"])
                if event == "end":
                    progress.update(task, completed=data["epoch"])
            elif event == "epoch":
                progress.update(
                    task,
                    description="running",
                    total=data["epochs"],
                    completed=data["epoch"],
                    cost=f"{data['cost']:.4f}",
                    acc=percent(data.get("val_accuracy")),
                )

        return api.follow(job_id, on_event)


def _summary(job: dict[str, Any]) -> None:
    line = f"job {job['id']} {job['status']} after {job['epoch']} of {job['epochs']} epochs"
    if job["status"] == "succeeded":
        line += (
            f": train accuracy {percent(job['train_accuracy'])}, "
            f"test accuracy {percent(job['test_accuracy'])}, model {job['model_id']}"
        )
    elif job.get("error"):
        line += f": {job['error']}"
    out.print(line, highlight=False, soft_wrap=True)
    if job.get("promotion"):
        gate = job["promotion"]
        verdict = "promoted to" if gate["promoted"] else "not promoted to"
        out.print(f"{verdict} {gate['alias']}: {gate['reason']}", highlight=False, soft_wrap=True)


@app.command()
def jobs(
    ctx: typer.Context, limit: Limit = 20, offset: Offset = 0, as_json: AsJson = False
) -> None:
    """Training jobs, newest first."""
    columns = ("id", "status", "epoch", "created", "test accuracy")
    print_page(api_of(ctx), "jobs", limit, offset, as_json, columns, _job_row)


def _job_row(job: dict[str, Any]) -> list[str]:
    return [
        job["id"],
        job["status"],
        f"{job['epoch']}/{job['epochs']}",
        when(job["created_at"]),
        percent(job["test_accuracy"]),
    ]


@app.command()
def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    as_json: AsJson = False,
) -> None:
    """One job: status, progress, parameters, last epochs, results."""
    job = api_of(ctx).get(f"/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    table = Table(show_header=False, title=f"job {job['id']}")
    table.add_column(style="bold")
    table.add_column()
    rows = {
        "status": job["status"],
        "progress": f"epoch {job['epoch']} of {job['epochs']}",
        "created": when(job["created_at"]),
        "started": when(job["started_at"]),
        "finished": when(job["finished_at"]),
        "train accuracy": percent(job["train_accuracy"]),
        "test accuracy": percent(job["test_accuracy"]),
        "model": job["model_id"] or "-",
        "parameters": ", ".join(f"{k}={v}" for k, v in job["params"].items()),
    }
    if job.get("error"):
        rows["error"] = job["error"]
    for key, value in rows.items():
        table.add_row(key, str(value))
    out.print(table)
    if job["history"]:
        history = Table(title="last epochs")
        for column in ("epoch", "cost", "seconds", "val accuracy"):
            history.add_column(column, justify="right")
        for row in job["history"][-5:]:
            history.add_row(
                str(row["epoch"]),
                f"{row['cost']:.4f}",
                f"{row['seconds']:.3f}",
                percent(row.get("val_accuracy")),
            )
        out.print(history)


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
) -> None:
    """Cancel a job: a queued one never runs, a running one stops at its next epoch."""
    job = api_of(ctx).post(f"/jobs/{job_id}/cancel")
    if job["status"] == "cancelled":
        out.print(f"job {job['id']} cancelled")
    else:
        out.print(f"job {job['id']} {job['status']}: it stops at its next epoch")


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST", help="Address of the API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port of the API.")] = 8000,
) -> None:
    """Run the whole service here (scripts/dev): redis-server, a worker and the API."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "dev"
    if not script.is_file():
        raise ApiError(
            "`mnist serve` runs scripts/dev from a source checkout, and there is none here; "
            "use `docker compose up` or start uvicorn and celery yourself"
        )
    os.environ.update(HOST=host, PORT=str(port))
    os.execv(script, [str(script)])


models.register(app)
lifecycle.register(app)
canary.register(app)
feedback.register(app, _follow, _summary)
sweeps.register(app)


def main() -> None:
    """The ``mnist`` command: any failure is one line on stderr and exit status 1."""
    try:
        app()
    except ApiError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line (MNIST_DEBUG=1 for a traceback)
        if os.environ.get("MNIST_DEBUG"):
            raise
        err.print(f"error: {type(exc).__name__}: {exc}", highlight=False, markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
