"""How much memory a training job will need, from its parameters alone (issue 10).

``POST /jobs`` refuses a job whose estimate exceeds ``JOB_MEMORY_LIMIT_MB`` (422
naming the fields that size it), so that no valid request can take a worker past its
container's memory limit. Pure arithmetic, no NumPy: the API calls it per request.

The estimate is the peak RSS of the training process (Celery's pool child), in MB
(2^20 bytes)::

    peak = BASE_MB + BLAS_MB + (rows * per_row + WEIGHT_COPIES * weights
                                + fit * 10 * s + copy + fit * 8) / 2^20

    s        bytes per number: 4 (float32) or 8 (float64)
    fit      training rows: train_size (default 60,000) minus the validation hold-out
    batch    ceil(fit / minibatches), the largest mini-batch
    rows     batch + EVAL_ROWS: the training buffers are alive while each epoch's
             validation accuracy is computed in chunks of EVAL_ROWS rows
    per_row  784 (uint8 pixels) + s * (784 + HIDDEN_ARRAYS * n_hidden + 7 * 10 + 1):
             the gathered rows as uint8 and as floats, three (batch, n_hidden)
             arrays (activations, their deltas, the sigmoid derivative), seven
             (batch, 10) ones (targets, logits, deltas, softplus, their evaluation
             twins) and a ones vector
    weights  s * (n_hidden * 785 + 10 * (n_hidden + 1)), the network's parameters;
             WEIGHT_COPIES of them: weights, momentum, gradients, penalty scratch,
             the float64 draw of the initial weights and the checkpoint being saved
    fit*10*s the one-hot targets of the whole training set, built once
    copy     fit * 784 bytes when there is a validation hold-out (the split copies
             the training images; without one they are views)
    fit*8    the epoch's shuffled order (int64)

``BASE_MB`` is the process before its first job: interpreter, NumPy, Celery and
MNIST (55 MB of uint8 images). ``BLAS_MB`` is OpenBLAS's own work buffers, taken
at the first large product (what a run's RSS grows by beyond the arrays NumPy
allocates, which ``tracemalloc`` sees). The constants were measured (``python -m
bench.job_memory``: real training runs in a subprocess, peak RSS from
``getrusage``) and checked against the real worker (``python -m bench.worker_memory``);
figures in BENCHMARKS.md. The estimate errs high by a few percent.
"""

from shared.schemas.params import TrainParams

FEATURES = 784
OUTPUTS = 10
MNIST_TRAIN = 60_000
EVAL_ROWS = 2048
"""Rows per evaluation chunk (``shared.training.EVAL_CHUNK``)."""
HIDDEN_ARRAYS = 3
"""(batch, n_hidden) arrays alive at once: activations, deltas, sigmoid derivative."""
OUTPUT_ARRAYS = 7
WEIGHT_COPIES = 6
BASE_MB = 160.0
"""The pool child at rest with MNIST loaded, before any product (measured, rounded up)."""
BLAS_MB = 64.0
"""OpenBLAS's work buffers (measured, rounded up)."""
MB = 2**20

SIZING_FIELDS = ("n_hidden", "minibatches", "train_size", "dtype")
"""The parameters a too-big job can lower; the 422 names each of them."""


def dtype_bytes(params: TrainParams) -> int:
    return 8 if params.dtype == "float64" else 4


def fit_rows(params: TrainParams) -> int:
    """Training rows after the validation hold-out (as ``training.split`` makes them)."""
    n = params.train_size or MNIST_TRAIN
    return n - int(n * params.validation_fraction)


def estimate_mb(params: TrainParams) -> float:
    """Estimated peak RSS of the process training ``params``, in MB (see the module)."""
    s = dtype_bytes(params)
    h = params.n_hidden
    fit = fit_rows(params)
    batch = -(-fit // params.minibatches)
    rows = batch + EVAL_ROWS
    per_row = FEATURES + s * (FEATURES + HIDDEN_ARRAYS * h + OUTPUT_ARRAYS * OUTPUTS + 1)
    weights = s * (h * (FEATURES + 1) + OUTPUTS * (h + 1))
    copy = fit * FEATURES if fit < (params.train_size or MNIST_TRAIN) else 0
    total = rows * per_row + WEIGHT_COPIES * weights + fit * OUTPUTS * s + copy + fit * 8
    return BASE_MB + BLAS_MB + total / MB


def too_big(params: TrainParams, limit_mb: float) -> list[dict[str, object]]:
    """Validation errors (FastAPI's shape, one per sizing field) if the job's estimate
    exceeds ``limit_mb``; none if it fits."""
    need = estimate_mb(params)
    if need <= limit_mb:
        return []
    msg = (
        f"this job would need about {need:,.0f} MB in its worker, more than "
        f"JOB_MEMORY_LIMIT_MB ({limit_mb:,.0f} MB): use fewer hidden units (n_hidden), "
        f"more mini-batches (minibatches), fewer training images (train_size) or float32"
    )
    return [
        {
            "type": "job_too_big",
            "loc": ("body", field),
            "msg": msg,
            "input": getattr(params, field),
        }
        for field in SIZING_FIELDS
    ]
