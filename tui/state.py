"""What the app knows between polls.

Two halves, one per thread. :class:`StateTracker` lives in the poll worker: it owns the
histories behind the sparklines and turns each poll into a :class:`FleetState`, an immutable
snapshot that the UI thread reads (screens, forms, the command palette) without locks. A new
snapshot replaces the old one in one assignment, so the UI never sees a half-applied poll.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from workbench.tui.backend import PollResult

from workbench.wire.agent import GpuInfo, GpuReport
from workbench.wire.control import ApiDetail, ApiSummary, CostReport, HostBody

HISTORY = 120  # points kept per sparkline (one per poll or per GPU sample, about 2 minutes)

GpuKey = tuple[str, int]  # (host name, GPU index)


@dataclass(frozen=True)
class FleetState:
    """One poll's view of the fleet, never changed after it is made."""

    hosts: tuple[HostBody, ...] = ()
    apis: tuple[ApiSummary, ...] = ()
    details: Mapping[str, ApiDetail] = field(default_factory=dict)
    rps: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    gpu_util: Mapping[GpuKey, tuple[float | None, ...]] = field(default_factory=dict)
    gpu_reports: Mapping[str, GpuReport] = field(default_factory=dict)  # the freshest, by host
    gpu_errors: Mapping[str, str] = field(default_factory=dict)  # hosts whose GPUs were not read
    cost: CostReport | None = None  # spend per host and API (refreshed every few polls)
    last_ok: float | None = None
    error: str | None = None
    error_since: float | None = None
    polls: int = 0

    @property
    def loaded(self) -> bool:
        return self.last_ok is not None

    def gpus_of(self, host: HostBody) -> list[GpuInfo]:
        """The host's GPUs: from this poll's GPU report when there is one (the fleet's copy of
        the host info is refreshed less often), else from the host info."""
        report = self.gpu_reports.get(host.name)
        if report is not None and report.gpus:
            return list(report.gpus)
        return list(host.info.gpus) if host.info else []

    def gpus_of_replica(self, host: str, replica_id: str) -> list[int]:
        for body in self.hosts:
            if body.name == host:
                found = [g.index for g in self.gpus_of(body)
                         if replica_id in g.allocated_to
                         or any(p.replica_id == replica_id for p in g.processes)]
                if found:
                    return found
        for detail in self.details.values():  # what the controller pinned it to
            for replica in detail.replica_list:
                if replica.id == replica_id:
                    return [int(g) for g in replica.gpu_ids if g.isdigit()]
        return []


class Bin:
    """What the UI thread let go of, freed later by the poll worker.

    Dropping the last reference to a poll's worth of models and rows deallocates tens of thousands
    of objects (~10 ms here); on the UI thread that is a stutter every second. The UI puts old
    snapshots and rows here; the worker empties the bin at the start of the next poll.
    """

    def __init__(self) -> None:
        self._items: list[object] = []

    def put(self, *items: object) -> None:
        self._items.extend(items)  # one bytecode-level call: safe against the worker's swap

    def empty(self) -> None:
        items, self._items = self._items, []
        items.clear()


later = Bin()


class StateTracker:
    """The poll worker's side: histories, and the GPU samples already seen per host (so each
    poll asks an agent only for the samples taken since)."""

    def __init__(self) -> None:
        self.state = FleetState()
        self._details: dict[str, ApiDetail] = {}
        self._rps: dict[str, deque[float]] = {}
        self._gpu: dict[GpuKey, deque[float | None]] = {}
        self._seen: dict[str, float] = {}  # host -> time of the newest GPU sample taken in

    def gpu_since(self) -> dict[str, float]:
        """Per host, the Unix time after which the next poll wants GPU samples."""
        return dict(self._seen)

    def apply(self, result: PollResult) -> FleetState:
        names = {api.name for api in result.apis}
        if result.detail is not None:
            self._details[result.detail.name] = result.detail
        for name in [n for n in self._details if n not in names]:
            del self._details[name]
        for api in result.apis:
            self._rps.setdefault(api.name, deque(maxlen=HISTORY)).append(api.traffic.requests_per_second)
        for name in [n for n in self._rps if n not in names]:
            del self._rps[name]
        fresh = FleetState(hosts=tuple(result.hosts), apis=tuple(result.apis), gpu_reports=dict(result.gpus),
                           gpu_errors=dict(result.gpu_errors), cost=result.cost or self.state.cost)
        self._take_gpu_samples(result, fresh)
        self.state = replace(
            fresh, details=dict(self._details), last_ok=result.at, polls=self.state.polls + 1,
            rps={name: tuple(series) for name, series in self._rps.items()},
            gpu_util={key: tuple(series) for key, series in self._gpu.items()})
        return self.state

    def _take_gpu_samples(self, result: PollResult, fresh: FleetState) -> None:
        present: set[GpuKey] = set()
        for host in result.hosts:
            report = result.gpus.get(host.name)
            for gpu in fresh.gpus_of(host):
                key = (host.name, gpu.index)
                present.add(key)
                series = self._gpu.setdefault(key, deque(maxlen=HISTORY))
                if report is not None:  # the samples taken since the last poll (maybe none yet)
                    samples = report.history.get(gpu.index, [])
                    series.extend(s.utilization_gpu for s in samples[-HISTORY:])
                    if samples:
                        self._seen[host.name] = max(self._seen.get(host.name, 0.0), samples[-1].at)
                else:  # no report (unreachable, or the endpoint failed): the host info's value
                    series.append(gpu.utilization_gpu if host.state == "ready" else None)
        for key in [k for k in self._gpu if k not in present]:
            del self._gpu[key]
        hosts = {host.name for host in result.hosts}
        for name in [n for n in self._seen if n not in hosts]:
            del self._seen[name]

    def fail(self, message: str) -> FleetState:
        self.state = replace(self.state, error=message,
                             error_since=self.state.error_since or time.time())
        return self.state
