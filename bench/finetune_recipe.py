"""Fine-tuning on corrections: does ``?preset=fast`` + ``init_model`` + a few epochs help?

Trains a parent with the fast preset on all of MNIST, exactly as a worker would, then
makes 500 "corrections" the parent finds hard: MNIST training digits (indices 55,000+)
drawn with thicker strokes (3x3 dilation) and tilted by up to 25 degrees, like digits
drawn on the web page's pad, with their true labels. Each recipe fine-tunes the parent
through :mod:`shared.finetune` (the worker's path: frozen ids, seeded 20% hold-out,
repeats, parent weights with momentum zero) and reports the accuracy on the held-out
corrections and on the MNIST test set.

    .venv/bin/python -m bench.finetune_recipe
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from bench.common import load_mnist, table
from bench.fast_preset import FAST
from shared.artifacts.local import LocalStore
from shared.data.mnist import Mnist
from shared.feedback import finetune
from shared.feedback.files import FeedbackFiles
from shared.ml import training
from shared.registry.files import LoadedModel, ModelFiles
from shared.schemas.common import utcnow
from shared.schemas.feedback import Source, make_file
from shared.schemas.jobs import Job
from shared.schemas.models import ModelMeta
from shared.schemas.params import Preset, TrainParams, with_preset


def hard(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = digit.reshape(28, 28)
    padded = np.pad(image, 1)
    thick = np.max([padded[r : r + 28, c : c + 28] for r in range(3) for c in range(3)], axis=0)
    angle = float(rng.uniform(-25, 25))
    tilted = Image.fromarray(thick).rotate(angle, Image.Resampling.BILINEAR)
    return np.asarray(tilted, np.uint8)


PARENT = Path(tempfile.gettempdir()) / "mnist-finetune-recipe"
PARENT_ID = uuid.UUID(int=1)


def _parent(data: Mnist) -> LoadedModel:
    """The fast preset's model on all of MNIST, trained once and kept in a temp folder."""
    store = ModelFiles(LocalStore(PARENT))
    if store.recorded_sha256(PARENT_ID):
        return store.load(PARENT_ID)
    with threadpool_limits(limits=2, user_api="blas"):
        started = time.perf_counter()
        state = training.train(FAST, training.split(FAST, data))
        print(f"parent: fast preset, {time.perf_counter() - started:.1f} s")
    scale = FAST.input_scaling.factor
    meta = ModelMeta(
        created_at=utcnow(),
        job_id=PARENT_ID,
        params=FAST,
        train_accuracy=None,
        test_accuracy=training.accuracy(state.weights, data.test_images, data.test_labels, scale),
        input_scale=scale,
    )
    store.save(PARENT_ID, state.weights, meta)
    return store.load(PARENT_ID)


def main() -> None:
    data = load_mnist()
    rng = np.random.default_rng(0)
    parent = _parent(data)
    scale = FAST.input_scaling.factor
    base_test = training.accuracy(parent.weights, data.test_images, data.test_labels, scale)

    with tempfile.TemporaryDirectory() as tmp:
        files = FeedbackFiles(LocalStore(Path(tmp)))
        for index in range(55_000, 55_500):
            image = hard(data.train_images[index], rng)
            files.write(make_file(image, int(data.train_labels[index]), Source.pixels))
        ids = files.ids()
        rows = []
        recipes = [
            ("3 epochs, weight 0 (MNIST only)", {"epochs": 3}, 0),
            ("3 epochs, weight 5", {"epochs": 3}, 5),
            ("3 epochs, weight 20", {"epochs": 3}, 20),
            ("3 epochs, weight 20, eta 0.005", {"epochs": 3, "eta": 0.005}, 20),
            ("5 epochs, weight 20, eta 0.005", {"epochs": 5, "eta": 0.005}, 20),
            ("3 epochs, weight 50, eta 0.005", {"epochs": 3, "eta": 0.005}, 50),
        ]
        for name, body, weight in recipes:
            params = with_preset(Preset.fast, TrainParams.model_validate(body))
            job = Job(
                id=uuid.uuid4(),
                params=params,
                epochs=params.epochs,
                feedback_weight=weight,
                feedback_holdout=0.2,
            )
            corrections = finetune.load(job, ids, files)
            dataset = finetune.with_corrections(training.split(params, data), corrections)
            with threadpool_limits(limits=2, user_api="blas"):
                started = time.perf_counter()
                state = training.train(
                    params, dataset, state=finetune.initial_state(parent, params)
                )
                seconds = time.perf_counter() - started
            setup = finetune.Setup(corrections, parent)
            card = setup.card(state.weights, scale)
            test = training.accuracy(state.weights, data.test_images, data.test_labels, scale)
            rows.append(
                (
                    name,
                    f"{card.parent_feedback_accuracy:.1%}",
                    f"{card.feedback_accuracy:.1%}",
                    f"{base_test:.2%}",
                    f"{test:.2%}",
                    f"{seconds:.1f}",
                )
            )
    print(
        table(
            (
                "recipe (?preset=fast)",
                "parent on hold-out",
                "fine-tune on hold-out",
                "parent test",
                "fine-tune test",
                "seconds",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    main()
