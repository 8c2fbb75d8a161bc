"""What the controller tells the router: the routes (APIs and splitters) and their ready replicas.

The contract between workbench.controller (which knows desired state and replicas) and
workbench.router (the data plane). Plain frozen dataclasses: cheap to compare and swap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.spec.models import RoutingSpec


@dataclass(frozen=True)
class Endpoint:
    """One ready replica the router may send requests to."""

    replica_id: str
    url: str  # e.g. http://127.0.0.1:49153 (through an SSH tunnel for remote hosts, later)
    host: str = "local"
    #: added to every upstream request, health checks included (a direct-mode host's agent token:
    #: `(("authorization", "Bearer …"),)`); they replace same-named client headers
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    ca_cert: str | None = None  # PEM file that verifies an https `url` (default: system CAs)
    #: what the active health check asks (a container API's own health path); None: no active
    #: check (its health port is not the one the router reaches; the agent's readiness stands)
    health_path: str | None = "/readyz"


@dataclass(frozen=True)
class ApiRoute:
    """An API with replicas."""

    name: str
    routing: RoutingSpec = field(default_factory=RoutingSpec)
    max_body_bytes: int = 10 * 1024 * 1024
    scale_to_zero: bool = False  # min_replicas == 0: with no endpoint, wake and wait instead of 503
    api_keys: frozenset[str] = frozenset()  # empty: no key needed (unless the router requires keys)
    #: which API of this name: when it was created. A route of another incarnation (the API was
    #: deleted and created again) starts its counters and latencies afresh.
    incarnation: float = 0.0
    models: tuple[str, ...] = ()  # the model names /openai/v1 routes here (openai.models)


@dataclass(frozen=True)
class SplitRoute:
    """A traffic splitter: picks one target API by weight; an optional shadow gets a copy."""

    name: str
    targets: tuple[tuple[str, float], ...]  # (api name, weight); weights add up to 100
    shadow: str | None = None
    api_keys: frozenset[str] = frozenset()
    models: tuple[str, ...] = ()  # the model names /openai/v1 routes here (openai.models)
    incarnation: float = 0.0


@dataclass(frozen=True)
class ApiTraffic:
    """Request statistics for one API over the router's recent window (for `workbench get`)."""

    requests_per_second: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    status_2xx: int = 0  # totals since the router started
    status_4xx: int = 0
    status_5xx: int = 0
    in_flight: int = 0
    retries: int = 0
    ejections: int = 0
    replica_in_flight: dict[str, int] = field(default_factory=dict)
    ejected: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplicaRequestCounts:
    """What the router sent one replica so far (for metering; counts only grow while the replica
    stays in its pool)."""

    api: str
    host: str
    replica_id: str
    requests: int
    in_flight: int
