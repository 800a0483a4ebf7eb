"""A Docker engine and a compose project for the compose tests.

The engine is whichever one answers ``docker info``; when none does and we are root
with ``dockerd`` installed, a private one (see ``../shared/DOCKER-NOTES.md``): its own
data-root, exec-root and socket under a temporary folder, no bridge, no iptables, no
IP forwarding, so it changes nothing on the machine's network; every container of
the test uses the host's network and talks on 127.0.0.1 only. It is stopped by its pid.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.config import Settings

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
BASE_IMAGES = ("python:3.11-slim", "redis:7")  # what the Dockerfile and compose use
CA_SOURCE = Path("/usr/local/share/ca-certificates")
CA_TARGET = REPO / "docker" / "ca-certificates"

# Variables that must not leak from the caller's shell into the stack under test:
# every service setting, the compose file's own variables, compose and docker knobs.
COMPOSE_VARIABLES = {"REDIS_PASSWORD", "API_BIND", "API_PORT", "WORKER_CPUS", "WORKER_MEMORY"}
SERVICE_VARIABLES = {name.upper() for name in Settings.model_fields}


def unavailable(reason: str) -> None:
    """Skip where Docker cannot be had; under CI=true that is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def clean_env(docker_host: str | None = None) -> dict[str, str]:
    """The caller's environment less anything that would change the stack under test;
    with ``docker_host``, pointed at that engine only."""
    dropped = ("COMPOSE_", "DOCKER_") if docker_host else ("COMPOSE_",)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SERVICE_VARIABLES | COMPOSE_VARIABLES and not key.startswith(dropped)
    }
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return env


def compose_command() -> list[str] | None:
    """Debian's docker-compose (v1) where installed, else the ``docker compose`` plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def engine_answers(env: dict[str, str], timeout: float = 20) -> bool:
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@dataclass
class Engine:
    env: dict[str, str]  # for docker and compose commands: DOCKER_HOST of a private engine
    private: bool
    proc: subprocess.Popen | None = None
    root: Path | None = None
    log: Path | None = None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log else ""


def _start_dockerd(root: Path) -> Engine:
    (root / "data").mkdir()
    (root / "run").mkdir()
    (root / "daemon.json").write_text("{}")  # not the machine's /etc/docker/daemon.json
    log = root / "dockerd.log"
    socket = root / "docker.sock"
    proc = subprocess.Popen(
        [
            "dockerd",
            "--config-file",
            str(root / "daemon.json"),
            "--host",
            f"unix://{socket}",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "run"),
            "--pidfile",
            str(root / "dockerd.pid"),
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = Engine(clean_env(f"unix://{socket}"), True, proc, root, log)
    deadline = time.monotonic() + 60
    for _ in range(120):
        if engine_answers(engine.env, timeout=5):
            return engine
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    _stop_dockerd(engine)
    raise RuntimeError(f"dockerd did not answer within 60 s:\n{engine.tail()}")


def _stop_dockerd(engine: Engine) -> None:
    proc = engine.proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # by its pid: it stops its own containerd
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def docker_engine() -> Iterator[Engine]:
    """The engine that answers, or a private dockerd; skips (fails under CI) without one."""
    env = clean_env()
    if engine_answers(env):
        yield Engine(env, private=False)
        return
    if shutil.which("dockerd") is None:
        unavailable("no Docker engine answers and dockerd is missing (apt-get install docker.io)")
    if os.geteuid() != 0:
        unavailable("no Docker engine answers and starting dockerd needs root")
    root = Path(tempfile.mkdtemp(prefix="mnist-dockerd-"))  # short: socket paths are limited
    try:
        try:
            engine = _start_dockerd(root)
        except RuntimeError as exc:
            unavailable(str(exc))
        try:
            yield engine
        finally:
            started = time.monotonic()
            _stop_dockerd(engine)
            print(f"private dockerd stopped in {time.monotonic() - started:.1f}s")
    finally:
        started = time.monotonic()
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
        print(f"its data-root removed in {time.monotonic() - started:.1f}s")


def _unmount_below(root: Path) -> None:
    """dockerd leaves mounts behind (e.g. exec-root/netns/default): undo ours only."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    prefix = f"{root}/"
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, timeout=30, check=False)


def ensure_base_images(engine: Engine, log: Path) -> None:
    """Build the local stand-ins of the base images when their tags are missing."""
    missing = [
        tag
        for tag in BASE_IMAGES
        if subprocess.run(
            ["docker", "image", "inspect", tag],
            env=engine.env,
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode
        != 0
    ]
    if not missing:
        return
    if not engine.private:
        # A real engine: try the registry first, it has the real images.
        for tag in list(missing):
            with suppress(subprocess.TimeoutExpired):
                pulled = subprocess.run(
                    ["docker", "pull", "-q", tag],
                    env=engine.env,
                    capture_output=True,
                    timeout=300,
                    check=False,
                )
                if pulled.returncode == 0:
                    missing.remove(tag)
        if not missing:
            return
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        unavailable(f"base images {missing} missing; building stand-ins needs root and debootstrap")
    with log.open("ab") as out:
        done = subprocess.run(
            [str(REPO / "scripts" / "docker-base-images")],
            env=engine.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/docker-base-images failed:\n{log.read_text()[-3000:]}")


@contextmanager
def extra_ca_certificates() -> Iterator[list[Path]]:
    """This machine's extra CA certificates in docker/ca-certificates/ for the build
    (TLS-intercepting proxies); only the files put there are removed afterwards."""
    added = []
    try:
        for source in sorted(CA_SOURCE.glob("*.crt")):
            target = CA_TARGET / source.name
            if not target.exists():
                shutil.copyfile(source, target)
                added.append(target)
        yield added
    finally:
        for target in added:
            target.unlink(missing_ok=True)


@dataclass
class Compose:
    """One compose project of the repo: ``<command> -p NAME --project-directory REPO
    --env-file F -f FILE...``."""

    command: list[str]
    project: str
    files: Sequence[Path]
    env_file: Path
    env: dict[str, str]
    log: Path
    history: list[tuple[str, float]] = field(default_factory=list)

    def base(self) -> list[str]:
        args = [*self.command, "-p", self.project, "--project-directory", str(REPO)]
        args += ["--env-file", str(self.env_file)]
        for path in self.files:
            args += ["-f", str(path)]
        return args

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        started = time.monotonic()
        with self.log.open("ab") as out:
            out.write(f"\n$ compose {' '.join(args)}\n".encode())
            out.flush()
            try:
                done = subprocess.run(
                    [*self.base(), *args],
                    cwd=REPO,
                    env=self.env,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError(f"compose {' '.join(args)}: timed out after {timeout}s") from exc
            out.write(done.stdout + done.stderr)
        self.history.append((" ".join(args), round(time.monotonic() - started, 1)))
        if check and done.returncode != 0:
            # compose says why on stderr, after the build's output on stdout: both, the
            # reason last, so that the message's tail holds it
            said = done.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(
                f"compose {' '.join(args)} exited {done.returncode}:\n"
                f"{self.log_tail(2000)}\n--- stderr:\n{said}"
            )
        return done.stdout.decode(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def container_ids(self, service: str) -> list[str]:
        return self.run("ps", "-q", service, timeout=60).split()


def docker(engine: Engine, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        ["docker", *args], env=engine.env, capture_output=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


def inspect(engine: Engine, container: str) -> dict:
    return json.loads(docker(engine, "inspect", container))[0]
