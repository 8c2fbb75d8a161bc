"""What a replica is started with: the runtime's settings, its labels, port and environment.

A predictor API's replica runs workbench's runtime with a `RuntimeConfig`; a container API's runs
its own server, described by a `ServerConfig`. Both are probed by a `HealthCheck`.

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

#: Port the predictor runtime listens on inside a container (and a container API's default).
CONTAINER_PORT = 8080

#: The environment variable that tells a container API's server its port.
PORT_ENV = "PORT"

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




class HealthCheck(Strict):
    """A replica is ready while `GET path` on `port` answers 2xx within `timeout`, asked every
    `period` seconds."""

    path: str = "/readyz"
    #: the port inside the container (the process runtime: on the host); None: the serving port
    port: int | None = Field(None, ge=1, le=65535)
    timeout: float = Field(1.0, gt=0, le=600)
    period: float = Field(1.0, ge=1, le=3600)


class ServerConfig(Strict):
    """A container API's server: what runs, where it listens, how it is probed.

    Docker: `command` replaces the image's entrypoint and `args` its CMD (as Kubernetes does);
    the process runtime runs `command + args` on the host. `$PORT` / `${PORT}` in either (and in
    the values of the request's env) is the replica's port, also set as the PORT environment
    variable."""

    command: list[str] | None = None
    args: list[str] | None = None
    #: the port the server listens on inside its container; the process runtime picks one per
    #: replica and passes it as $PORT
    port: int = Field(CONTAINER_PORT, ge=1, le=65535)
    shm_size: int | None = Field(None, gt=0)
    health: HealthCheck = Field(default_factory=lambda: HealthCheck(path="/health"))
    startup_timeout: float = Field(600.0, gt=0.0, le=24 * 3600.0)
    graceful_shutdown: float = Field(30.0, ge=0.0, le=3600.0)

    def argv(self, port: int) -> list[str]:
        """command + args with $PORT and ${PORT} replaced by `port` (nothing else is expanded)."""
        return [expand_port(item, port) for item in [*(self.command or []), *(self.args or [])]]


def expand_port(text: str, port: int) -> str:
    return text.replace("${" + PORT_ENV + "}", str(port)).replace("$" + PORT_ENV, str(port))
