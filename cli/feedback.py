"""``mnist feedback FILE --label N | feedback list`` and ``mnist finetune``: users'
corrections and the recommended fine-tune on them, over the HTTP API.

``feedback`` is one command whose argument is either the word ``list`` or a picture's
path (``./list`` names a file called "list"), so that both forms the README shows work
as written.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.client import Api, ApiError, api_of
from cli.console import AsJson, out, percent

# The README's recommended recipe ("Learning from corrections").
EPOCHS, ETA, WEIGHT, MIN_GAIN = 3, 0.005, 50, 0.01

Follow = Callable[[Api, str], dict[str, Any]]
Summary = Callable[[dict[str, Any]], None]


def feedback(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="FILE|list",
            help="A picture of one digit to send as a correction, or `list` to list them.",
        ),
    ],
    label: Annotated[
        int | None,
        typer.Option(
            min=0, max=9, help="With FILE: what the digit really is. With list: only this digit's."
        ),
    ] = None,
    predicted: Annotated[
        int | None, typer.Option(min=0, max=9, help="With FILE: what the model answered.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="With FILE: the model that answered (its id).")
    ] = None,
    limit: Annotated[int, typer.Option(help="With list: how many (newest first).")] = 20,
    offset: Annotated[int, typer.Option(help="With list: how many to skip.")] = 0,
    as_json: AsJson = False,
) -> None:
    """Send a correction (FILE --label N) or list the corrections (list)."""
    api = api_of(ctx)
    if target == "list":
        _list(api, label, limit, offset, as_json)
        return
    if label is None:
        raise ApiError("--label N is required with a FILE: what the digit really is (0-9)")
    file = Path(target)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ApiError(f"cannot read {file}: {exc.strerror or exc}") from None
    form: dict[str, str] = {"label": str(label)}
    if predicted is not None:
        form["predicted"] = str(predicted)
    if model:
        form["model_id"] = model
    response = api.send(
        "POST",
        "/feedback",
        files={"file": (file.name, data, "application/octet-stream")},
        data=form,
    )
    item = response.json()
    if as_json:
        out.print_json(response.text)
        return
    said = "saved" if response.status_code == 201 else "already saved"
    out.print(f"correction {item['id']} {said}: a {item['label']}", highlight=False, soft_wrap=True)


def _list(api: Api, label: int | None, limit: int, offset: int, as_json: bool) -> None:
    query: dict[str, Any] = {"limit": limit, "offset": offset}
    if label is not None:
        query["label"] = label
    page = api.get("/feedback", **query)
    if as_json:
        out.print_json(data=page)
        return
    shown = f"{offset + 1}-{offset + len(page['items'])}" if page["items"] else "none"
    which = f" of label {label}" if label is not None else ""
    table = Table(title=f"corrections{which} {shown} of {page['total']}")
    for column in ("id", "label", "predicted", "model", "source", "created (UTC)"):
        table.add_column(column, no_wrap=column == "id")
    for item in page["items"]:
        table.add_row(
            item["id"],
            str(item["label"]),
            "-" if item["predicted"] is None else str(item["predicted"]),
            (item["model_id"] or "-")[:8],
            item["source"],
            item["created_at"].replace("T", " ")[:19],
        )
    out.print(table)
    stats = api.get("/feedback/stats")
    counts = "  ".join(f"{digit}: {n}" for digit, n in stats["by_label"].items())
    out.print(f"per digit ({stats['total']} in all)  {counts}", highlight=False, soft_wrap=True)


def finetune(
    ctx: typer.Context,
    from_: Annotated[
        str,
        typer.Option("--from", help="The model to start from: an alias or a model id."),
    ] = "production",
    weight: Annotated[
        int,
        typer.Option(
            "--weight",
            min=0,
            max=100,
            help="Each correction repeated this many times (corrections x weight ≈ 20,000 "
            "makes them about a third of MNIST).",
        ),
    ] = WEIGHT,
    epochs: Annotated[int, typer.Option(help="Passes over MNIST plus corrections.")] = EPOCHS,
    eta: Annotated[float, typer.Option(help="Learning rate (low: MNIST is kept).")] = ETA,
    promote: Annotated[
        str | None,
        typer.Option(
            help="Point this alias at the new model if it beats the alias's model on the "
            "held-out corrections by --min-gain (and keeps its MNIST test accuracy)."
        ),
    ] = "production",
    no_promote: Annotated[bool, typer.Option("--no-promote", help="Do not promote.")] = False,
    min_gain: Annotated[float, typer.Option(help="With --promote: the gain needed.")] = MIN_GAIN,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Follow the job live to its end.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Fine-tune a model on the corrections with the README's recommended recipe.

    The fast preset from --from's weights, 3 epochs, eta 0.005, each correction 50
    times; promoted to --promote if it does better on the held-out corrections."""
    body: dict[str, Any] = {
        "init_model": from_,
        "epochs": epochs,
        "eta": eta,
        "feedback_weight": weight,
    }
    if promote and not no_promote:
        body["promote"] = {"alias": promote, "metric": "feedback_accuracy", "min_gain": min_gain}
    api = api_of(ctx)
    accepted = api.post("/jobs", json=body, params={"preset": "fast"})
    job_id = accepted["id"]
    if not wait:
        if as_json:
            out.print_json(data=accepted)
            return
        out.print(
            f"job {job_id} {accepted['status']}: fine-tuning {from_} on the corrections",
            highlight=False,
            soft_wrap=True,
        )
        out.print(f"follow it: mnist status {job_id} (or finetune with --wait)", soft_wrap=True)
        return
    final = _hooks["follow"](api, job_id)
    if as_json:
        out.print_json(data=final)
    _hooks["summary"](final)
    if final["status"] == "succeeded" and final.get("model_id"):
        card = api.get(f"/models/{final['model_id']}")
        if card.get("feedback_accuracy") is not None:
            out.print(
                f"held-out corrections: {percent(card.get('parent_feedback_accuracy'), 1)} "
                f"(parent) -> {percent(card['feedback_accuracy'], 1)}, "
                f"trained on {card.get('feedback_count', 0)} corrections",
                highlight=False,
                soft_wrap=True,
            )
    if final["status"] != "succeeded":
        raise typer.Exit(1)


_hooks: dict[str, Any] = {}


def register(app: typer.Typer, follow: Follow, summary: Summary) -> None:
    """Add ``feedback`` and ``finetune``; ``--wait`` uses ``train``'s progress bar and
    summary (passed in: cli.main imports this module)."""
    _hooks.update(follow=follow, summary=summary)
    app.command()(feedback)
    app.command()(finetune)
