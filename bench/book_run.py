"""The book's published run through our trainer: 784-50-10, l2=0.1, 1,000 epochs,
eta=0.001 (compounding decay 1e-5), momentum 0.001, 50 mini-batches, seed 1, on
all 60,000 training images; wall time and train/test accuracy.

The book's own code, run on this kind of machine on the same data, ends at 96.0%
test and 97.7% train accuracy after about 650 s (issue 3). Target: <= 120 s wall on
2 cores with the same accuracy (within 0.5 points).

    .venv/bin/python -m bench.book_run                 # the full run (~2 minutes)
    .venv/bin/python -m bench.book_run --epochs 20 --no-record
"""

from __future__ import annotations

import argparse
import resource
import time

from threadpoolctl import threadpool_limits

from bench.common import load_mnist, median, record, table
from shared.ml import training
from shared.schemas.jobs import EpochRecord
from shared.schemas.params import TrainParams

BOOK_TEST, BOOK_TRAIN, BOOK_SECONDS = 0.960, 0.977, 650.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    parser.add_argument("--no-record", action="store_true", help="write no file to bench/results/")
    args = parser.parse_args()

    loaded = time.perf_counter()
    data = load_mnist()
    params = TrainParams(epochs=args.epochs)
    print(f"MNIST loaded in {time.perf_counter() - loaded:.2f} s; {params.model_dump_json()}")

    def progress(state: training.TrainState, row: EpochRecord) -> None:
        if row.epoch % 50 == 0 or row.epoch == params.epochs:
            print(f"epoch {row.epoch:5d}  cost {row.cost:10.2f}  eta {row.eta:.3e}", flush=True)

    with threadpool_limits(args.threads):
        started = time.perf_counter()
        dataset = training.split(params, data)
        state = training.train(params, dataset, on_epoch=progress)
        trained = time.perf_counter()
        train_acc = training.accuracy(state.weights, dataset.train_x, dataset.train_y, 1.0)
        test_acc = training.accuracy(state.weights, dataset.test_x, dataset.test_y, 1.0)
        finished = time.perf_counter()

    seconds = [row.seconds for row in state.history]
    wall = finished - started
    rows = [
        ("epochs", params.epochs, 1000),
        ("wall time, training + final evaluation (s)", f"{wall:.1f}", f"~{BOOK_SECONDS:.0f}"),
        ("training loop (s)", f"{trained - started:.1f}", ""),
        ("final evaluation, 70,000 images (s)", f"{finished - trained:.2f}", ""),
        ("median s/epoch", f"{median(seconds):.4f}", "~0.63"),
        ("slowest epoch (s)", f"{max(seconds):.3f}", ""),
        ("final mean mini-batch cost", f"{state.history[-1].cost:.2f}", ""),
        ("peak RSS of this process, MNIST loaded (MB)", f"{peak_rss_mb():.0f}", ""),
        ("train accuracy", f"{train_acc:.2%}", f"{BOOK_TRAIN:.1%}"),
        ("test accuracy", f"{test_acc:.2%}", f"{BOOK_TEST:.1%}"),
    ]
    body = table(("", "ours (float32)", "book's code"), rows)
    blocks = [seconds[i : i + 100] for i in range(0, len(seconds), 100)]
    body += (
        "\n\nMedian s/epoch by 100-epoch block (the machine's speed over the run): "
        + ", ".join(f"{median(b):.3f}" for b in blocks)
    )
    verdict = []
    if params.epochs == 1000:
        verdict.append(
            f"{'meets' if wall <= 120 else 'misses'} the 120 s target "
            f"({BOOK_SECONDS / wall:.1f}x faster than the book's ~{BOOK_SECONDS:.0f} s)"
        )
        close = abs(test_acc - BOOK_TEST) <= 0.005 and abs(train_acc - BOOK_TRAIN) <= 0.005
        verdict.append(
            f"accuracy {'within' if close else 'NOT within'} 0.5 points of the book's "
            f"(test {100 * (test_acc - BOOK_TEST):+.2f}, "
            f"train {100 * (train_acc - BOOK_TRAIN):+.2f})"
        )
    threads = args.threads or "library default (all cores)"
    text = f"BLAS threads: {threads}\n\n{body}\n\n" + "; ".join(verdict)
    print(f"\n{text}")
    if not args.no_record:
        record("Book run: the default 1,000-epoch job through our trainer", text)


if __name__ == "__main__":
    main()
