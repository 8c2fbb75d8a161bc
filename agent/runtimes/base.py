"""The runtime interface: how the agent runs, watches, stops and builds for replicas."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from workbench.wire.agent import BuildEvent, ReplicaRequest
from workbench.wire.errors import NotFound, Unavailable
from workbench.wire.replica import RuntimeKind

_ARTIFACT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,254}$")


def check_artifact_name(name: str) -> str | None:
    """Return why `name` is not a usable artifact name, or None when it is fine."""
    if not _ARTIFACT_RE.match(name) or ".." in name:
        return f"invalid artifact name {name!r}: use letters, digits and . _ - : / @"
    return None


@dataclass(frozen=True)
class LogQuery:
    """Which log lines, and how: only those written at or after `since` (a Unix time), each
    led by its RFC 3339 time when `timestamps`."""

    since: float | None = None
    timestamps: bool = False


@dataclass
class Handle:
    """A runtime's reference to one replica; mutable so the runtime can refresh url/pid."""

    replica_id: str
    request: ReplicaRequest
    created_at: float
    started_at: float | None = None
    url: str | None = None
    #: where readiness is asked (the request's health path on its health port)
    health_url: str | None = None
    pid: int | None = None
    container_id: str | None = None
    restarts: int = 0
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class RunStatus:
    """Whether a replica's process/container runs, and how it ended when it does not."""

    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    #: Restarts done by someone else (Docker's restart policy) since the agent last looked.
    external_restarts: int = 0
    detail: str | None = None


class ArtifactMissing(NotFound):
    """The image or bundle a replica needs does not exist on this host."""


class RuntimeUnavailable(Unavailable):
    """The runtime cannot be used now (e.g. no Docker daemon answers)."""


class Runtime(abc.ABC):
    """One way of running replicas. Methods block; callers run them in threads."""

    kind: RuntimeKind

    @abc.abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when the runtime can be used, else why not."""

    @abc.abstractmethod
    def artifact_exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def build(self, context_path: str, artifact: str) -> Iterator[BuildEvent]:
        """Build `artifact` from a gzip'd tar context; ends with one `done` or `error` event."""

    @abc.abstractmethod
    def create(self, replica_id: str, request: ReplicaRequest, created_at: float) -> Handle:
        """Start a new replica; raises ArtifactMissing / RuntimeUnavailable."""

    @abc.abstractmethod
    def adopt(self) -> list[Handle]:
        """Find the replicas a previous agent on this home left running (or dead)."""

    @abc.abstractmethod
    def status(self, handle: Handle) -> RunStatus: ...

    @abc.abstractmethod
    def restart(self, handle: Handle) -> None:
        """Start the replica again after it exited (same id; url may change)."""

    @abc.abstractmethod
    def stop(self, handle: Handle, grace: float) -> None:
        """SIGTERM, wait up to `grace` seconds, then kill."""

    @abc.abstractmethod
    def remove(self, handle: Handle) -> None:
        """Forget the replica for good (container, meta and log files)."""

    @abc.abstractmethod
    def log_tail(self, handle: Handle, lines: int, query: LogQuery | None = None) -> list[str]:
        """The last `lines` lines (of those the query selects)."""

    @abc.abstractmethod
    def follow_logs(self, handle: Handle, tail: int, query: LogQuery | None = None) -> LogFollower:
        """A blocking stream of log bytes that starts with the last `tail` lines."""

    def run_log_tail(self, handle: Handle, lines: int) -> list[str]:
        """The last `lines` of the current (or last) run only, not of the runs before it."""
        return self.log_tail(handle, lines)

    def pull(self, image: str) -> Iterator[BuildEvent]:
        """Make sure `image` is here, pulling it when it is not; ends with one done or error."""
        yield BuildEvent(kind="error", message=f"the {self.kind} runtime runs no images")

    def listening(self, handle: Handle) -> Listening | None:
        """Where a container API's server listens now and where it should; None when that cannot
        be told (or for a predictor, which always listens where the runtime says)."""
        return None


@dataclass(frozen=True)
class Listening:
    """The TCP ports a replica's server listens on, in its own network (the container's)."""

    expected: int  # where it should listen
    expected_by: str  # what says so: "container.port", or "$PORT" on the process runtime
    ports: frozenset[int]  # where it listens now
    address: str | None  # where the agent reaches those ports (the container's IP), if it can

    @property
    def elsewhere(self) -> list[int]:
        """The other ports, when it listens somewhere but not where it should."""
        return [] if self.expected in self.ports else sorted(self.ports)


class LogFollower(abc.ABC):
    """An iterator of log chunks that another thread can close to end it."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[bytes]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


def describe_exit(code: int | None, oom: bool = False) -> str:
    """A human message for a replica's exit code."""
    if code is None:
        return "exited (exit code unknown)"
    if oom or code in (137, -9):
        return f"exited with code {code}: killed (SIGKILL/OOM)"
    if code == 3:
        return "exited with code 3: predictor failed to load"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exited with code {code}"
