"""The sidecar's configuration: read once from the environment, typed and validated.

Names and defaults are the Go sidecar's (kserve/modelmesh-runtime-adapter), so a
ServingRuntime that worked with it works unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = Annotated[int, Field(ge=0, le=65535)]

# ModelMesh refuses a runtime whose capacity is below this (see CONTEXT section 2).
MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every environment variable the sidecar reads, with its default."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    adapter_port: Port = 8085
    runtime_port: Port = 8001
    runtime_host: str = "localhost"
    container_mem_req_bytes: Annotated[int, Field(ge=0)]
    mem_buffer_bytes: Annotated[int, Field(ge=0)] = 268435456
    loading_concurrency: Annotated[int, Field(ge=1)] = 1
    loadtime_timeout: Annotated[int, Field(ge=100)] = 30000
    default_modelsize: Annotated[int, Field(ge=8192)] = 1000000
    modelsize_multiplier: Annotated[float, Field(gt=0)] = 1.25
    runtime_version: str = "v1"
    limit_per_model_concurrency: Annotated[int, Field(ge=0)] = 0
    root_model_dir: Path = Path("/models")
    storage_config_dir: Path = Path("/storage-config")
    pvc_mounts_dir: Path = Path("/pvc_mounts")
    # Accepted for compatibility: this sidecar always pulls in its own process.
    use_embedded_puller: bool = False
    log_level: str = "INFO"
    # A model that arrives as one archive expands within these bounds (zip and tar bombs).
    archive_max_bytes: Annotated[int, Field(ge=1)] = 64 * 1024**3
    archive_max_members: Annotated[int, Field(ge=1)] = 100_000
    metrics_port: Port = 8087  # 0 turns the Prometheus endpoint off

    @model_validator(mode="after")
    def _capacity_positive(self) -> Settings:
        if self.capacity_bytes <= 0:
            raise ValueError(
                f"CONTAINER_MEM_REQ_BYTES ({self.container_mem_req_bytes}) must be larger than "
                f"MEM_BUFFER_BYTES ({self.mem_buffer_bytes})"
            )
        return self

    @property
    def capacity_bytes(self) -> int:
        """Memory ModelMesh may fill with models."""
        return self.container_mem_req_bytes - self.mem_buffer_bytes

    @property
    def runtime_address(self) -> str:
        return f"{self.runtime_host}:{self.runtime_port}"

    @property
    def min_capacity_for_modelmesh(self) -> int:
        """Below this ModelMesh refuses the pod."""
        default = self.default_modelsize
        return max(2 * default, min(512 * MIB, 10 * default))


class ConfigError(Exception):
    """A missing or malformed environment variable, as one sentence naming it."""


def load_settings() -> Settings:
    """Read the environment, or raise ConfigError naming the first bad variable."""
    try:
        return Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "_".join(str(part) for part in error["loc"]).upper()
        if error["type"] == "missing":
            raise ConfigError(f"{name} is required but not set") from None
        if not name:  # a model-level check: its message already names the variables
            raise ConfigError(str(error["msg"]).removeprefix("Value error, ")) from None
        raise ConfigError(
            f"{name} is invalid: {error['msg']} (got {error.get('input')!r})"
        ) from None
