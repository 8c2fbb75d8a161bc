"""The control API's request and response bodies (shared by the controller, the CLI and the TUI)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from workbench.wire.agent import BuildEvent, GpuReport, HostInfo, ReplicaState
from workbench.wire.model_cache import CacheReport
from workbench.wire.replica import RuntimeKind
from workbench.wire.units import (
    DEFAULT_CURRENCY,
    parse_currency,
    parse_duration,
    parse_price,
    parse_threshold,
)

#: A price per hour (Decimal; JSON: a string such as "2.40"), checked by wire.units.parse_price.
Price = Annotated[Decimal, BeforeValidator(parse_price)]
Currency = Annotated[str, BeforeValidator(parse_currency)]
#: Seconds; the JSON may say "30m" or 1800.
Duration = Annotated[float, BeforeValidator(parse_duration)]
Threshold = Annotated[float, BeforeValidator(parse_threshold)]

DEFAULT_IDLE_AFTER = 30 * 60.0  # seconds (dstack's idle_duration, SkyPilot's autostop idle time)
DEFAULT_UTIL_THRESHOLD = 5.0  # percent (dstack's utilization_policy.min_gpu_utilization)

ApiStatus = Literal["live", "updating", "starting", "error", "scaled-to-zero", "pending", "splitter"]


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
    #: what the deploy changed that the user did not ask for now: "replicas 2 → 1, as workbench.yaml says"
    notes: list[str] = Field(default_factory=list)


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
    #: Why the API is not as asked: "pending (no GPU): no host has room for a replica: box: 0 GPUs free …"
    message: str | None = None
    #: Replicas asked for that no host has room for while others serve, e.g. "1 pending: no CPU"
    note: str | None = None


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


class IdleRuleBody(BaseModel):
    """What happens when a host sits idle (`workbench host idle NAME ...`)."""

    host: str
    after_seconds: float = DEFAULT_IDLE_AFTER
    util_threshold: float = DEFAULT_UTIL_THRESHOLD
    command: str | None = None  # the user's own command line, split with shlex (never a shell)
    argv: list[str] = Field(default_factory=list)
    cwd: str | None = None
    remove: bool = False  # drain and remove the host before the command runs
    created_at: float | None = None


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
    price: Decimal | None = None  # per hour; None: not priced (the local host until given one)
    currency: str = DEFAULT_CURRENCY
    #: since when no request reached the host's replicas and every GPU stayed below the threshold
    quiet_since: float | None = None
    idle: bool = False  # quiet for the idle rule's `after` (or the default 30 minutes)
    idle_rule: IdleRuleBody | None = None


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
    price: Price | None = Field(None, description="what the box costs per hour, e.g. 2.40")
    currency: Currency | None = Field(None, description="ISO 4217 code of the price (default USD)")
    cache_limit: int | None = Field(None, gt=0, description="the most its model cache may hold, in bytes")


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


class HostSettingsRequest(_Body):
    """PATCH /v1/hosts/{name}: change a host's settings; what is left out stays as it is."""

    price: Price | None = Field(None, description="per hour, e.g. 2.40; 0 for a free machine")
    currency: Currency | None = Field(None, description="ISO 4217 code (default: unchanged, else USD)")
    cache_limit: int | None = Field(None, ge=0, description="bytes its model cache may hold; 0: no limit")


class IdleRuleRequest(_Body):
    """PUT /v1/hosts/{name}/idle: flag the host after `after` idle, and optionally act then."""

    after: Duration = Field(DEFAULT_IDLE_AFTER, description="idle this long (30m, 1h, or seconds)")
    util_threshold: Threshold = Field(DEFAULT_UTIL_THRESHOLD, description="GPU busy at or above (%)")
    command: str | None = Field(None, max_length=4096,
                                description="a command line run on the workstation once per idle "
                                            "period (split with shlex, no shell)")
    cwd: str | None = Field(None, description="the folder the command runs in (the CLI's own)")
    remove: bool = Field(False, description="drain and remove the host first")
    dry_run: bool = Field(False, description="say what would happen; change nothing")


class IdlePlanBody(BaseModel):
    """The answer to PUT /v1/hosts/{name}/idle: the rule, and what it would do now."""

    rule: IdleRuleBody
    saved: bool  # False for a dry run
    env: dict[str, str] = Field(default_factory=dict)  # added to the command's environment
    steps: list[str] = Field(default_factory=list)  # what happens once the host is idle
    quiet_since: float | None = None
    idle: bool = False


class ModelPullRequest(_Body):
    """POST /v1/models/pulls: put a model's version in a host's cache before any API needs it."""

    source: str = Field(description="an absolute path on the controller's machine, hf://org/name[@rev] or "
                        "https://…")
    host: str
    name: str | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    sha256: str | None = None


class HostModelsBody(BaseModel):
    """One host's model cache, as GET /v1/models lists it."""

    host: str
    cache: CacheReport | None = None
    error: str | None = None  # the host's agent did not answer


class RemovedModel(BaseModel):
    host: str
    id: str
    name: str


class ModelsRemovedBody(BaseModel):
    """DELETE /v1/models/{ref}: the versions removed, and the hosts that kept theirs (and why)."""

    removed: list[RemovedModel] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)  # host -> why


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


class PruneRequest(_Body):
    """POST /v1/images/prune: remove API images and bundles no deployed version needs."""

    keep: int = Field(2, ge=1, le=100,
                      description="versions of each deployed API to keep (the current among them)")
    dry_run: bool = Field(False, description="say what would be removed; remove nothing")


class PrunedImage(BaseModel):
    host: str
    runtime: RuntimeKind
    artifact: str
    api: str | None = None
    size_bytes: int | None = None
    why: str  # "API deleted", "older than the last 2 versions"


class PruneBody(BaseModel):
    removed: list[PrunedImage] = Field(default_factory=list)  # or, with dry_run, what would be
    kept: int = 0
    errors: dict[str, str] = Field(default_factory=dict)  # hosts that did not answer, or refused one
# -- cost -------------------------------------------------------------------------------------------
class HostCostBody(BaseModel):
    """One host over a cost window. Money is exact Decimal (rounded to micro-units here)."""

    name: str
    price: Decimal | None = None  # per hour now (None: not priced)
    currency: str = DEFAULT_CURRENCY
    in_fleet: bool = True
    hours: float = 0.0  # in the fleet during the window
    priced_hours: float = 0.0
    spend: Decimal | None = None  # None: never priced in the window (left out of totals)
    unallocated_spend: Decimal | None = None  # the share nobody reserved
    gpus: int = 0
    gpu_hours: float = 0.0  # GPUs x hours in the fleet
    gpu_busy_hours: float = 0.0  # utilization at/above the threshold, or memory held by a replica
    gpu_idle_hours: float = 0.0
    gpu_reserved_hours: float = 0.0  # reserved by replicas
    gpu_unallocated_hours: float = 0.0  # reserved by nobody
    cpu_reserved_core_hours: float = 0.0
    cpu_busy_core_hours: float | None = None  # from the agent's load average, when it reports one
    requests: int = 0
    idle: bool = False
    quiet_since: float | None = None


class ApiHostCostBody(BaseModel):
    host: str
    currency: str = DEFAULT_CURRENCY
    replica_hours: float = 0.0
    gpu_hours: float = 0.0  # reserved
    spend: Decimal | None = None
    requests: int = 0


class ApiCostBody(BaseModel):
    """One API's share of its hosts' spend, by what its replicas reserved x time."""

    name: str
    requests: int = 0
    replica_hours: float = 0.0
    spend: dict[str, Decimal] = Field(default_factory=dict)  # by currency
    per_1000_requests: dict[str, Decimal] = Field(default_factory=dict)
    hosts: list[ApiHostCostBody] = Field(default_factory=list)


class CostReport(BaseModel):
    """GET /v1/cost: spend per host and per API since a time, and the fleet's total."""

    since: float
    until: float
    hosts: list[HostCostBody] = Field(default_factory=list)
    apis: list[ApiCostBody] = Field(default_factory=list)
    total: dict[str, Decimal] = Field(default_factory=dict)  # priced hosts, by currency
    unallocated: dict[str, Decimal] = Field(default_factory=dict)
    per_hour: dict[str, Decimal] = Field(default_factory=dict)  # the fleet's price now, by currency
    unpriced: list[str] = Field(default_factory=list)  # hosts in the window without a price
