"""What the fleet meter reads off an agent's reports: a GPU sample is busy at or above the threshold
or when a replica holds memory on that GPU (a loaded model that nobody calls still reserves it);
samples move onto the controller's clock; what a replica reserves; how long rollups are kept."""

from __future__ import annotations

import pytest

from workbench.controller.daemon import usage_retention
from workbench.controller.metering import gpu_busy_samples, replica_use
from workbench.controller.scheduler import Demand
from workbench.controller.usage import DEFAULT_RETENTION_SECONDS
from workbench.wire.agent import GpuInfo, GpuProcess, GpuReport, GpuSample, ReplicaInfo, ReplicaState

GIB = 1024**3


def report(util_0: list[float | None], util_1: list[float], held: bool) -> GpuReport:
    """Two GPUs sampled at agent times 100, 101, …; GPU 0 holds 2 GiB, a replica's when `held`."""
    gpus = [GpuInfo(index=0, allocated_to=["r1"] if held else [],
                    processes=[GpuProcess(pid=7, replica_id="r1" if held else None)]),
            GpuInfo(index=1)]
    history = {0: [GpuSample(at=100.0 + i, utilization_gpu=u, memory_used_bytes=2 * GIB)
                   for i, u in enumerate(util_0)],
               1: [GpuSample(at=100.0 + i, utilization_gpu=u, memory_used_bytes=0)
                   for i, u in enumerate(util_1)]}
    return GpuReport(source="fixture", gpus=gpus, history=history)


def test_a_sample_is_busy_at_the_threshold_or_with_a_replicas_memory() -> None:
    # nobody holds GPU 0: its 2 GiB (another program) do not make it busy; 4.9 % is below 5 %
    samples, over, newest = gpu_busy_samples(report([0, 4.9], [0, 0], held=False), 5.0, now=1000.0)
    assert samples == [(999.0, 2000, 0), (1000.0, 2000, 0)] and not over and newest == 101.0
    # GPU 1 reaches the threshold in the second sample: busy, and the host is not idle
    samples, over, _ = gpu_busy_samples(report([0, 0], [0, 5.0], held=False), 5.0, now=1000.0)
    assert samples == [(999.0, 2000, 0), (1000.0, 2000, 1000)] and over
    # a replica holds memory on GPU 0 at 0 %: busy for the GPU hours, but not activity (over stays False)
    samples, over, _ = gpu_busy_samples(report([0, None], [0, 0], held=True), 5.0, now=1000.0)
    assert samples == [(999.0, 2000, 1000), (1000.0, 2000, 1000)] and not over
    # no samples: nothing read, nothing judged
    assert gpu_busy_samples(GpuReport(source="none"), 5.0, now=1000.0) == ([], False, None)


def test_what_a_replica_reserves() -> None:
    def replica(gpu_ids: list[str], share: float | None) -> ReplicaInfo:
        return ReplicaInfo(id="r1", api="llm", spec_hash="h", runtime="process", artifact="a",
                           state=ReplicaState.READY, created_at=0.0, gpu_ids=gpu_ids, gpu_share=share)

    demand = Demand(cpu=1.5, mem=3 * 2**30)
    whole = replica_use(replica(["0", "1"], None), demand)
    assert (whole.api, whole.gpu_milli, whole.cpu_milli, whole.mem_mib) == ("llm", 2000, 1500, 3072)
    assert replica_use(replica(["1"], 0.25), demand).gpu_milli == 250
    assert replica_use(replica([], None), Demand()).gpu_milli == 0


def test_how_long_rollups_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_USAGE_RETENTION", raising=False)
    assert usage_retention() == DEFAULT_RETENTION_SECONDS == 30 * 86400
    monkeypatch.setenv("WORKBENCH_USAGE_RETENTION", "90d")
    assert usage_retention() == 90 * 86400
    assert usage_retention("12h") == 12 * 3600  # the option wins over the variable
    with pytest.raises(ValueError, match=r"--usage-retention='forever': 'forever' is not a duration"):
        usage_retention("forever")
    monkeypatch.setenv("WORKBENCH_USAGE_RETENTION", "-1d")
    with pytest.raises(ValueError, match="WORKBENCH_USAGE_RETENTION='-1d'"):
        usage_retention()
