"""Corrections sent many times at once to two API processes (issue 17, point 6): the
limit holds exactly, every entry has its file, and each new correction gets exactly one
201 (its twins a 200, or a 507 once the store is full)."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.redisdb.client import connect
from shared.redisdb.keys import Keys
from tests.procs import free_port, redis_server, service_env, start_api, stop

pytestmark = pytest.mark.e2e

LIMIT = 60
NEW = 80
TWINS = 4


def test_four_twins_of_eighty_new_corrections_against_a_limit_of_sixty(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bodies = [
        {"pixels": rng.integers(0, 256, 784).tolist(), "label": int(k % 10)} for k in range(NEW)
    ]
    with redis_server(tmp_path / "redis") as url:
        env = service_env(url, tmp_path / "models", FEEDBACK_MAX=str(LIMIT))
        apis = []
        for name in ("a", "b"):
            port = free_port()
            apis.append((start_api(env, tmp_path / f"api-{name}.log", port), port))
        try:
            urls = [f"http://127.0.0.1:{port}" for _, port in apis]
            sends = [(k, urls[(k + t) % 2]) for k in range(NEW) for t in range(TWINS)]
            rng.shuffle(sends)  # twins of one correction interleave with everything else

            def send(item: tuple[int, str]) -> tuple[int, int]:
                k, base = item
                return k, httpx.post(f"{base}/feedback", json=bodies[k], timeout=30).status_code

            with ThreadPoolExecutor(32) as pool:
                results = list(pool.map(send, sends))
        finally:
            for proc, _ in apis:
                stop(proc)
        # the index and the files agree: exactly the limit, nothing indexed without its file
        keys = Keys("mnist:")
        indexed = {i for i in connect(url).zrange(keys.feedback_all(), 0, -1)}
    files = {p.stem for p in (tmp_path / "models" / "feedback").glob("*.json")}
    assert len(indexed) == LIMIT and indexed == files

    statuses = Counter(status for _, status in results)
    assert set(statuses) <= {200, 201, 507}, statuses
    created = Counter(k for k, status in results if status == 201)
    assert all(n == 1 for n in created.values())  # never two 201s for one correction
    assert len(created) == LIMIT  # every correction that got in had its one 201
    stored = {k for k, status in results if status == 200}
    assert stored <= set(created)  # a 200 is only ever a twin of a stored one
