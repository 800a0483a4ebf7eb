"""The "fast" preset: a job worth offering users who want a good model in well under
a minute (issue 3: >= 97.5% test accuracy in < 60 s on 2 cores). Trains it exactly
as a worker would (``training.split`` + ``training.train`` + the final accuracies)
and records the curve: validation accuracy (the job's own, per epoch) and test
accuracy per epoch (computed by this script between epochs; that evaluation is
timed separately and left out of the job's wall time).

    .venv/bin/python -m bench.fast_preset
    .venv/bin/python -m bench.fast_preset --seeds 1,2,3 --no-record
"""

from __future__ import annotations

import argparse
import time

from threadpoolctl import threadpool_limits

from bench.common import load_mnist, record, table
from shared.ml import training
from shared.schemas.jobs import EpochRecord
from shared.schemas.params import TrainParams

FAST = TrainParams(
    n_hidden=100,
    input_scaling="unit",  # pixels / 255
    epochs=30,
    minibatches=600,  # batches of 100
    eta=0.02,  # per image: costs and gradients are sums over the batch
    l2=0.005,  # per step, the weights shrink by eta * l2 = 1e-4
    l1=0.0,
    alpha=0.0,
    lr_schedule="inverse",
    decrease_const=0.05,  # eta / (1 + 0.05 * epoch): 0.02 -> 0.0082 by epoch 30
)


def run(params: TrainParams, data, curve: bool = True) -> tuple[dict, list[tuple]]:
    scale = params.input_scaling.factor
    rows: list[tuple] = []
    extra = 0.0

    def on_epoch(state: training.TrainState, row: EpochRecord) -> None:
        nonlocal extra
        started = time.perf_counter()
        test = training.accuracy(state.weights, dataset.test_x, dataset.test_y, scale)
        extra += time.perf_counter() - started
        val = "" if row.val_accuracy is None else f"{row.val_accuracy:.2%}"
        rows.append((row.epoch, f"{row.cost:.1f}", val, f"{test:.2%}", f"{row.seconds:.2f}"))

    started = time.perf_counter()
    dataset = training.split(params, data)
    state = training.train(params, dataset, on_epoch=on_epoch if curve else None)
    train_acc = training.accuracy(state.weights, dataset.train_x, dataset.train_y, scale)
    test_acc = training.accuracy(state.weights, dataset.test_x, dataset.test_y, scale)
    wall = time.perf_counter() - started - extra
    return {"wall": wall, "train": train_acc, "test": test_acc}, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1", help="seeds to run; the curve is the first's")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    parser.add_argument(
        "--validation", type=float, default=0.0, help="validation_fraction for the run (default 0)"
    )
    parser.add_argument("--no-record", action="store_true", help="write no file to bench/results/")
    args = parser.parse_args()
    data = load_mnist()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    with threadpool_limits(args.threads):
        for i, seed in enumerate(seeds):
            params = TrainParams.model_validate(
                FAST.model_dump() | {"seed": seed, "validation_fraction": args.validation}
            )
            result, rows = run(params, data, curve=i == 0)
            results.append((seed, result))
            if i == 0:
                curve = rows
            print(f"seed {seed}: {result['wall']:.1f} s, test {result['test']:.2%}", flush=True)
    changed = FAST.model_dump(exclude_defaults=True, mode="json")
    if args.validation:
        changed["validation_fraction"] = args.validation
    lines = [f"Preset (TrainParams, non-default values): `{changed}`", ""]
    lines.append(
        table(
            ("seed", "job wall s (train + final accuracies)", "train acc", "test acc"),
            [(s, f"{r['wall']:.1f}", f"{r['train']:.2%}", f"{r['test']:.2%}") for s, r in results],
        )
    )
    lines += ["", f"Curve (seed {seeds[0]}):", ""]
    lines.append(table(("epoch", "mean cost", "val acc", "test acc", "epoch s"), curve))
    text = "\n".join(lines)
    print(f"\n{text}")
    if not args.no_record:
        record('"Fast" preset: accuracy curve and wall time', text)


if __name__ == "__main__":
    main()
