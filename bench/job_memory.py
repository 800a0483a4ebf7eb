"""Calibrate ``shared/job_memory.py``: peak RSS of real training runs against the estimate.

Each case runs in a fresh subprocess what the worker's training process does with a
job (``worker/run.py``): load MNIST, split, train (1 epoch by default), save a
checkpoint, compute train and test accuracy and the evaluation, save the model. The
child resets its peak (``VmHWM``, via ``clear_refs``) once MNIST is loaded and reports
the growth of its peak above that; the estimate's variable part (estimate minus
``BASE_MB``) should be at least that. ``BASE_MB`` itself, the pool child at rest with
MNIST loaded, comes from ``bench.worker_memory``, which also measures the real worker.

    python -m bench.job_memory                    # the default cases
    python -m bench.job_memory --case '{"n_hidden": 1024, "minibatches": 8}'
"""

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from bench.common import REPO, mnist_dir, record, table
from shared.ml import job_memory
from shared.schemas.params import Preset, TrainParams, with_preset

HEADER = (
    "job (POST /jobs body)",
    "RSS at rest MB",
    "peak MB",
    "growth MB",
    "estimate above BASE_MB",
    "growth / estimate",
    "estimate MB",
)

CASES = [
    {},  # the book's defaults
    {"preset": "fast"},
    {"n_hidden": 1024, "minibatches": 50, "dtype": "float64"},
    {"n_hidden": 1024, "minibatches": 10},
    {"n_hidden": 1024, "minibatches": 6, "dtype": "float64"},
    {"n_hidden": 512, "minibatches": 3, "validation_fraction": 0.1},
    {"n_hidden": 256, "minibatches": 1, "train_size": 20_000, "dtype": "float64"},
    {"n_hidden": 1024, "minibatches": 4},
]

CHILD = r"""
import json, sys, tempfile, uuid
from pathlib import Path
from shared.artifacts.local import LocalStore
from shared.data import mnist
from shared.ml import checkpoint, evaluation, training
from shared.registry.files import ModelFiles
from shared.schemas.common import utcnow
from shared.schemas.models import ModelMeta
from shared.schemas.params import TrainParams

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
params = TrainParams.model_validate_json(sys.argv[1])
data_all = mnist.load(Path(sys.argv[2]))
Path("/proc/self/clear_refs").write_text("5")
rest = status("VmRSS")
data = training.split(params, data_all)
store = LocalStore(Path(tempfile.mkdtemp()))
job = uuid.uuid4()
def save_checkpoint(state, record):  # as the worker does every epoch (CHECKPOINT_SECONDS=0)
    store.put(f"checkpoints/{job}/1.npz", checkpoint.dumps(state))
state = training.train(params, data, on_epoch=save_checkpoint)
scale = params.input_scaling.factor
training.accuracy(state.weights, data.train_x, data.train_y, scale)
training.accuracy(state.weights, data.test_x, data.test_y, scale)
evaluated = evaluation.evaluate(state.weights, data.test_x, data.test_y, scale)
meta = ModelMeta(created_at=utcnow(), job_id=job, params=params, train_accuracy=None,
                 test_accuracy=None, input_scale=scale, confusion=evaluated.confusion,
                 errors=evaluated.errors)
ModelFiles(store).save(job, state.weights, meta)
print(json.dumps({"rest": rest, "peak": status("VmHWM")}))
"""


def measure(params: TrainParams) -> tuple[float, float]:
    """(RSS at rest with MNIST loaded, peak RSS) of one training run, in MB."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, params.model_dump_json(), str(mnist_dir())],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["rest"], result["peak"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--case", action="append", help="a JSON body of POST /jobs")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)
    cases = [json.loads(c) for c in args.case] if args.case else CASES
    rows = []
    worst = 0.0
    with tempfile.TemporaryDirectory():
        for case in cases:
            body = dict(case)
            preset = Preset(body.pop("preset")) if "preset" in body else None
            given = TrainParams.model_validate({**body, "epochs": args.epochs})
            params = with_preset(preset, given)
            rest, peak = measure(params)
            growth = peak - rest
            variable = job_memory.estimate_mb(params) - job_memory.BASE_MB
            worst = max(worst, growth / variable)
            rows.append(
                (f"`{json.dumps(case)}`", f"{rest:.0f}", f"{peak:.0f}", f"{growth:.0f}",
                 f"{variable:.0f}", f"{growth / variable:.2f}",
                 f"{job_memory.estimate_mb(params):.0f}")
            )  # fmt: skip
            print(rows[-1], flush=True)
    body = "\n\n".join(
        [
            f"Each case trains {args.epochs} epoch(s) in a fresh subprocess as the worker "
            "does (split, train with a checkpoint per epoch, accuracies, evaluation, "
            "save); peak from VmHWM reset once MNIST is loaded. MB = 2^20 bytes.",
            table(HEADER, rows),
            f"Largest growth / estimate: {worst:.2f} (at most 1: the estimate errs high).",
        ]
    )
    print(body)
    if not args.no_record:
        record("Job memory: training peaks against shared/job_memory.py's estimate", body)


if __name__ == "__main__":
    main()
