"""Every knob of the service, read once from the environment.

Each field is overridable by the upper-case environment variable of the same
name (``REDIS_URL``, ``MODEL_DIR``, ...). The README's settings table mirrors
this class; keep them together.
"""

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SentinelAddress = tuple[str, int]
"""One sentinel's ``(host, port)``."""

_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+")
"""A host name, an IPv4 address, or an IPv6 address in brackets (``[::1]``)."""


def parse_sentinels(text: str) -> tuple[SentinelAddress, ...]:
    """``host:port,host:port,...`` as addresses, or ``ValueError`` with one line saying
    what is wrong. Strict on purpose: Celery (kombu) fills a missing port with 26379
    and reads an empty entry (a trailing separator) as localhost, so a typo would
    quietly point a process at the wrong place instead of failing at start."""
    addresses = []
    for n, raw in enumerate(text.split(","), 1):
        entry = raw.strip()
        if not entry:
            raise ValueError(
                f"entry {n} of {text!r} is empty (a doubled, leading or trailing comma); "
                "give host:port pairs separated by commas"
            )
        host, colon, port = entry.rpartition(":")
        if not colon or not port:
            raise ValueError(f"{entry!r} has no port; give host:port, e.g. 10.0.0.5:26379")
        if not host:
            raise ValueError(f"{entry!r} has no host; give host:port, e.g. 10.0.0.5:26379")
        if not _HOST.fullmatch(host):
            raise ValueError(f"{entry!r}: {host!r} is not a host name or address")
        if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
        addresses.append((host.strip("[]"), int(port)))
    if len(set(addresses)) != len(addresses):
        raise ValueError(f"{text!r} names a sentinel twice")
    return tuple(addresses)


AtLeastOne = Annotated[int, Field(ge=1)]
"""A count of things the service keeps or runs: zero of them could not work."""
AboveZero = Annotated[float, Field(gt=0)]
"""A period or a limit (seconds, megabytes): zero would mean never, or nothing."""

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DEFAULT_BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024
"""16 bodies of the default MAX_BODY_BYTES (bench/slow_bodies.py: +68 MB at most)."""


class Settings(BaseSettings):
    # An empty variable (API_KEY= in a .env) means "unset", not an empty key.
    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, env_ignore_empty=True
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for the job records and model registry; also the Celery broker.",
    )
    redis_sentinels: Annotated[tuple[SentinelAddress, ...], NoDecode] = Field(
        (),
        description="Redis Sentinels as host:port,host:port,...: when set, the primary they "
        "name wins over REDIS_URL's host and port (REDIS_URL still gives the data password "
        "and database); every Redis client and Celery follow a failover.",
    )
    redis_sentinel_master: str = Field(
        "mymaster",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The master name the sentinels monitor (their `sentinel monitor` line).",
    )
    redis_sentinel_password: SecretStr | None = Field(
        None,
        description="The sentinels' own password (their requirepass), apart from the data "
        "password in REDIS_URL.",
    )
    redis_min_replicas: int = Field(
        0,
        ge=0,
        description="Replicas that must confirm (WAIT) a job submission, an alias change, a "
        "model registration or a correction before it is acknowledged; 0: none.",
    )
    redis_wait_ms: int = Field(
        500,
        ge=1,
        le=4000,
        description="How long one WAIT for REDIS_MIN_REPLICAS may take before the API answers "
        "503 (below the clients' 5 s socket timeout).",
    )
    key_prefix: str = Field("mnist:", description="Prefix of every Redis key the service writes.")
    model_dir: Path = Field(
        Path("data/models"),
        description="Folder of the model files, checkpoints and (by default) corrections, "
        "when ARTIFACT_URI is unset.",
    )
    artifact_uri: str | None = Field(
        None,
        description="Where models, checkpoints and corrections live: file:///path, or "
        "s3://bucket/prefix; unset: file:// + MODEL_DIR.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="The S3-compatible server of an s3:// ARTIFACT_URI (unset: AWS itself); "
        "credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or boto3's chain.",
    )
    s3_region: str | None = Field(None, description="The region of an s3:// ARTIFACT_URI.")
    cache_dir: Path | None = Field(
        None,
        description="This host's private cache of verified model bytes, used with a network "
        "artifact store; default: a cache folder beside MODEL_DIR.",
    )
    mnist_dir: Path = Field(Path("data/mnist"), description="Folder of the four MNIST IDX files.")
    mnist_download: bool = Field(
        True, description="Download missing MNIST files from the mirrors (worker only)."
    )
    mnist_mirrors: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_MIRRORS,
        description="Comma-separated base URLs tried in order when downloading MNIST.",
    )
    model_cache_size: AtLeastOne = Field(8, description="Models the API keeps loaded in memory.")
    serving_alias: str = Field(
        "production",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="The alias /predict serves by default (else the newest intact model).",
    )
    model_retention: AtLeastOne | None = Field(
        None,
        description="Keep only the N newest models (aliased ones and running jobs' parents "
        "are spared); unset: keep all.",
    )
    feedback_dir: Path | None = Field(
        None,
        description="Folder of the users' corrections (POST /feedback); default: "
        "MODEL_DIR/feedback, on the models volume that api and worker share.",
    )
    feedback_max: AtLeastOne = Field(
        100_000, description="Corrections kept at most; beyond, POST /feedback is 507."
    )
    shadow_queue_images: AtLeastOne = Field(
        2000,
        description="Images an API process holds for a shadow candidate to predict (float32, "
        "3 KB each); beyond, they are dropped and counted.",
    )
    canary_flush_seconds: AboveZero = Field(
        1.0, description="How often an API process adds its splits' counts to Redis."
    )
    promotion_max_test_drop: float = Field(
        0.005,
        ge=0,
        le=1,
        description="The promotion gate never promotes a model whose MNIST test accuracy is "
        "lower than the incumbent's by more than this, whatever the metric.",
    )
    drift_window: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Inputs per serving model in the drift window (GET /models/{id}/drift): "
        "the newest ones, from every API process.",
    )
    drift_psi_threshold: float = Field(
        0.2,
        gt=0,
        allow_inf_nan=False,
        description="A summary whose population stability index is above this has drifted.",
    )
    drift_min_samples: AtLeastOne = Field(
        200, description="Inputs the drift window must hold before it may say drifted."
    )
    blas_threads: AtLeastOne | None = Field(
        None,
        description="BLAS threads per worker process; default: CPU cores / worker concurrency.",
    )
    worker_concurrency: AtLeastOne = Field(
        1, description="Training processes per worker container (Celery --concurrency)."
    )
    log_level: str = Field("INFO", description="Log level of api and worker.")
    log_format: Literal["json", "text"] = Field(
        "json", description="JSON lines (with job_id on a job's lines) or plain text."
    )

    # Reliability: see README "Failure modes".
    lease_seconds: AboveZero = Field(
        10.0, description="A job whose worker stops renewing its lease this long is orphaned."
    )
    heartbeat_seconds: AboveZero = Field(1.0, description="How often a training job renews it.")
    recovery_interval_seconds: AboveZero = Field(
        5.0, description="How often each worker looks for orphaned jobs."
    )
    max_attempts: AtLeastOne = Field(3, description="Deliveries of a job before it fails.")
    checkpoint_seconds: float = Field(
        5.0, ge=0, description="Least time between two checkpoints of a running job."
    )
    store_retry_seconds: float = Field(
        120.0,
        ge=0,
        description="How long a job retries while the artifact store is unreachable before "
        "it fails (a checkpoint due meanwhile is skipped).",
    )
    job_time_limit_seconds: AboveZero = Field(
        6 * 3600, description="Soft limit of one job's run; the hard limit is 60 s later."
    )
    max_queued_jobs: AtLeastOne = Field(
        100, description="Queued jobs beyond which POST /jobs is 429."
    )
    job_memory_limit_mb: AboveZero = Field(
        1280.0,
        description="POST /jobs refuses (422) a job whose estimated peak memory in its "
        "worker (shared/job_memory.py) is above this many MB.",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body; larger ones get 413."
    )
    body_timeout_seconds: AboveZero = Field(
        30.0,
        description="Longest time to receive one request body, from the API's first read "
        "of it to its last byte; beyond, 408 and the connection is closed.",
    )
    max_body_bytes_in_flight: int | None = Field(
        None,
        ge=1024,
        description="Bytes of request bodies one API process holds at once (bodies above "
        "16 KiB, from Content-Length or as they arrive); a body that would go beyond is "
        "refused at once with 503 and Retry-After. At least MAX_BODY_BYTES; default: "
        "64 MiB, or MAX_BODY_BYTES if that is larger.",
    )

    # Access.
    api_key: SecretStr | None = Field(
        None, description="When set, every write requires it (X-API-Key or Bearer)."
    )
    protect_predict: bool = Field(
        False,
        description="Require the API key for predictions, model weights and users' "
        "corrections too.",
    )
    protect_metrics: bool = Field(
        False, description="Require the API key for GET /metrics too (it is open by default)."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated origins allowed by CORS; none by default."
    )

    @property
    def cache_root(self) -> Path:
        return self.cache_dir or self.model_dir.parent / "cache"

    @property
    def artifacts(self) -> str:
        """The artifact store's URI: ARTIFACT_URI, else the MODEL_DIR folder."""
        return self.artifact_uri or f"file://{self.model_dir.absolute()}"

    @property
    def body_bytes_in_flight(self) -> int:
        """MAX_BODY_BYTES_IN_FLIGHT, or its default: a raised MAX_BODY_BYTES raises it too,
        so that a setting made before it existed keeps working."""
        if self.max_body_bytes_in_flight is not None:
            return self.max_body_bytes_in_flight
        return max(DEFAULT_BODY_BYTES_IN_FLIGHT, self.max_body_bytes)

    @model_validator(mode="after")
    def _one_body_fits_in_flight(self) -> Self:
        if self.body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(
                "MAX_BODY_BYTES_IN_FLIGHT must be at least MAX_BODY_BYTES, or a body of "
                "the largest size could never be accepted"
            )
        return self

    @field_validator("mnist_mirrors", "cors_origins", mode="before")
    @classmethod
    def _split_mirrors(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: object) -> object:
        return parse_sentinels(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sentinels_need_plain_redis(self) -> "Settings":
        if self.redis_sentinels and not self.redis_url.startswith("redis://"):
            raise ValueError(
                "REDIS_SENTINELS works with a redis:// REDIS_URL (password and database); "
                "TLS (rediss://) through Sentinel is not supported"
            )
        return self


class InvalidSettings(ValueError):
    """A setting's value cannot work: the process refuses to start, with this one line."""


def describe(error: ValidationError) -> str:
    """Pydantic's report as one line naming each variable: ``REDIS_SENTINELS: ...``."""
    parts = []
    for item in error.errors():
        name = "_".join(str(p) for p in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return "; ".join(parts)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests clear the cache to change the environment.
    :class:`InvalidSettings` (one line) when a value cannot work."""
    try:
        return Settings()
    except ValidationError as exc:
        raise InvalidSettings(describe(exc)) from None
