"""On a fresh machine (no ``MNIST_DIR``, nothing beside the checkout) the test command
fetches MNIST once, with the service's own downloader, into a cache.

``scripts/mnist-data`` is the step ``scripts/test`` runs. Here it runs from a copy of the
checkout's ``scripts/`` in an empty folder, so ``../shared/mnist`` is absent as on a
fresh machine, with ``MNIST_MIRRORS`` naming a loopback HTTP mirror that serves the real
files: nothing leaves this machine. The first mirror serves corrupt files, to show that
each file is checked against MNIST's sha256 before it is kept.
"""

import gzip
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.data import mnist
from tests.procs import BIN, REPO, mnist_dir

pytestmark = pytest.mark.e2e


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """``http://127.0.0.1:port`` serving ``/good/<file>.gz`` (the real files) and
    ``/bad/<file>.gz`` (valid gzip, wrong content); yields its URL and the paths asked."""
    source = mnist_dir()
    if mnist.missing_files(source):
        pytest.skip(f"real MNIST not found in {source} (set MNIST_DIR)")
    root = tmp_path / "mirror"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    for name in mnist.FILES.values():
        shutil.copyfile(source / f"{name}.gz", root / "good" / f"{name}.gz")
        (root / "bad" / f"{name}.gz").write_bytes(gzip.compress(b"not MNIST at all"))
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def run_fetch(checkout: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(checkout / "scripts" / "mnist-data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_fresh_checkout_fetches_mnist_once_verified(
    tmp_path: Path, mirror: tuple[str, list[str]]
) -> None:
    url, asked = mirror
    checkout = tmp_path / "fresh" / "mnist-service"
    shutil.copytree(REPO / "scripts", checkout / "scripts")
    assert not (checkout.parent / "shared").exists()
    cache = tmp_path / "cache"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MNIST_") and "proxy" not in k.lower()  # loopback, directly
    }
    env.update(
        VENV=str(BIN.parent),  # the checkout's installed .venv: the product's downloader
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(cache),
        MNIST_MIRRORS=f"{url}/bad,{url}/good",
    )

    first = run_fetch(checkout, env)
    assert first.returncode == 0, first.stderr
    folder = cache / "mnist-service" / "mnist"
    assert first.stdout == f"{folder}\n"
    assert f"fetching MNIST once into {folder}" in first.stderr  # it says so
    names = list(mnist.FILES.values())
    # every file: the corrupt copy refused, the real one kept
    assert sorted(asked) == sorted(
        [f"/bad/{n}.gz" for n in names] + [f"/good/{n}.gz" for n in names]
    )
    for name in names:
        kept = folder / f"{name}.gz"
        assert kept.read_bytes() == (mnist_dir() / f"{name}.gz").read_bytes(), name
    mnist.verify(folder)
    data = mnist.load(folder)
    assert data.train_images.shape == (60_000, 784) and data.test_labels.shape == (10_000,)

    # once: the next run finds the cache verified and asks the mirror nothing
    asked.clear()
    again = run_fetch(checkout, env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{folder}\n" and "fetching" not in again.stderr
    assert asked == []

    # MNIST_DIR, when set, is used as it is
    mine = run_fetch(checkout, {**env, "MNIST_DIR": str(tmp_path / "mine")})
    assert mine.stdout == f"{tmp_path / 'mine'}\n" and asked == []


def test_only_corrupt_mirrors_fail_loudly(tmp_path: Path, mirror: tuple[str, list[str]]) -> None:
    url, _ = mirror
    checkout = tmp_path / "fresh" / "mnist-service"
    shutil.copytree(REPO / "scripts", checkout / "scripts")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MNIST_") and "proxy" not in k.lower()
    }
    env.update(
        VENV=str(BIN.parent), XDG_CACHE_HOME=str(tmp_path / "cache"), MNIST_MIRRORS=f"{url}/bad"
    )
    result = run_fetch(checkout, env)
    assert result.returncode != 0 and result.stdout == ""
    assert "sha256" in result.stderr and "does not match" in result.stderr, result.stderr
    assert not list((tmp_path / "cache" / "mnist-service" / "mnist").glob("*.gz"))
