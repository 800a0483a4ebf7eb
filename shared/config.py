"""Every knob of the service, read once from the environment.

Each field is overridable by the upper-case environment variable of the same
name (``REDIS_URL``, ``MODEL_DIR``, ...). The README's settings table mirrors
this class; keep them together.
"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

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
    blas_threads: int | None = Field(
        None,
        ge=1,
        description="BLAS threads per worker process; default: CPU cores / worker concurrency.",
    )
    worker_concurrency: int = Field(
        1, ge=1, description="Training processes per worker container (Celery --concurrency)."
    )
    log_level: str = Field("INFO", description="Log level of api and worker.")

    @field_validator("mnist_mirrors", mode="before")
    @classmethod
    def _split_mirrors(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests clear the cache to change the environment."""
    return Settings()
