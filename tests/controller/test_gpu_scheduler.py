"""scheduler.place with GPUs: free GPUs, gpu_memory, gpu_type, sharing, spread vs pack, reasons."""

from __future__ import annotations

from workbench.controller.scheduler import Demand, HostView, demand_for, gpu_usage, note_placed, place
from workbench.spec.models import ComputeSpec
from workbench.wire.agent import DockerStatus, GpuInfo, HostInfo, ReplicaInfo, ReplicaState

GIB = 2**30


def g(
    index: int,
    name: str = "NVIDIA A100 80GB",
    free: int = 70,
    alloc: float = 0.0,
    to: tuple[str, ...] = (),
    error: str | None = None,
) -> GpuInfo:
    return GpuInfo(
        index=index,
        name=name,
        memory_total_bytes=80 * GIB,
        memory_free_bytes=free * GIB,
        allocated_share=alloc,
        allocated_to=list(to),
        error=error,
    )


def host(name: str, gpus: list[GpuInfo], replicas: int = 0, **kw: object) -> HostView:
    info = HostInfo(
        hostname=name,
        os="linux",
        arch="x86_64",
        python="3.11",
        agent_version="0",
        cpu_count=16,
        mem_total_bytes=64 * GIB,
        mem_available_bytes=64 * GIB,
        disk_free_bytes=10**11,
        docker=DockerStatus(available=True),
        runtimes=["docker", "process"],
        gpus=gpus,
    )
    return HostView(name, True, info, api_replicas=replicas, **kw)  # type: ignore[arg-type]


def test_needs_enough_free_gpus_and_names_the_host() -> None:
    box1 = host("box1", [g(0, alloc=1, to=("r1",)), g(1), g(2, alloc=1, to=("r2",)), g(3)])
    assert place(Demand(gpu=2), "docker", [box1]).gpu_ids == ["1", "3"]
    p = place(Demand(gpu=3), "docker", [box1, host("cpu", [])])
    assert p.host is None and p.gpu_ids == []
    assert "box1: 2 GPUs free of 4, needs 3" in (p.reason or "")
    assert "cpu: no GPUs, needs 3" in (p.reason or "")


def test_lost_gpus_and_memory_and_type() -> None:
    mixed = host(
        "mixed", [g(0, error="GPU is lost"), g(1, name="NVIDIA GeForce RTX 4090", free=20), g(2, free=8)]
    )
    assert place(Demand(gpu=1, gpu_type="4090"), "process", [mixed]).gpu_ids == ["1"]
    assert place(Demand(gpu=1, gpu_memory=16 * GIB), "process", [mixed]).gpu_ids == ["1"]
    p = place(Demand(gpu=1, gpu_type="a100", gpu_memory=16 * GIB), "process", [mixed])
    assert p.host is None and "0 GPUs free of 3, needs 1, type a100, 16 GiB free each" in (p.reason or "")
    assert place(Demand(gpu=1, gpu_type="A100"), "process", [mixed]).gpu_ids == ["2"]  # case-insensitive


def test_spread_vs_pack() -> None:
    busy = host("busy", [g(0, alloc=1, to=("x",)), g(1)])
    idle = host("idle", [g(0), g(1)])
    assert place(Demand(gpu=1), "docker", [busy, idle]).host == "idle"
    assert place(Demand(gpu=1), "docker", [busy, idle], policy="pack").host == "busy"
    share = host("s", [g(0), g(1, alloc=0.5, to=("h",)), g(2)])
    half = Demand(gpu=1, gpu_share=0.5)
    assert place(half, "docker", [share], policy="pack").gpu_ids == ["1"]
    assert place(half, "docker", [share]).gpu_ids == ["0"]


def test_sharing_only_between_fractional_replicas() -> None:
    h = host("h", [g(0, alloc=0.5, to=("a",)), g(1, alloc=1, to=("b",))])
    assert place(Demand(gpu=1), "docker", [h]).host is None  # whole replica never joins a shared GPU
    assert place(Demand(gpu=1, gpu_share=0.5), "docker", [h]).gpu_ids == ["0"]
    assert place(Demand(gpu=1, gpu_share=0.75), "docker", [h]).host is None  # 1.25 of a GPU


def test_in_pass_placements_are_never_double_allocated() -> None:
    alloc: dict[str, dict[str, float]] = {}
    whole: dict[str, set[str]] = {}
    demand = Demand(gpu=1)
    given = []
    for _ in range(3):
        view = host(
            "box", [g(0), g(1)], gpu_alloc=alloc.get("box", {}), gpu_exclusive=frozenset(whole.get("box", ()))
        )
        p = place(demand, "docker", [view])
        if p.host is None:
            assert "0 GPUs free of 2" in (p.reason or "")
            break
        given += p.gpu_ids
        note_placed(alloc, whole, "box", p.gpu_ids, demand)
    assert sorted(given) == ["0", "1"]


def test_usage_from_replicas_and_demand_from_spec() -> None:
    def rep(rid: str, ids: list[str], share: float | None = None) -> ReplicaInfo:
        return ReplicaInfo(
            id=rid,
            api="a",
            spec_hash="s",
            runtime="docker",
            artifact="x",
            state=ReplicaState.READY,
            created_at=0,
            gpu_ids=ids,
            gpu_share=share,
        )

    alloc, whole = gpu_usage([("h", rep("a", ["0"])), ("h", rep("b", ["1"], 0.5))])
    assert alloc == {"h": {"0": 1.0, "1": 0.5}} and whole == {"h": {"0"}}
    view = host("h", [g(0), g(1)], gpu_alloc=alloc["h"], gpu_exclusive=frozenset(whole["h"]))
    assert place(Demand(gpu=1, gpu_share=0.5), "docker", [view]).gpu_ids == ["1"]
    d = demand_for(ComputeSpec(gpu=0.5, gpu_memory=16, gpu_type="A100"))
    assert (d.gpu, d.gpu_share, d.gpu_memory, d.gpu_type) == (1, 0.5, 16 * GIB, "A100")
    assert demand_for(ComputeSpec(gpu=2)).gpu_share is None
