"""What the app knows between polls: the last answer, the histories behind sparklines, the error."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from workbench.tui.backend import PollResult

from workbench.controller.schemas import ApiDetail, ApiSummary, HostBody
from workbench.models import GpuInfo, GpuReport

HISTORY = 120  # points kept per sparkline


@dataclass
class FleetState:
    hosts: list[HostBody] = field(default_factory=list)
    apis: list[ApiSummary] = field(default_factory=list)
    details: dict[str, ApiDetail] = field(default_factory=dict)
    rps: dict[str, deque[float]] = field(default_factory=dict)
    gpu_util: dict[tuple[str, int], deque[float | None]] = field(default_factory=dict)
    gpu_reports: dict[str, GpuReport] = field(default_factory=dict)  # the freshest, by host
    last_ok: float | None = None
    error: str | None = None
    error_since: float | None = None
    polls: int = 0

    @property
    def loaded(self) -> bool:
        return self.last_ok is not None

    def apply(self, result: PollResult) -> None:
        self.polls += 1
        self.error = None
        self.error_since = None
        self.last_ok = result.at
        self.hosts = result.hosts
        self.apis = result.apis
        self.gpu_reports = dict(result.gpus)
        if result.detail is not None:
            self.details[result.detail.name] = result.detail
        names = {api.name for api in result.apis}
        for name in list(self.details):
            if name not in names:
                del self.details[name]
        for api in result.apis:
            self.rps.setdefault(api.name, deque(maxlen=HISTORY)).append(api.traffic.requests_per_second)
        for name in list(self.rps):
            if name not in names:
                del self.rps[name]
        for host in result.hosts:
            report = result.gpus.get(host.name)
            for gpu in self.gpus_of(host):
                key = (host.name, gpu.index)
                series = self.gpu_util.setdefault(key, deque(maxlen=HISTORY))
                if report is not None and report.history.get(gpu.index):
                    series.clear()
                    series.extend(s.utilization_gpu for s in report.history[gpu.index][-HISTORY:])
                else:
                    series.append(gpu.utilization_gpu if host.state == "ready" else None)

    def fail(self, message: str) -> None:
        self.error = message
        if self.error_since is None:
            self.error_since = time.time()

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
