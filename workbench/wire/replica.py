"""What a replica is started with: the runtime's settings, its labels, port and environment.

Imported inside every replica (the predictor runtime) and by the agent: pydantic only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from workbench.wire.sizes import parse_bytes

RuntimeKind = Literal["docker", "process"]

#: Docker labels every replica container carries.
LABEL_API = "workbench.api"
LABEL_REPLICA = "workbench.replica"
LABEL_SPEC_HASH = "workbench.spec-hash"
LABEL_AGENT = "workbench.agent"
LABEL_REQUEST = "workbench.request"
LABEL_IMAGE_HASH = "workbench.image-hash"

#: The default base image, and the one `workbench image bootstrap` builds where it cannot be pulled.
DEFAULT_BASE_IMAGE = "python:3.11-slim"
BOOTSTRAP_BASE_IMAGE = "workbench/python:3.11-bookworm"

#: Port the predictor runtime listens on inside a container.
CONTAINER_PORT = 8080

#: Environment variable that carries a replica's RuntimeConfig (JSON) into the runtime.
RUNTIME_CONFIG_ENV = "WORKBENCH_RUNTIME_CONFIG"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServingConfig(Strict):
    """How one replica serves requests (the `serving` block of workbench.yaml)."""

    max_concurrency: int = Field(1, ge=1, le=1024)
    max_queue: int = Field(100, ge=0, le=100_000)
    max_batch_size: int = Field(1, ge=1, le=4096)
    batch_timeout: float = Field(0.0, ge=0.0, le=60.0)
    request_timeout: float = Field(60.0, gt=0.0, le=3600.0)
    max_body_bytes: Annotated[int, BeforeValidator(parse_bytes)] = Field(
        10 * 1024 * 1024, ge=1, le=2**31, description="a size: 10Mi, 1Gi, or bytes")
    graceful_shutdown: float = Field(30.0, ge=0.0, le=3600.0)
    startup_timeout: float = Field(600.0, gt=0.0, le=24 * 3600.0)


class RuntimeConfig(Strict):
    """Everything the predictor runtime needs to load and serve one API's predictor."""

    api: str
    project_dir: str
    predictor_path: str = "predictor.py"
    predictor_class: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    serving: ServingConfig = Field(default_factory=lambda: ServingConfig())


