"""The control API's request and response bodies (shared by the controller, the CLI and the TUI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.wire.agent import BuildEvent, GpuReport, HostInfo, ReplicaState
from workbench.wire.replica import RuntimeKind

ApiStatus = Literal["live", "updating", "starting", "error", "scaled_to_zero", "pending", "splitter"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployRequest(_Body):
    """POST /v1/deployments: deploy what a workbench.yaml on this machine describes."""

    path: str = Field(description="project folder or workbench.yaml, on the controller's machine")
    apis: list[str] | None = Field(None, description="only these APIs of the file")
    runtime: RuntimeKind | None = None
    offline: bool | None = None


class DeployEvent(BaseModel):
    """One NDJSON line of a deployment's progress; the stream ends with one done or error."""

    kind: Literal["log", "build", "rollout", "done", "error"]
    api: str | None = None
    message: str = ""
    build: BuildEvent | None = None
    log_tail: list[str] = Field(default_factory=list)
    results: list[DeployResultBody] = Field(default_factory=list)


class DeployResultBody(BaseModel):
    name: str
    kind: Literal["api", "traffic_splitter"] = "api"
    runtime: RuntimeKind | None = None
    artifact: str | None = None
    built: bool = False
    unchanged: bool = False
    replaced: int = 0
    endpoint: str


class ScaleRequest(_Body):
    """POST /v1/apis/{name}/scale: a fixed count, or new autoscaling bounds."""

    replicas: int | None = Field(None, ge=0, le=1000)
    min_replicas: int | None = Field(None, ge=0, le=1000)
    max_replicas: int | None = Field(None, ge=1, le=1000)


class ReplicaCounts(BaseModel):
    requested: int = 0
    ready: int = 0
    up_to_date: int = 0
    failed: int = 0


class TrafficBody(BaseModel):
    requests_per_second: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    in_flight: int = 0
    retries: int = 0
    ejections: int = 0


class ApiSummary(BaseModel):
    name: str
    kind: Literal["api", "traffic_splitter"] = "api"
    status: ApiStatus
    replicas: ReplicaCounts = Field(default_factory=ReplicaCounts)
    runtime: RuntimeKind | None = None
    artifact: str | None = None
    spec_hash: str | None = None
    updated_at: float
    endpoint: str
    traffic: TrafficBody = Field(default_factory=TrafficBody)
    autoscaling: dict[str, Any] | None = None  # min/max/target when autoscaled
    split: list[dict[str, Any]] = Field(default_factory=list)  # for traffic splitters
    #: Why the API is not as asked, e.g. "pending: no host has room for a replica: box: 0 GPUs free …"
    message: str | None = None


class ReplicaBody(BaseModel):
    id: str
    host: str
    state: ReplicaState
    url: str | None = None
    in_flight: int = 0
    restarts: int = 0
    message: str | None = None
    spec_hash: str
    up_to_date: bool
    ejected: bool = False
    created_at: float
    log_tail: list[str] = Field(default_factory=list)
    gpu_ids: list[str] = Field(default_factory=list)  # the GPUs pinned to this replica
    gpu_share: float | None = None  # the fraction of each GPU it has, when it shares them
    metric: float | None = None  # autoscaling.metric as last scraped from it
    metric_problem: str | None = None  # why that could not be read


class EventBody(BaseModel):
    at: float
    api: str | None = None
    kind: str  # deploy, rollout, scale, autoscale, replica, host, error …
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class ApiDetail(ApiSummary):
    replica_list: list[ReplicaBody] = Field(default_factory=list)
    metric: str | None = None  # the scraped gauge the API scales on (autoscaling.metric)
    events: list[EventBody] = Field(default_factory=list)


class HostBody(BaseModel):
    name: str
    address: str
    kind: Literal["local", "ssh", "direct"] = "local"
    agent_version: str | None = None
    state: Literal["ready", "unreachable", "connecting"]
    last_seen: float | None = None
    info: HostInfo | None = None
    replicas: int = 0
    message: str | None = None


class AddHostRequest(_Body):
    """POST /v1/hosts: register a box reachable over SSH and install the agent on it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    target: str = Field(description="[user@]host[:port], or a Host alias from ~/.ssh/config")
    identity: str | None = Field(None, description="private key file (-i)")
    jump: str | None = Field(None, description="jump host ([user@]host[:port])")
    trust: str | None = Field(None, description="SHA256:… fingerprint the user confirmed")
    online: bool = Field(False, description="let the box install from its own package index")
    direct: bool = Field(False, description="reach the agent over TCP with its token (LAN/VPN)")
    port: int | None = Field(None, ge=1, le=65535, description="the agent's port on the box")
    token: str | None = Field(None, repr=False, max_length=1024,
                              description="direct: the agent's bearer token (a 0600 file, never the DB)")
    ca_cert: str | None = Field(None, description="direct: PEM file verifying the agent's TLS certificate")


class HostEvent(BaseModel):
    """One NDJSON line of adding/upgrading/removing a host; ends with one done or error."""

    kind: Literal["step", "preflight", "trust_required", "log", "done", "error"]
    host: str
    message: str = ""
    step: str | None = None
    checks: list[dict[str, Any]] = Field(default_factory=list)  # preflight: name, status, detail, fix
    fingerprint: str | None = None  # trust_required: SHA256:… to show the user
    key_type: str | None = None
    result: HostBody | None = None


class RemovedHostBody(BaseModel):
    """DELETE /v1/hosts/{name}: what happened to its replicas."""

    name: str
    moved_replicas: int = 0  # rescheduled on other hosts before it left
    deleted_replicas: int = 0  # nowhere else to go: stopped
    purged: bool = False


class DeletedBody(BaseModel):
    name: str
    deleted_replicas: int


DeployEvent.model_rebuild()
HostEvent.model_rebuild()


class FleetGpusBody(BaseModel):
    """GET /v1/gpus: every ready GPU host's report, read from the agents in parallel."""

    reports: dict[str, GpuReport] = Field(default_factory=dict)  # by host name
    errors: dict[str, str] = Field(default_factory=dict)  # hosts whose agent did not answer
