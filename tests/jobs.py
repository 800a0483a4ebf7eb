"""The job calls of the HTTP API as the stacks' tests make them (loopback, compose):
one place for what a submitted and a read job must answer."""

import httpx

# A job in one of these states changes no more.
FINISHED = {"succeeded", "failed", "cancelled"}


class JobCalls:
    """``POST /jobs`` (202) and ``GET /jobs/{id}`` (200) through the stack's ``http``."""

    http: httpx.Client

    def submit(self, **params: object) -> str:
        response = self.http.post("/jobs", json=params)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        response = self.http.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()
