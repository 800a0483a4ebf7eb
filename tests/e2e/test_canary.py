"""Canary and shadow splits across real processes: two ``uvicorn api.main:app`` on one
private redis-server, models trained here and registered as the worker registers them
(no worker needed). Every split change made through one process is followed by the
other on its very next request; the statistics are summed over both and outlive a
restart; the command line drives it all over HTTP."""

import math
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import numpy as np
import pytest

from api.serving import ModelCache, predict
from shared.config import Settings
from shared.data.mnist import Mnist
from shared.registry.canary import lands_on_canary
from shared.services import Services
from tests.e2e.test_cli import mnist
from tests.models import train
from tests.procs import free_port, mnist_dir, redis_server, service_env, start_api, stop, wait_until

pytestmark = pytest.mark.e2e

SHARE_REQUESTS = 2000


@dataclass
class Pair:
    """Two API processes over one Redis, and the services to register models with."""

    root: Path
    env: dict[str, str]
    ports: list[int]
    procs: list[subprocess.Popen]
    http: list[httpx.Client]
    services: Services
    models: list[UUID]

    def restart(self, i: int) -> None:
        stop(self.procs[i])  # SIGTERM: its lifespan adds the counts it holds to Redis
        self.http[i].close()
        self.procs[i] = start_api(self.env, self.root / f"api{i}.log", self.ports[i])
        self.http[i] = httpx.Client(base_url=f"http://127.0.0.1:{self.ports[i]}", timeout=30)

    def predict(self, i: int, pixels: list[int], client: str | None = None, **which: str) -> dict:
        headers = {"X-Client-Id": client} if client else {}
        answer = self.http[i].post("/predict", json={"pixels": pixels, **which}, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def split(self, i: int) -> dict:
        answer = self.http[i].get("/aliases/production/canary")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def production(self, model: UUID) -> None:
        put = self.http[0].put("/aliases/production", json={"model_id": str(model)})
        assert put.status_code == 200, put.text


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, mnist_data: Mnist) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("canary")
    with redis_server(root / "redis") as redis_url:
        env = service_env(redis_url, root / "models")
        settings = Settings(redis_url=redis_url, model_dir=root / "models", mnist_dir=mnist_dir())
        services = Services.connect(settings)
        models = [train(services.models, mnist_data, seed) for seed in (1, 2, 3)]
        ports = [free_port(), free_port()]
        procs = [start_api(env, root / f"api{i}.log", port) for i, port in enumerate(ports)]
        http = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports]
        pair = Pair(root, env, ports, procs, http, services, models)
        try:
            yield pair
        finally:
            for client in http:
                client.close()
            for proc in pair.procs:
                stop(proc)
            services.close()


@pytest.fixture
def fresh(pair: Pair) -> Pair:
    """production on the first model, no split running."""
    pair.production(pair.models[0])
    pair.http[0].delete("/aliases/production/canary")
    return pair


def binomial_bounds(n: int, p: float, coverage: float = 0.999) -> tuple[int, int]:
    """The central ``coverage`` interval of Binomial(n, p), exactly."""
    tail = (1 - coverage) / 2
    log_pmf = [
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(p) + (n - k) * math.log(1 - p)
        for k in range(n + 1)
    ]  # fmt: skip
    cdf, low, high = 0.0, 0, n
    for k, value in enumerate(log_pmf):
        cdf += math.exp(value)
        if cdf <= tail:
            low = k + 1
        if cdf >= 1 - tail:
            high = k
            break
    return low, high


def client_on(split_id: str, percent: int, canary: bool) -> str:
    return next(
        f"user-{i}"
        for i in range(10_000)
        if lands_on_canary(split_id, f"user-{i}", percent) == canary
    )


def test_the_canary_share_over_2000_requests_and_its_statistics_over_both_processes(
    fresh: Pair, mnist_data: Mnist
) -> None:
    a, b = str(fresh.models[0]), str(fresh.models[1])
    percent = 20
    started = fresh.http[0].put(
        "/aliases/production/canary", json={"model_id": b, "percent": percent}
    )
    assert started.status_code == 200, started.text
    images = np.asarray(mnist_data.test_images[:100]).tolist()
    seen: Counter[tuple[int, str]] = Counter()
    for n in range(SHARE_REQUESTS):
        i = n % 2
        answer = fresh.predict(i, images[n % 100])
        assert answer["alias"] == "production"
        assert answer["model_id"] == {"primary": a, "canary": b}[answer["variant"]]
        seen[i, answer["variant"]] += 1
    canary = seen[0, "canary"] + seen[1, "canary"]
    low, high = binomial_bounds(SHARE_REQUESTS, percent / 100)
    assert low <= canary <= high, (canary, low, high)
    assert seen[0, "canary"] and seen[1, "canary"]  # both processes split

    def counted() -> dict:
        return fresh.split(0)["stats"]

    wait_until(
        lambda: (
            counted()["primary"]["requests"] + counted()["canary"]["requests"] == SHARE_REQUESTS
        ),
        10,
        "both processes' counts in Redis",
    )
    stats = counted()
    assert stats["canary"]["requests"] == stats["canary"]["images"] == canary
    assert stats["primary"]["requests"] == SHARE_REQUESTS - canary
    assert fresh.split(1)["stats"] == stats  # the same from either process
    for i in (0, 1):  # per process, as Prometheus scrapes each
        text = fresh.http[i].get("/metrics").text
        line = (
            'mnist_predictions_total{alias="production",endpoint="/predict",variant="canary"} '
            f"{float(seen[i, 'canary'])}"
        )
        assert line in text, [row for row in text.splitlines() if "predictions_total" in row]


def test_the_same_client_always_lands_on_the_same_side(fresh: Pair) -> None:
    b = str(fresh.models[1])
    split = (
        fresh.http[1].put("/aliases/production/canary", json={"model_id": b, "percent": 30}).json()
    )
    sides: dict[str, set[str]] = {}
    for round_ in range(4):
        for user in range(40):
            client = f"sticky-{user}"
            answer = fresh.predict((user + round_) % 2, [0] * 784, client)
            sides.setdefault(client, set()).add(answer["variant"])
    assert all(len(seen) == 1 for seen in sides.values()), sides
    expected = {
        client: "canary" if lands_on_canary(split["id"], client, 30) else "primary"
        for client in sides
    }
    assert {client: seen.pop() for client, seen in sides.items()} == expected
    assert set(expected.values()) == {"primary", "canary"}
    explicit = fresh.predict(0, [0] * 784, client_on(split["id"], 30, True), model_id=b)
    assert explicit["variant"] == "primary"  # an explicit model_id is never split


def test_both_processes_follow_start_change_promote_and_abort_at_once(fresh: Pair) -> None:
    a, b, c = (str(m) for m in fresh.models)
    zero = [0] * 784
    start = fresh.http[0].put("/aliases/production/canary", json={"model_id": b, "percent": 50})
    split_id = start.json()["id"]
    lucky = client_on(split_id, 50, True)
    answer = fresh.predict(1, zero, lucky)  # the other process, its very next request
    assert (answer["variant"], answer["model_id"]) == ("canary", b)
    assert fresh.split(1)["id"] == split_id

    shadow = fresh.http[1].put("/aliases/production/canary", json={"model_id": b, "mode": "shadow"})
    assert shadow.status_code == 200 and shadow.json()["id"] == split_id  # same candidate
    answer = fresh.predict(0, zero, lucky)
    assert (answer["variant"], answer["model_id"]) == ("primary", a)

    aborted = fresh.http[0].delete("/aliases/production/canary")
    assert aborted.status_code == 200 and aborted.json()["id"] == split_id
    assert fresh.http[1].get("/aliases/production/canary").status_code == 404
    answer = fresh.predict(1, zero, lucky)
    assert (answer["variant"], answer["model_id"]) == ("primary", a)
    row = fresh.http[1].get("/aliases/production").json()["history"][0]
    assert (row["source"], row["reason"], row["candidate_model_id"]) == ("canary", "aborted", b)
    assert row["model_id"] == row["previous_model_id"] == a

    again = fresh.http[1].put("/aliases/production/canary", json={"model_id": c, "percent": 40})
    assert again.json()["id"] != split_id
    promoted = fresh.http[1].post("/aliases/production/canary/promote")
    assert promoted.status_code == 200 and promoted.json()["model_id"] == c
    answer = fresh.predict(0, zero, client_on(again.json()["id"], 40, False))
    assert (answer["variant"], answer["model_id"], answer["alias"]) == ("primary", c, "production")
    assert fresh.http[0].get("/aliases/production/canary").status_code == 404
    row = fresh.http[0].get("/aliases/production").json()["history"][0]
    assert (row["source"], row["model_id"], row["previous_model_id"]) == ("canary", c, a)
    assert row["reason"] == "promoted from canary at 40%"


def test_shadow_agreement_equals_the_agreement_computed_offline(
    fresh: Pair, mnist_data: Mnist
) -> None:
    a, b = fresh.models[0], fresh.models[1]
    started = fresh.http[0].put(
        "/aliases/production/canary", json={"model_id": str(b), "mode": "shadow"}
    )
    assert started.status_code == 200
    n = 300
    images = np.asarray(mnist_data.test_images[:n])
    for k, pixels in enumerate(images[:200]):
        answer = fresh.predict(k % 2, pixels.tolist())
        assert (answer["variant"], answer["model_id"]) == ("primary", str(a))
    batch = fresh.http[1].post("/predict", json={"images": images[200:].tolist()})
    assert batch.status_code == 200 and batch.json()["variant"] == "primary"
    wait_until(lambda: fresh.split(0)["stats"]["shadow"]["compared"] == n, 20, "the comparisons")

    def here(model: UUID) -> np.ndarray:
        info = fresh.services.registry.get_model(model)
        assert info is not None
        return predict(ModelCache(fresh.services.models, 1).get(info), images.astype(np.float32))

    primary, candidate = here(a), here(b)
    agreed = int((primary.argmax(axis=1) == candidate.argmax(axis=1)).sum())
    assert 0 < agreed < n
    stats = fresh.split(1)["stats"]
    assert stats["shadow"]["agreed"] == agreed and stats["shadow"]["dropped"] == 0
    assert stats["shadow"]["agreement"] == pytest.approx(agreed / n)
    for side, probabilities in (("primary", primary), ("canary", candidate)):
        expected = float(probabilities.max(axis=1).mean())
        assert stats[side]["mean_top_probability"] == pytest.approx(expected, rel=1e-6)
    assert stats["primary"]["images"] == n and stats["canary"]["requests"] == 0
    metrics = fresh.http[1].get("/metrics").text
    assert f'mnist_shadow_agreement_ratio{{alias="production"}} {agreed / n}' in metrics


def test_the_statistics_survive_an_api_restart(fresh: Pair) -> None:
    b = str(fresh.models[1])
    fresh.http[0].put("/aliases/production/canary", json={"model_id": b, "percent": 50})
    for _ in range(25):
        fresh.predict(1, [0] * 784)
    fresh.restart(1)  # before its next flush is due, maybe: its shutdown adds the rest
    stats = fresh.split(1)["stats"]
    assert stats["primary"]["requests"] + stats["canary"]["requests"] == 25
    fresh.restart(0)
    assert fresh.split(0)["stats"] == stats


def test_the_command_line(fresh: Pair) -> None:
    url = str(fresh.http[0].base_url).rstrip("/")
    a, b = str(fresh.models[0]), str(fresh.models[1])
    started = mnist(url, "canary", "production", b, "--percent", "10")
    assert started.returncode == 0, started.stderr
    assert f"canary 10%, candidate {b} beside {a}" in " ".join(started.stdout.split())
    fresh.predict(0, [0] * 784)
    shown = mnist(url, "canary", "production")
    assert shown.returncode == 0 and "primary" in shown.stdout and "canary" in shown.stdout
    shadow = mnist(url, "canary", "production", b, "--shadow")
    assert shadow.returncode == 0 and "shadow" in shadow.stdout
    for wrong in (
        ("canary", "production", b),
        ("canary", "production", b, "--percent", "10", "--shadow"),
        ("canary", "production", "--promote", "--abort"),
        ("canary", "production", b, "--percent", "100"),
    ):
        refused = mnist(url, *wrong)
        assert refused.returncode == 1 and refused.stderr.startswith("error:"), wrong
        assert "Traceback" not in refused.stderr
    aborted = mnist(url, "canary", "production", "--abort")
    assert aborted.returncode == 0 and f"production stays on {a}" in aborted.stdout
    none = mnist(url, "canary", "production")
    assert none.returncode == 1 and "404" in none.stderr
    assert mnist(url, "canary", "production", b, "--percent", "5").returncode == 0
    promoted = mnist(url, "canary", "production", "--promote")
    assert promoted.returncode == 0 and f"-> model {b} (promoted)" in promoted.stdout
    assert fresh.http[1].get("/aliases/production").json()["model_id"] == b
