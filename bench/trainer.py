"""Seconds per epoch at the book's settings (784-50-10, 50 mini-batches of 1,200,
sigmoid) on real MNIST: our trainer against scikit-learn's MLPClassifier, the
book's own code (bench/book_reference.py), PyTorch CPU if it is installed, and the
floor: the same epoch's matrix products alone, in float32, on preallocated arrays.

All contenders run in the same process, one epoch each per round, in a rotating
order, so that a busy neighbour slows them alike; ratios are taken within each
round and their median reported. ``--profile`` adds where our epoch's time goes.

    .venv/bin/python -m bench.trainer                  # BLAS threads as NumPy starts them
    .venv/bin/python -m bench.trainer --threads 1,2 --profile
    .venv/bin/python -m bench.trainer --no-record      # print only
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from bench.common import load_mnist, median, record, table
from shared.data.mnist import Mnist
from shared.ml import mlp, training
from shared.schemas.params import TrainParams

BOOK = TrainParams()  # the defaults are the book's published run


@dataclass
class Contender:
    name: str
    epoch: Callable[[], object]
    seconds: list[float] = field(default_factory=list)


def ours(data: Mnist, dtype: str = "float32") -> Callable[[], object]:
    """``training.run_epoch`` exactly as ``training.train`` calls it."""
    params = BOOK.model_copy(update={"dtype": dtype})
    dataset = training.split(params, data)
    state = training.init_state(params)
    targets = mlp.onehot(dataset.train_y, training.N_CLASSES, np.dtype(dtype).type)
    buffers = training.Buffers.allocate(state.weights, training.batch_size(60_000, 50))

    def epoch() -> float:
        state.eta = training.learning_rate(params, state.eta, state.epoch)
        cost = training.run_epoch(state, params, dataset, targets, buffers)
        state.epoch += 1
        return cost

    return epoch


def gemm_floor(data: Mnist) -> Callable[[], object]:
    """One epoch's products (forward: x@w1.T, h@w2.T; backward: d_out@w2, d_h.T@x,
    d_out.T@h) in float32 on preallocated, cache-warm arrays: nothing else."""
    rng = np.random.default_rng(0)
    b, f, h, o = 1200, 784, BOOK.n_hidden, 10
    x = data.train_images[:b].astype(np.float32)
    w1 = rng.uniform(-1, 1, (h, f)).astype(np.float32)
    w2 = rng.uniform(-1, 1, (o, h)).astype(np.float32)
    hidden = rng.uniform(0, 1, (b, h)).astype(np.float32)
    d_out = rng.uniform(-1, 1, (b, o)).astype(np.float32)
    d_hidden = np.empty((b, h), np.float32)
    logits = np.empty((b, o), np.float32)
    g1, g2 = np.empty_like(w1), np.empty_like(w2)

    def epoch() -> None:
        for _ in range(BOOK.minibatches):
            np.matmul(x, w1.T, out=hidden)
            np.matmul(hidden, w2.T, out=logits)
            np.matmul(d_out, w2, out=d_hidden)
            np.matmul(d_hidden.T, x, out=g1)
            np.matmul(d_out.T, hidden, out=g2)

    return epoch


def sklearn_mlp(data: Mnist, dtype: type = np.float32) -> Callable[[], object] | None:
    """MLPClassifier, 50 logistic hidden units, sgd, its default batch (200);
    ``partial_fit`` is one epoch. It computes in the dtype of its input: float64
    for the usual ``X / 255.``, float32 if handed float32."""
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    x = data.train_images.astype(dtype) / dtype(255)
    y = data.train_labels
    clf = MLPClassifier(
        hidden_layer_sizes=(BOOK.n_hidden,),
        activation="logistic",
        solver="sgd",
        alpha=0.0001,
        learning_rate_init=0.1,
        momentum=0.9,
        shuffle=True,
        random_state=1,
    )
    classes = np.arange(10)

    def epoch() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(x, y, classes=classes)

    return epoch


def book_code(data: Mnist) -> Callable[[], object]:
    from bench.book_reference import BOOK_SETTINGS, BookNeuralNetMLP

    nn = BookNeuralNetMLP(**BOOK_SETTINGS)
    epochs = nn.epochs_iter(data.train_images, data.train_labels)
    return lambda: next(epochs)


def torch_mlp(data: Mnist, batch: int = 1200) -> Callable[[], object] | None:
    """PyTorch CPU, same network and loss (sigmoid outputs, summed logistic cost),
    SGD with momentum; only if torch is already installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(784, BOOK.n_hidden), torch.nn.Sigmoid(), torch.nn.Linear(BOOK.n_hidden, 10)
    )
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.001)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    x_all = torch.from_numpy(data.train_images)
    y_all = torch.nn.functional.one_hot(torch.from_numpy(data.train_labels).long(), 10).float()
    gen = torch.Generator().manual_seed(1)

    def epoch() -> None:
        order = torch.randperm(len(y_all), generator=gen)
        for idx in order.split(batch):
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(net(x_all[idx].float()), y_all[idx])
            loss.backward()
            opt.step()

    return epoch


# --- where our epoch's time goes ---------------------------------------------------


def profile_epochs(data: Mnist, epochs: int) -> dict[str, float]:
    """Median milliseconds per epoch of each step of ``training.run_epoch``, timed
    inside the loop. The steps mirror ``mlp.forward``/``mlp.backward`` one call at a
    time; the run is checked bit for bit against the real ``run_epoch``."""
    params = BOOK
    dataset = training.split(params, data)
    state = training.init_state(params)
    reference = copy.deepcopy(state)
    targets = mlp.onehot(dataset.train_y, 10, np.float32)
    bufs = training.Buffers.allocate(state.weights, 1200)
    scale = params.input_scaling.factor
    steps: dict[str, list[float]] = {}
    clock = time.perf_counter

    for _ in range(epochs):
        spent: dict[str, float] = {}

        def lap(name: str, since: float, spent: dict[str, float] = spent) -> float:
            now = clock()
            spent[name] = spent.get(name, 0.0) + now - since
            return now

        t = clock()
        state.eta = training.learning_rate(params, state.eta, state.epoch)
        order = state.rng.permutation(len(dataset.train_y))
        parts = np.array_split(order, params.minibatches)
        t = lap("shuffle + split", t)
        w = state.weights
        for idx in parts:
            n = len(idx)
            raw = np.take(dataset.train_x, idx, axis=0, out=bufs.raw[:n], mode="clip")
            t = lap("gather uint8 rows", t)
            x = training._to_float(raw, scale, out=bufs.x[:n])
            t = lap("uint8 -> float32", t)
            y = np.take(targets, idx, axis=0, out=bufs.y[:n], mode="clip")
            ws = bufs.work.rows(n)
            t = lap("gather targets", t)
            hidden = np.matmul(x, w.w1.T, out=ws.hidden)
            t = lap("GEMM x @ w1.T", t)
            np.add(hidden, w.b1, out=hidden)
            mlp.sigmoid(hidden)
            t = lap("bias + sigmoid (hidden)", t)
            logits = np.matmul(hidden, w.w2.T, out=ws.logits)
            np.add(logits, w.b2, out=logits)
            t = lap("small products + biases", t)
            cost = mlp.cost(logits, y, w, params.l1, params.l2, ws)
            t = lap("cost", t)
            output = mlp.sigmoid(logits)
            t = lap("sigmoid (output)", t)
            delta_out = np.subtract(output, y, out=ws.delta_out)
            delta_hidden = np.matmul(delta_out, w.w2, out=ws.delta_hidden)
            t = lap("small products + biases", t)
            deriv = np.subtract(1.0, hidden, out=ws.deriv)
            np.multiply(deriv, hidden, out=deriv)
            np.multiply(delta_hidden, deriv, out=delta_hidden)
            t = lap("sigmoid derivative", t)
            np.matmul(delta_hidden.T, x, out=ws.grads.w1)
            t = lap("GEMM d_hidden.T @ x", t)
            np.matmul(ws.ones, delta_hidden, out=ws.grads.b1)
            np.matmul(delta_out.T, hidden, out=ws.grads.w2)
            np.matmul(ws.ones, delta_out, out=ws.grads.b2)
            t = lap("small products + biases", t)
            for grad, weight, scratch in (
                (ws.grads.w1, w.w1, ws.penalty.w1),
                (ws.grads.w2, w.w2, ws.penalty.w2),
            ):
                np.multiply(weight, params.l2, out=scratch)
                np.add(grad, scratch, out=grad)
            t = lap("L2 gradient", t)
            step = state.previous_step
            mlp.update(w, ws.grads, step, state.eta, params.alpha, out=step)
            t = lap("momentum update", t)
            del cost
        state.epoch += 1
        for name, seconds in spent.items():
            steps.setdefault(name, []).append(seconds * 1e3)

    # the mirror must be the real thing: same weights as run_epoch, bit for bit
    ref_params = params.model_copy(update={"epochs": epochs})
    training.train(ref_params, dataset, state=reference)
    for a, b in zip(reference.weights.arrays(), state.weights.arrays(), strict=True):
        if not np.array_equal(a, b):
            raise AssertionError("profile loop no longer mirrors training.run_epoch")
    return {name: median(ms) for name, ms in steps.items()}


# --- the run -------------------------------------------------------------------------


def measure(contenders: list[Contender], rounds: int) -> None:
    for c in contenders:  # warm up: first touches, thread pools, caches
        c.epoch()
    for r in range(rounds):
        shift = r % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            started = time.perf_counter()
            c.epoch()
            c.seconds.append(time.perf_counter() - started)


def ratio(a: Contender, b: Contender) -> float:
    """Median over rounds of a/b (each round's epochs ran back to back)."""
    return median(x / y for x, y in zip(a.seconds, b.seconds, strict=True))


def run(data: Mnist, rounds: int, with_book: bool, with_f64: bool) -> tuple[str, str]:
    contenders = [Contender("ours, float32", ours(data))]
    if with_f64:
        contenders.append(Contender("ours, float64", ours(data, "float64")))
    contenders.append(Contender("GEMM floor (float32 products only)", gemm_floor(data)))
    optional = [
        ("scikit-learn MLPClassifier (sgd, batch 200, float32)", sklearn_mlp(data)),
        ("scikit-learn MLPClassifier (sgd, batch 200, float64)", sklearn_mlp(data, np.float64)),
        ("PyTorch CPU (batch 1200)", torch_mlp(data)),
    ]
    contenders += [Contender(name, fn) for name, fn in optional if fn is not None]
    if with_book:
        contenders.append(Contender("book's NeuralNetMLP (float64)", book_code(data)))
    measure(contenders, rounds)
    us = contenders[0]
    rows = [
        (
            c.name,
            f"{median(c.seconds):.3f}",
            f"{min(c.seconds):.3f}",
            f"{ratio(us, c):.2f}",
            f"{ratio(c, us):.2f}",
        )
        for c in contenders
    ]
    header = ("contender", "median s/epoch", "best s/epoch", "ours ÷ it", "it ÷ ours")
    summary = []
    for c in contenders[1:]:
        if c.name.startswith("GEMM floor"):
            summary.append(f"ours ÷ GEMM floor: {ratio(us, c):.2f} (target ≤ 2)")
        if c.name.startswith("scikit-learn"):
            kind = c.name.rsplit(", ", 1)[1].rstrip(")")
            summary.append(f"ours ÷ scikit-learn {kind}: {ratio(us, c):.2f} (target ≤ 0.35)")
    return table(header, rows), "; ".join(summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="epochs timed per contender")
    parser.add_argument("--threads", default="", help="BLAS thread counts to try, e.g. 1,2")
    parser.add_argument("--no-book", action="store_true", help="skip the book's (slow) code")
    parser.add_argument("--float64", action="store_true", help="also time our float64 path")
    parser.add_argument("--profile", action="store_true", help="where our epoch's time goes")
    parser.add_argument(
        "--busy-neighbour",
        action="store_true",
        help="run one busy-looping process alongside (a second job on the machine)",
    )
    parser.add_argument("--no-record", action="store_true", help="write no file to bench/results/")
    args = parser.parse_args()
    data = load_mnist()
    neighbour = None
    if args.busy_neighbour:
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sections = measure_all(args, data)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if not args.no_record:
        title = "Trainer: seconds per epoch at the book's settings"
        if args.busy_neighbour:
            title += ", next to one busy-looping process"
        record(
            title,
            "\n\n".join(sections),
            packages=("scikit-learn", "scipy", "torch", "threadpoolctl"),
        )


def measure_all(args: argparse.Namespace, data: Mnist) -> list[str]:
    sections = []
    for threads in [int(t) for t in args.threads.split(",") if t] or [None]:
        label = f"BLAS threads: {threads}" if threads else "BLAS threads: library default"
        with threadpool_limits(threads):
            body, summary = run(data, args.rounds, not args.no_book, args.float64)
            text = f"{label}, {args.rounds} rounds\n\n{body}\n\n{summary}"
            if args.profile:
                steps = profile_epochs(data, args.rounds)
                total = sum(steps.values())
                rows = [(k, f"{v:.1f}", f"{v / total:.0%}") for k, v in steps.items()]
                rows.append(("sum of medians", f"{total:.1f}", ""))
                text += "\n\nWhere our epoch goes (median ms per epoch, timed inside the loop):\n\n"
                text += table(("step", "ms/epoch", "share"), rows)
        print(f"\n{text}")
        sections.append(text)
    return sections


if __name__ == "__main__":
    main()
