"""Issue 10, provoked for real against ``uvicorn api.main:app`` (the plain command,
as compose runs it): hostile uploads and endless headers must not swell the API.

The bounds are generous correctness checks of boundedness (was: +500 MB for one
16-bit RGBA upload, 2.4 GB for 8 at once, +500 MB for 8 endless headers), not
performance targets; those are in BENCHMARKS.md (``bench.api_memory``)."""

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench import hostile
from tests.procs import free_port, redis_server, service_env, start_api, stop

pytestmark = pytest.mark.e2e


@dataclass
class Api:
    proc: subprocess.Popen
    url: str
    port: int

    def status_mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)

    def reset_peak(self) -> float:
        """VmHWM := VmRSS (Linux's clear_refs); returns that resting RSS."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        return self.status_mb("VmRSS")

    def livez(self) -> int:
        return httpx.get(f"{self.url}/livez", timeout=10).status_code


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("memory")
    with redis_server(root / "redis") as redis_url:
        port = free_port()
        proc = start_api(service_env(redis_url, root / "models"), root / "api.log", port)
        try:
            yield Api(proc, f"http://127.0.0.1:{port}", port)
        finally:
            stop(proc)


def upload(url: str, data: bytes) -> int:
    with httpx.Client(timeout=120) as client:
        return client.post(f"{url}/predict/image", files={"file": ("x.png", data)}).status_code


def test_eight_hostile_uploads_at_once_stay_bounded(api: Api) -> None:
    square, row_grey, row_rgba = (
        hostile.square_rgba16(),
        hostile.one_row_grey(),
        hostile.one_row_rgba16(),
    )
    bomb = hostile.bomb()
    files = [square] * 4 + [row_grey, row_rgba, row_rgba, bomb]
    expected = [422] * 4 + [413] * 4  # blank but decodable (no digit); too large
    rest = api.reset_peak()
    with ThreadPoolExecutor(len(files)) as pool:
        statuses = list(pool.map(upload, [api.url] * len(files), files))
    growth = api.status_mb("VmHWM") - rest
    assert statuses == expected
    assert growth < 300, f"8 hostile uploads grew the API by {growth:.0f} MB"
    assert api.livez() == 200


def test_endless_headers_are_cut_off_and_stay_small(api: Api) -> None:
    """Each connection sends a header that never ends (64 KB at a time, for up to
    5 s): h11 answers 400 after 16 KiB and closes; httptools would read on."""
    rest = api.reset_peak()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(hostile.endless_header, [api.port] * 4, [5.0] * 4))
    growth = api.status_mb("VmHWM") - rest
    for sent, outcome in results:
        assert outcome in (
            "HTTP/1.1 400 Bad Request",
            "HTTP/1.1 431 Request Header Fields Too Large",
            "closed",
            "reset",
        ), outcome
        assert sent < 64 * 2**20  # cut off long before the 64 MB
    assert growth < 100, f"4 endless headers grew the API by {growth:.0f} MB"
    assert api.livez() == 200
