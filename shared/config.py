"""Every knob of the service, read once from the environment.

Each field is overridable by the upper-case environment variable of the same
name (``REDIS_URL``, ``MODEL_DIR``, ...). The README's settings table mirrors
this class; keep them together.
"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


class Settings(BaseSettings):
    # An empty variable (API_KEY= in a .env) means "unset", not an empty key.
    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, env_ignore_empty=True
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for the job records and model registry; also the Celery broker.",
    )
    key_prefix: str = Field("mnist:", description="Prefix of every Redis key the service writes.")
    model_dir: Path = Field(
        Path("data/models"), description="Shared volume holding the model files."
    )
    mnist_dir: Path = Field(Path("data/mnist"), description="Folder of the four MNIST IDX files.")
    mnist_download: bool = Field(
        True, description="Download missing MNIST files from the mirrors (worker only)."
    )
    mnist_mirrors: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_MIRRORS,
        description="Comma-separated base URLs tried in order when downloading MNIST.",
    )
    model_cache_size: int = Field(8, ge=1, description="Models the API keeps loaded in memory.")
    serving_alias: str = Field(
        "production",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="The alias /predict serves by default (else the newest intact model).",
    )
    model_retention: int | None = Field(
        None,
        ge=1,
        description="Keep only the N newest models (aliased ones and running jobs' parents "
        "are spared); unset: keep all.",
    )
    feedback_dir: Path | None = Field(
        None,
        description="Folder of the users' corrections (POST /feedback); default: "
        "MODEL_DIR/feedback, on the models volume that api and worker share.",
    )
    feedback_max: int = Field(
        100_000, ge=1, description="Corrections kept at most; beyond, POST /feedback is 507."
    )
    promotion_max_test_drop: float = Field(
        0.005,
        ge=0,
        le=1,
        description="The promotion gate never promotes a model whose MNIST test accuracy is "
        "lower than the incumbent's by more than this, whatever the metric.",
    )
    blas_threads: int | None = Field(
        None,
        ge=1,
        description="BLAS threads per worker process; default: CPU cores / worker concurrency.",
    )
    worker_concurrency: int = Field(
        1, ge=1, description="Training processes per worker container (Celery --concurrency)."
    )
    log_level: str = Field("INFO", description="Log level of api and worker.")
    log_format: Literal["json", "text"] = Field(
        "json", description="JSON lines (with job_id on a job's lines) or plain text."
    )

    # Reliability: see README "Failure modes".
    lease_seconds: float = Field(
        10.0, gt=0, description="A job whose worker stops renewing its lease this long is orphaned."
    )
    heartbeat_seconds: float = Field(1.0, gt=0, description="How often a training job renews it.")
    recovery_interval_seconds: float = Field(
        5.0, gt=0, description="How often each worker looks for orphaned jobs."
    )
    max_attempts: int = Field(3, ge=1, description="Deliveries of a job before it fails.")
    checkpoint_seconds: float = Field(
        5.0, ge=0, description="Least time between two checkpoints of a running job."
    )
    job_time_limit_seconds: float = Field(
        6 * 3600, gt=0, description="Soft limit of one job's run; the hard limit is 60 s later."
    )
    max_queued_jobs: int = Field(
        100, ge=1, description="Queued jobs beyond which POST /jobs is 429."
    )
    job_memory_limit_mb: float = Field(
        1280.0,
        gt=0,
        description="POST /jobs refuses (422) a job whose estimated peak memory in its "
        "worker (shared/job_memory.py) is above this many MB.",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body; larger ones get 413."
    )

    # Access.
    api_key: SecretStr | None = Field(
        None, description="When set, state-changing endpoints require it (X-API-Key or Bearer)."
    )
    protect_predict: bool = Field(False, description="Require the API key for predictions too.")
    protect_metrics: bool = Field(
        False, description="Require the API key for GET /metrics too (it is open by default)."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated origins allowed by CORS; none by default."
    )

    @property
    def feedback_root(self) -> Path:
        """Where the corrections live: FEEDBACK_DIR, else beside the models on their volume."""
        return self.feedback_dir or self.model_dir / "feedback"

    @field_validator("mnist_mirrors", "cors_origins", mode="before")
    @classmethod
    def _split_mirrors(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests clear the cache to change the environment."""
    return Settings()
