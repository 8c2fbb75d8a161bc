"""What the agent serves about GPUs: the sampler's readings joined with its own replicas
(process → replica mapping, allocations), as a GpuReport, HostInfo fields and Prometheus text."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from workbench.agent.gpu.alloc import Allocation
from workbench.agent.gpu.procmap import ProcMap, ReplicaRef
from workbench.agent.gpu.sampler import GpuSampler

from workbench.wire.agent import GpuInfo, GpuProcess, GpuReport


class GpuService:
    def __init__(
        self,
        sampler: GpuSampler,
        replicas: Callable[[], Iterable[ReplicaRef]],
        allocations: Callable[[], Iterable[Allocation]],
    ) -> None:
        self.sampler = sampler
        self.replicas = replicas
        self.allocations = allocations
        follow = getattr(sampler.probe, "follow", None)
        if callable(follow):  # the fixture: the simulated load follows our GPU allocations
            follow(allocations)

    @property
    def simulated(self) -> bool:
        return self.sampler.probe.source == "fixture"

    def indices(self) -> dict[int, str | None] | None:
        """GPU index → UUID as last read; None when this host has no GPU information."""
        if self.sampler.probe.source == "none":
            return None
        reading = self.sampler.latest()
        return {g.info.index: g.info.uuid for g in reading.gpus} if reading else {}

    def gpus(self) -> list[GpuInfo]:
        """Current GPUs with processes mapped to replicas and the agent's allocations."""
        reading = self.sampler.latest()
        if reading is None:
            return []
        pmap = ProcMap(self.replicas())
        held: dict[str, list[Allocation]] = {}
        for a in self.allocations():
            for gpu in a.gpu_ids:
                held.setdefault(gpu, []).append(a)
        out = []
        for g in reading.gpus:
            info = g.info.model_copy(deep=True)
            procs = []
            for p in g.processes:
                owner = pmap.owner(p.pid)
                procs.append(GpuProcess(pid=p.pid, used_memory_bytes=p.used_memory_bytes,
                                        replica_id=owner.replica_id, api=owner.api,
                                        container_id=owner.container_id))
            info.processes = procs
            mine = held.get(str(info.index), []) + (held.get(info.uuid, []) if info.uuid else [])
            info.allocated_to = sorted({a.replica_id for a in mine})
            info.allocated_share = round(sum(a.amount for a in mine), 6)
            out.append(info)
        return out

    def note(self) -> str | None:
        reading = self.sampler.latest()
        return (reading.note if reading else None) or self.sampler.probe.note

    def report(self, history: bool = True, since: float | None = None) -> GpuReport:
        probe = self.sampler.probe
        return GpuReport(
            source=probe.source,
            driver_version=probe.driver_version,
            nvml_version=probe.nvml_version,
            cuda_driver_version=probe.cuda_driver_version,
            note=self.note(),
            gpus=self.gpus(),
            history=self.sampler.history(since) if history else {},
        )
