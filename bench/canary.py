"""What a canary split and a shadow cost a prediction (issue 21): ``POST /predict`` ÷
``GET /livez`` (medians) with a canary split running on the serving alias and with a
shadow running, against no split, in the same run. Target: the ratio grows by no more
than 10% with either.

Against a private stack started here on loopback (``redis-server`` and ``uvicorn
api.main:app`` as compose runs them, no worker: the two models, 784-100-10 trained
here for a few epochs on 10,000 MNIST images, are registered as the worker registers
them). ``production`` points at the first; the conditions take turns within each round
(their order rotating), each with its own warm-up, and in each of them single-image
requests alternate with ``/livez`` requests over one keep-alive connection, so a busy
neighbour slows all alike. The growth is taken per round (a condition's ratio ÷ the
no-split ratio of the same round), then the median over the rounds.

    .venv/bin/python -m bench.canary
    .venv/bin/python -m bench.canary --rounds 7 --requests 400 --percent 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import load_mnist, median, mnist_dir, record, table
from bench.procs import redis_server, uvicorn

TARGET = 0.10
CONDITIONS = ("no split", "canary", "shadow")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three conditions")
    parser.add_argument("--requests", type=int, default=300, help="pairs per condition a round")
    parser.add_argument("--percent", type=int, default=10, help="the canary's share")
    parser.add_argument("--no-record", action="store_true", help="write no file to bench/results/")
    return parser.parse_args()


@contextlib.contextmanager
def stack(root: Path) -> Iterator[tuple[str, str]]:
    """A private redis-server and uvicorn on loopback; yields (API URL, Redis URL)."""
    with redis_server(root) as redis_url:
        env = {
            "PATH": "/usr/bin:/bin",
            "REDIS_URL": redis_url,
            "MODEL_DIR": str(root / "models"),
            "MNIST_DIR": str(mnist_dir()),
            "LOG_LEVEL": "WARNING",
        }
        with uvicorn(env, root) as (_, port):
            yield f"http://127.0.0.1:{port}", redis_url


def two_models(redis_url: str, model_dir: Path) -> list[str]:
    """Two 784-100-10 models trained here (fast preset, 3 epochs on 10,000 images),
    stored and registered as the worker does."""
    from shared.config import Settings
    from shared.ml import training
    from shared.registry.service import model_info
    from shared.schemas.common import utcnow
    from shared.schemas.models import ModelMeta
    from shared.schemas.params import Preset, TrainParams, with_preset
    from shared.services import Services

    data = load_mnist()
    services = Services.connect(Settings(redis_url=redis_url, model_dir=model_dir))
    ids = []
    for seed in (1, 2):
        params = with_preset(Preset.fast, TrainParams(epochs=3, train_size=10_000, seed=seed))
        state = training.train(params, training.split(params, data))
        model_id = uuid.uuid4()
        meta = ModelMeta(created_at=utcnow(), job_id=model_id, params=params,
                         train_accuracy=None, test_accuracy=None,
                         input_scale=params.input_scaling.factor)  # fmt: skip
        services.models.files.save(model_id, state.weights, meta)
        services.registry.put_model(model_info(services.models.files.load(model_id)))
        ids.append(str(model_id))
    services.close()
    return ids


def ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise SystemExit(f"{response.request.method} {response.url}: {response.text[:300]}")
    return response.json()


Times = tuple[list[float], list[float]]
"""(``/livez`` seconds, ``/predict`` seconds) of one condition in one round."""


def measure(client: httpx.Client, bodies: list[bytes], n: int) -> tuple[Times, int]:
    """Alternating pairs after a warm-up; also how many the candidate answered."""
    livez, predict, canary = [], [], 0
    for i in range(30 + n):
        started = time.perf_counter()
        client.get("/livez").raise_for_status()
        middle = time.perf_counter()
        answer = client.post("/predict", content=bodies[i % len(bodies)])
        ended = time.perf_counter()
        answer.raise_for_status()
        if i >= 30:
            livez.append(middle - started)
            predict.append(ended - middle)
            canary += b'"variant":"canary"' in answer.content
    return (livez, predict), canary


def main() -> None:
    args = parse_args()
    images = load_mnist().test_images
    bodies = [json.dumps({"pixels": images[i].tolist()}).encode() for i in range(200)]
    headers = {"Content-Type": "application/json"}
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as (url, redis_url):
        primary, candidate = two_models(redis_url, Path(tmp) / "models")
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            ok(client.put("/aliases/production", json={"model_id": primary}))
            starts = {
                "no split": None,
                "canary": {"model_id": candidate, "percent": args.percent},
                "shadow": {"model_id": candidate, "mode": "shadow"},
            }
            times: dict[str, list[Times]] = {c: [] for c in CONDITIONS}
            answered = compared = agreed = dropped = 0
            for r in range(args.rounds):
                order = CONDITIONS[r % 3 :] + CONDITIONS[: r % 3]
                for condition in order:
                    client.delete("/aliases/production/canary")  # each starts afresh
                    start = starts[condition]
                    if start is not None:
                        ok(client.put("/aliases/production/canary", json=start))
                    pairs, canary = measure(client, bodies, args.requests)
                    times[condition].append(pairs)
                    if condition == "canary":
                        answered += canary
                    if condition == "shadow":
                        time.sleep(2 * 1.0)  # the last comparisons, flushed (CANARY_FLUSH_SECONDS)
                        shadow = ok(client.get("/aliases/production/canary"))["stats"]["shadow"]
                        compared += shadow["compared"]
                        agreed += shadow["agreed"]
                        dropped += shadow["dropped"]
            client.delete("/aliases/production/canary")

    def ratio(pairs: Times) -> float:
        return median(pairs[1]) / median(pairs[0])

    rows, verdicts = [], []
    for condition in CONDITIONS:
        livez = [t for round_ in times[condition] for t in round_[0]]
        predict = [t for round_ in times[condition] for t in round_[1]]
        growth = [
            ratio(mine) / ratio(base) - 1
            for mine, base in zip(times[condition], times["no split"], strict=True)
        ]
        per_round = " ".join(f"{ratio(pairs):.2f}" for pairs in times[condition])
        g = median(growth)
        shown = "-" if condition == "no split" else f"{100 * g:+.1f}%"
        rows.append((condition, len(predict), f"{median(livez) * 1e3:.3f}",
                     f"{median(predict) * 1e3:.3f}", f"{median(predict) / median(livez):.2f}",
                     per_round, shown))  # fmt: skip
        if condition != "no split":
            verdicts.append(f"{condition}: {100 * g:+.1f}% ({'met' if g <= TARGET else 'missed'})")
    body = table(("condition", "requests", "/livez median ms", "/predict median ms",
                  "÷ /livez", "÷ /livez per round", "growth (median of rounds)"), rows)  # fmt: skip
    sent = args.rounds * args.requests
    facts = (
        f"Target: ≤ +{100 * TARGET:.0f}% against no split. {'; '.join(verdicts)}. "
        f"Canary at {args.percent}%: the candidate answered {answered} of {sent} requests "
        f"({100 * answered / sent:.1f}%). Shadow: {compared} images compared "
        f"(agreement {100 * agreed / max(1, compared):.1f}%), {dropped} dropped."
    )
    text = f"{args.rounds} rounds of {args.requests} pairs per condition\n\n{body}\n\n{facts}"
    print(f"\n{text}")
    if not args.no_record:
        record("Canary and shadow cost on /predict", text, packages=("fastapi", "uvicorn", "httpx"))


if __name__ == "__main__":
    main()
