"""Fast checks of docker-compose.yml and .env.example, no engine needed: compose itself
(``docker-compose -f docker-compose.yml config``) accepts the file, and the file says
what the README and the issues promise."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.config import Settings
from tests.compose.engine import COMPOSE_VARIABLES, REPO, clean_env, compose_command, unavailable

ENV_EXAMPLE = REPO / ".env.example"


def compose_config(env_file: Path) -> dict:
    command = compose_command()
    if command is None:
        unavailable("docker-compose is not installed (apt-get install docker-compose)")
    done = subprocess.run(
        [*command, "--env-file", str(env_file), "-f", "docker-compose.yml", "config"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    empty = tmp_path_factory.mktemp("compose-config") / "empty.env"
    empty.write_text("")  # the defaults written in docker-compose.yml, not a local .env
    return compose_config(empty)


def test_compose_accepts_the_file(config: dict) -> None:
    assert set(config["services"]) == {"redis", "api", "worker", "flower"}
    assert config["services"]["flower"]["profiles"] == ["monitoring"]  # not started by default
    assert {"redis-data", "models", "mnist"} <= set(config["volumes"])


def test_env_example_holds_the_defaults(config: dict) -> None:
    assert compose_config(ENV_EXAMPLE) == config


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    names = {name.upper() for name in Settings.model_fields} | COMPOSE_VARIABLES
    missing = [name for name in names if not re.search(rf"^#? ?{name}=", text, re.M)]
    assert not missing


def test_services_run_the_documented_processes(config: dict) -> None:
    api, worker = config["services"]["api"], config["services"]["worker"]
    assert api["command"] == ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
    assert worker["command"] == ["celery", "-A", "worker.app", "worker", "--loglevel", "INFO"]
    assert api["image"] == worker["image"] and api["build"] == worker["build"]


def test_redis_is_durable_private_and_password_protected(config: dict) -> None:
    redis = config["services"]["redis"]
    args = redis["command"]
    flags = dict(zip(args[1::2], args[2::2], strict=False))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--requirepass"]
    assert "ports" not in redis
    assert any(volume.startswith("redis-data:/data") for volume in _volumes(redis))
    assert redis["healthcheck"]["test"]
    password = flags["--requirepass"]
    api_env = config["services"]["api"]["environment"]
    assert api_env["REDIS_URL"] == f"redis://:{password}@redis:6379/0"


def test_healthchecks_conditions_and_lifecycle(config: dict) -> None:
    services = config["services"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    for name, service in services.items():
        assert service["init"] is True, name
        assert service["restart"] == "unless-stopped", name


def test_api_published_on_loopback_port_8000_by_default(config: dict) -> None:
    (port,) = config["services"]["api"]["ports"]
    text = port if isinstance(port, str) else f"{port['host_ip']}:{port['published']}"
    assert text.startswith("127.0.0.1:8000")


def test_worker_is_limited_and_scalable(config: dict) -> None:
    worker = config["services"]["worker"]
    assert worker["stop_grace_period"]
    assert float(worker["cpus"]) > 0 and worker["mem_limit"]
    assert "ports" not in worker and "container_name" not in worker  # --scale worker=3
    env = worker["environment"]
    assert env["BLAS_THREADS"] and env["WORKER_CONCURRENCY"]
    assert env["MODEL_DIR"] == "/data/models" and env["MNIST_DIR"] == "/data/mnist"
    assert {"models:/data/models", "mnist:/data/mnist"} <= {
        v.rsplit(":rw", 1)[0] for v in _volumes(worker)
    }


def _volumes(service: dict) -> list[str]:
    """Volume entries as ``source:target[:mode]`` (v1 prints strings, v2 mappings)."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            out.append(volume)
        else:
            mode = ":ro" if volume.get("read_only") else ""
            out.append(f"{volume['source']}:{volume['target']}{mode}")
    return out
