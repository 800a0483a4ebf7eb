"""``mnist models`` and ``mnist predict``: what was trained, and what it answers."""

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import ApiError, api_of
from cli.console import AsJson, Limit, Offset, out, percent, print_json, print_page, when
from shared.data import mnist


def models(
    ctx: typer.Context, limit: Limit = 20, offset: Offset = 0, as_json: AsJson = False
) -> None:
    """Trained models, newest first, with the aliases pointing at each."""
    columns = ("id", "aliases", "created", "train acc", "test acc", "hidden", "epochs", "eta")
    print_page(api_of(ctx), "models", limit, offset, as_json, columns, _model_row)


def _model_row(model: dict[str, Any]) -> list[str]:
    params = model["params"]
    return [
        model["id"],
        ", ".join(model["aliases"]) or "-",
        when(model["created_at"]),
        percent(model["train_accuracy"]),
        percent(model["test_accuracy"]),
        str(params["n_hidden"]),
        str(params["epochs"]),
        f"{params['eta']:g}",
    ]


def _test_image(mnist_dir: Path, index: int) -> tuple[list[int], int]:
    """Test image ``index`` (784 pixels) and its label, from the IDX files."""
    try:
        images = mnist.parse_idx(
            mnist.read_idx_bytes(mnist_dir / mnist.FILES["test_images"]), mnist.IMAGES_MAGIC
        )
        labels = mnist.parse_idx(
            mnist.read_idx_bytes(mnist_dir / mnist.FILES["test_labels"]), mnist.LABELS_MAGIC
        )
    except mnist.MnistError as exc:
        raise ApiError(f"MNIST test set: {exc} (set --mnist-dir or MNIST_DIR)") from None
    if not 0 <= index < len(labels):
        raise ApiError(f"--index must be 0..{len(labels) - 1}")
    return images[index].tolist(), int(labels[index])


def predict(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(metavar="[FILE]", help="A picture of one digit (PNG, JPEG, ...)."),
    ] = None,
    index: Annotated[
        int | None, typer.Option(help="Classify MNIST test image N instead of a file.")
    ] = None,
    mnist_dir: Annotated[
        Path, typer.Option(envvar="MNIST_DIR", help="Folder of the MNIST files (for --index).")
    ] = Path("data/mnist"),
    model: Annotated[str | None, typer.Option(help="Model id (default: the newest).")] = None,
    as_json: AsJson = False,
) -> None:
    """Classify a picture of a digit, or a test-set image with --index."""
    if (file is None) == (index is None):
        raise ApiError("give exactly one of FILE or --index N")
    api = api_of(ctx)
    truth = None
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ApiError(f"cannot read {file}: {exc.strerror or exc}") from None
        form = {"model_id": model} if model else {}
        answer = api.post(
            "/predict/image",
            files={"file": (file.name, data, "application/octet-stream")},
            data=form,
        )
    else:
        pixels, truth = _test_image(mnist_dir, index or 0)
        body: dict[str, Any] = {"pixels": pixels, **({"model_id": model} if model else {})}
        answer = api.post("/predict", json=body)
    if as_json:
        print_json(answer)
        return
    label = answer["label"]
    line = f"label [bold]{label}[/bold]"
    if truth is not None:
        line += f" (test image {index} is a {truth}{'' if truth == label else ': wrong'})"
    via = " (canary)" if answer.get("variant") == "canary" else ""
    out.print(f"{line}  model {answer['model_id']}{via}", soft_wrap=True)
    for digit, p in enumerate(answer["probabilities"]):
        bar = "█" * round(40 * p)
        style = "bold green" if digit == label else "dim"
        out.print(f"  {digit} [{style}]{bar:<40}[/{style}] {100 * p:5.1f}%")


def register(app: typer.Typer) -> None:
    app.command()(models)
    app.command()(predict)
