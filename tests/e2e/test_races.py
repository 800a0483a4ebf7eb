"""Races over HTTP against the real uvicorn and worker (issue: hardening)."""

import concurrent.futures
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.procs import free_port, redis_server, service_env, start_api, stop

pytestmark = pytest.mark.e2e

QUICK = {"epochs": 1, "train_size": 1000, "minibatches": 10, "input_scaling": "unit"}


def _post_all(url: str, n: int, headers: dict[str, str], body: dict) -> list[httpx.Response]:
    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as http:
            return http.post("/jobs", json=body, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(post, range(n)))


def test_idempotency_and_queue_limit_hold_under_concurrent_posts(tmp_path: Path) -> None:
    """No worker runs: every job stays queued, so the queue limit is exact."""
    with redis_server(tmp_path / "redis") as redis_url:
        env = service_env(redis_url, tmp_path / "models", MAX_QUEUED_JOBS="10")
        port = free_port()
        api = start_api(env, tmp_path / "api.log", port)
        url = f"http://127.0.0.1:{port}"
        try:
            same = _post_all(url, 20, {"Idempotency-Key": "retry-me"}, QUICK)
            assert {r.status_code for r in same} == {202}
            assert len({r.json()["id"] for r in same}) == 1
            flood = _post_all(url, 40, {}, QUICK)
            codes = [r.status_code for r in flood]
            assert codes.count(202) == 9 and codes.count(429) == 31  # 1 + 9 = the limit
            assert all(r.headers.get("Retry-After") for r in flood if r.status_code == 429)
            listed = httpx.get(f"{url}/jobs", params={"limit": 100}).json()
            assert listed["total"] == 10
        finally:
            stop(api)


def _cancel_near_the_end(stack: Stack) -> tuple[int, dict]:
    job_id = stack.submit(**{**QUICK, "epochs": 4, "train_size": 2000})
    stack.wait_epoch(job_id, 3)
    response = stack.http.post(f"/jobs/{job_id}/cancel")
    return response.status_code, stack.wait(job_id)


def test_a_cancel_that_is_accepted_always_wins(stack: Stack) -> None:
    """Cancels sent during the last epoch or while the model is saved: 202 means the
    job ends cancelled with no model and no file; otherwise 409 and it succeeds."""
    seen = set()
    for _ in range(4):
        code, job = _cancel_near_the_end(stack)
        seen.add(code)
        model = stack.http.get(f"/models/{job['id']}")
        if code == 202:
            assert job["status"] == "cancelled" and job["model_id"] is None
            assert model.status_code == 404
            assert not (stack.model_dir / f"{job['id']}.npz").exists()
        else:
            assert code == 409 and job["status"] == "succeeded"
            assert model.status_code == 200
    assert seen <= {202, 409}


def test_unknown_job_cancel_is_404_and_ended_is_409(stack: Stack) -> None:
    assert stack.http.post(f"/jobs/{uuid.uuid4()}/cancel").status_code == 404
    job_id = stack.submit(**QUICK)
    stack.wait(job_id)
    time.sleep(0.1)
    response = stack.http.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 409 and "already succeeded" in response.json()["detail"]
