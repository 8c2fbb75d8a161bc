"""The agent's API bodies: replicas, host facts, GPU reports, build progress.

Shared by the agent (on every box) and its clients on the workstation: pydantic only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from workbench.wire.model_cache import ModelMount
from workbench.wire.replica import HealthCheck, RuntimeConfig, RuntimeKind, ServerConfig, Strict

#: How the predictor runtime is probed: its /readyz on the serving port.
PREDICTOR_HEALTH = HealthCheck()


class ReplicaRequest(Strict):
    """What a client asks an agent to run: one replica of one API — a predictor (workbench's
    runtime, `runtime_config`) or a container API's own server (`server`); exactly one is set.
    The rest (artifact, env, compute, GPUs) means the same for both."""

    api: str
    spec_hash: str
    runtime: RuntimeKind
    artifact: str = Field(description="docker image (tag or id), or the process runtime's bundle id")
    runtime_config: RuntimeConfig | None = None
    server: ServerConfig | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cpu: float | None = None
    mem_bytes: int | None = None
    gpu_ids: list[str] = Field(default_factory=list)
    #: Fractional sharing (`compute.gpu: 0.5`): the share of each GPU in gpu_ids this replica
    #: uses; None means whole GPUs, never shared.
    gpu_share: float | None = Field(None, gt=0, lt=1)
    #: Model versions in the host's cache the replica sees read-only; None (left out of the request
    #: when there are none, so an agent of an earlier version reads it as before).
    models: list[ModelMount] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ReplicaRequest:
        if (self.runtime_config is None) == (self.server is None):
            raise ValueError("give exactly one of runtime_config (a predictor) and server (a container API)")
        mounts = [m.mount for m in self.models or []]
        if len(set(mounts)) != len(mounts):
            raise ValueError("two models share one mount path")
        return self

    @property
    def health(self) -> HealthCheck:
        return self.server.health if self.server is not None else PREDICTOR_HEALTH

    @property
    def startup_timeout(self) -> float:
        if self.server is not None:
            return self.server.startup_timeout
        assert self.runtime_config is not None
        return self.runtime_config.serving.startup_timeout

    @property
    def graceful_shutdown(self) -> float:
        if self.server is not None:
            return self.server.graceful_shutdown
        assert self.runtime_config is not None
        return self.runtime_config.serving.graceful_shutdown


class ReplicaState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ReplicaInfo(BaseModel):
    """An agent's report on one replica."""

    id: str
    api: str
    spec_hash: str
    runtime: RuntimeKind
    artifact: str
    state: ReplicaState
    url: str | None = None
    restarts: int = 0
    created_at: float
    started_at: float | None = None
    message: str | None = None
    log_tail: list[str] = Field(default_factory=list)
    pid: int | None = None
    container_id: str | None = None
    gpu_ids: list[str] = Field(default_factory=list)
    gpu_share: float | None = None  # fractional sharing, see ReplicaRequest.gpu_share


class DockerStatus(BaseModel):
    available: bool
    version: str | None = None
    error: str | None = None


class GpuProcess(BaseModel):
    """A process using a GPU, and the replica it belongs to when it is one of ours."""

    pid: int
    used_memory_bytes: int | None = None
    replica_id: str | None = None
    api: str | None = None
    container_id: str | None = None


class GpuInfo(BaseModel):
    """One GPU's current state; None means N/A (unsupported, or the GPU stopped answering)."""

    index: int
    uuid: str | None = None
    name: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    utilization_gpu: float | None = None  # percent
    utilization_memory: float | None = None  # percent
    temperature_c: float | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    fan_percent: float | None = None
    clock_sm_mhz: int | None = None
    clock_memory_mhz: int | None = None
    mig_mode: bool | None = None
    processes: list[GpuProcess] = Field(default_factory=list)
    allocated_to: list[str] = Field(default_factory=list)  # replica ids the agent pinned here
    #: How much of this GPU is allocated: 1.0 per whole-GPU replica, the share of each sharing one.
    allocated_share: float = 0.0
    error: str | None = None  # e.g. "GPU is lost" — the other values are then N/A


class GpuSample(BaseModel):
    """One point of a GPU's history (the agent keeps ~10 minutes at 1 Hz)."""

    at: float
    utilization_gpu: float | None = None
    memory_used_bytes: int | None = None
    temperature_c: float | None = None
    power_draw_w: float | None = None


class GpuReport(BaseModel):
    """GET /v1/gpus on an agent: current values, history, and what the probe could tell."""

    source: Literal["nvml", "fixture", "none"]
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_driver_version: str | None = None
    note: str | None = None  # e.g. "NVML not found: no NVIDIA driver" — never an error
    gpus: list[GpuInfo] = Field(default_factory=list)
    history: dict[int, list[GpuSample]] = Field(default_factory=dict)  # by GPU index


class HostInfo(BaseModel):
    hostname: str
    os: str
    arch: str
    python: str
    agent_version: str
    cpu_count: int
    mem_total_bytes: int
    mem_available_bytes: int
    disk_free_bytes: int
    docker: DockerStatus
    runtimes: list[RuntimeKind]
    gpus: list[GpuInfo] = Field(default_factory=list)
    gpu_driver_version: str | None = None
    gpu_note: str | None = None
    load_1m: float | None = None  # the 1-minute load average (None: not reported)


class BuildEvent(BaseModel):
    """One line of an agent's streamed build progress (NDJSON)."""

    kind: Literal["step", "log", "done", "error"]
    message: str = ""
    step: int | None = None
    total_steps: int | None = None
    artifact: str | None = None
    cached: bool = False
    #: a pull's (or a found image's) id, which goes into a container API's spec hash
    image_id: str | None = None


#: the last second a log line's time can name (9999-12-31T23:59:59Z): the bound of every `since`
LATEST_LOG_TIME = 253402300799.0


class StoredArtifact(BaseModel):
    """GET /v1/images: one API image (Docker) or bundle (process runtime) built on this host."""

    runtime: RuntimeKind
    artifact: str = Field(description="the image tag, or the bundle's name")
    api: str | None = Field(None, description="the API it was built for")
    created_at: float | None = None
    size_bytes: int | None = None
    in_use: bool = Field(False, description="a replica on this host runs it")


class RemovedArtifact(BaseModel):
    """DELETE /v1/images: what removing one freed."""

    runtime: RuntimeKind
    artifact: str
    freed_bytes: int | None = None
