"""The scheduler: which host gets the next replica of an API, and which GPUs (pure; no I/O).

A host fits when it is reachable, offers the API's runtime, its CPU cores and memory minus what
replicas already placed there request leave room, and — for a replica that needs GPUs — it has
enough free GPUs: not allocated to other replicas (fractional replicas share a GPU while their
shares add up to at most 1), not lost, with at least `gpu_memory` free, whose name contains
`gpu_type`. Policy "spread" (default) prefers the host with the fewest replicas of this API and
the least used GPUs; "pack" prefers the busiest host that still fits and fills GPUs in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from workbench.spec.models import ComputeSpec
from workbench.wire.agent import GpuInfo, HostInfo, ReplicaInfo

Policy = Literal["spread", "pack"]
EPSILON = 1e-9


@dataclass(frozen=True)
class Demand:
    cpu: float = 0.0
    mem: int = 0
    gpu: int = 0  # GPUs per replica (a sharing replica takes 1)
    gpu_share: float | None = None  # the share of each GPU, when fractional sharing
    gpu_memory: int = 0  # minimum free bytes on each GPU
    gpu_type: str | None = None  # case-insensitive substring of the GPU name

    @property
    def gpu_amount(self) -> float:
        return 1.0 if self.gpu_share is None else self.gpu_share


@dataclass(frozen=True)
class HostView:
    name: str
    reachable: bool
    info: HostInfo | None
    used: Demand = Demand()
    api_replicas: int = 0  # replicas of the API being placed
    #: GPU id (index as a string) -> share allocated to replicas the controller knows of;
    #: the larger of this and the agent's own GpuInfo.allocated_share counts.
    gpu_alloc: Mapping[str, float] = field(default_factory=dict)
    #: GPU ids held by a whole-GPU replica (sharing replicas may not join them).
    gpu_exclusive: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Placement:
    host: str | None
    reason: str | None = None  # why no host fits
    gpu_ids: list[str] = field(default_factory=list)
    #: what the hosts lack, in a word or two: "no CPU", "no CPU/memory", "no GPU", "no host"
    shortage: str | None = None


@dataclass(frozen=True)
class Shortfall:
    """Why a host does not fit: the sentence, and what it lacks ("CPU", "memory", "GPU", or
    "host" when it is unreachable or has not the runtime)."""

    reason: str
    lacks: str


def _allocated(host: HostView, gpu: GpuInfo) -> float:
    return max(gpu.allocated_share, host.gpu_alloc.get(str(gpu.index), 0.0))


def _exclusive(host: HostView, gpu: GpuInfo) -> bool:
    """Held by a whole-GPU replica: share 1 from the agent with no sharing, or known here."""
    return str(gpu.index) in host.gpu_exclusive or (
        gpu.allocated_share >= 1 - EPSILON and len(gpu.allocated_to) == 1
    )


def _gpu_free(host: HostView, gpu: GpuInfo, demand: Demand) -> bool:
    if gpu.error is not None:
        return False
    if demand.gpu_type and demand.gpu_type.lower() not in (gpu.name or "").lower():
        return False
    if demand.gpu_memory and (gpu.memory_free_bytes is None or gpu.memory_free_bytes < demand.gpu_memory):
        return False
    allocated = _allocated(host, gpu)
    if demand.gpu_share is None:
        return allocated <= EPSILON
    return not _exclusive(host, gpu) and allocated + demand.gpu_share <= 1 + EPSILON


def free_gpus(host: HostView, demand: Demand) -> list[GpuInfo]:
    """The GPUs on `host` a replica with `demand` could be given."""
    gpus = host.info.gpus if host.info else []
    return [g for g in gpus if _gpu_free(host, g, demand)]


def _gpu_wants(demand: Demand) -> str:
    wants = [f"{demand.gpu}" if demand.gpu_share is None else f"{demand.gpu_share:g} of a GPU"]
    if demand.gpu_type:
        wants.append(f"type {demand.gpu_type}")
    if demand.gpu_memory:
        wants.append(f"{demand.gpu_memory / 2**30:g} GiB free each")
    return ", ".join(wants)


def _gpu_shortage(host: HostView, demand: Demand, free: int) -> str:
    gpus = host.info.gpus if host.info else []
    if not gpus:
        return f"{host.name}: no GPUs, needs {_gpu_wants(demand)}"
    return f"{host.name}: {free} GPUs free of {len(gpus)}, needs {_gpu_wants(demand)}"


def _cores(value: float) -> str:
    return f"{value:g} core{'' if value == 1 else 's'}"


def _fits(host: HostView, demand: Demand, runtime: str) -> Shortfall | None:
    if not host.reachable or host.info is None:
        return Shortfall(f"{host.name} is not reachable", "host")
    info = host.info
    if runtime not in info.runtimes or (runtime == "docker" and not info.docker.available):
        return Shortfall(f"{host.name} has no {runtime} runtime", "host")
    # what replicas placed here ask for is reserved for them, used or not
    free_cpu = info.cpu_count - host.used.cpu
    if demand.cpu > free_cpu + 1e-9:
        return Shortfall(f"{host.name} lacks CPU: {_cores(demand.cpu)} wanted, "
                         f"{min(host.used.cpu, info.cpu_count):g} of {info.cpu_count} reserved by replicas",
                         "CPU")
    free_mem = info.mem_total_bytes - host.used.mem
    if demand.mem > free_mem:
        return Shortfall(f"{host.name} lacks memory: {demand.mem / 2**20:.0f} MiB wanted, "
                         f"{min(host.used.mem, info.mem_total_bytes) / 2**20:.0f} of "
                         f"{info.mem_total_bytes / 2**20:.0f} MiB reserved by replicas", "memory")
    if demand.gpu:
        free = len(free_gpus(host, demand))
        if free < demand.gpu:
            return Shortfall(_gpu_shortage(host, demand, free), "GPU")
    return None


def fits_ever(host: HostView, demand: Demand, runtime: str | None = None) -> bool:
    """Whether one replica of `demand` fits `host` when nothing else runs there: its total cores,
    memory and GPUs (GPU memory counted whole, not free), whatever replicas hold now."""
    info = host.info
    if info is None or (runtime is not None and runtime not in info.runtimes):
        return False
    if demand.cpu > info.cpu_count + EPSILON or demand.mem > info.mem_total_bytes:
        return False
    if not demand.gpu:
        return True
    usable = [g for g in info.gpus if g.error is None
              and (not demand.gpu_type or demand.gpu_type.lower() in (g.name or "").lower())
              and (not demand.gpu_memory or (g.memory_total_bytes or 0) >= demand.gpu_memory)]
    return len(usable) >= demand.gpu


def capacity_text(info: HostInfo) -> str:
    """A host's totals as a deploy error names them: "2 cores, 7.6 GiB, 1 GPU"."""
    gpus = [g for g in info.gpus if g.error is None]
    text = f"{_cores(info.cpu_count)}, {info.mem_total_bytes / 2**30:.1f} GiB memory"
    if gpus:
        text += f", {len(gpus)} GPU{'' if len(gpus) == 1 else 's'}"
    return text


def demand_text(demand: Demand) -> str:
    """What one replica asks for: "64 cores, 512 MiB memory, 1 GPU"."""
    parts = []
    if demand.cpu:
        parts.append(_cores(demand.cpu))
    if demand.mem:
        parts.append(f"{demand.mem / 2**20:.0f} MiB memory")
    if demand.gpu:
        parts.append(f"{_gpu_wants(demand)} GPU")
    return ", ".join(parts) or "nothing"


def choose_gpus(host: HostView, demand: Demand, policy: Policy = "spread") -> list[str]:
    """The device ids (GPU indices) for one replica: spread takes the least allocated, most free
    memory GPUs; pack takes the most allocated (sharing replicas fill a GPU first), lowest index."""
    free = free_gpus(host, demand)
    if policy == "pack":
        free.sort(key=lambda g: (-_allocated(host, g), g.index))
    else:
        free.sort(key=lambda g: (_allocated(host, g), -(g.memory_free_bytes or 0), g.index))
    return [str(g.index) for g in free[: demand.gpu]]


def _free_gpu_count(host: HostView) -> float:
    gpus = host.info.gpus if host.info else []
    return sum(1 - _allocated(host, g) for g in gpus if g.error is None)


def place(demand: Demand, runtime: str, hosts: list[HostView], policy: Policy = "spread") -> Placement:
    """Pick a host (and its GPUs) for one more replica, or say which host lacks what."""
    reasons: list[Shortfall] = []
    fitting: list[HostView] = []
    for host in hosts:
        reason = _fits(host, demand, runtime)
        if reason is None:
            fitting.append(host)
        else:
            reasons.append(reason)
    if not fitting:
        lacking = sorted({r.lacks for r in reasons if r.lacks != "host"},
                         key=["CPU", "memory", "GPU"].index)
        shortage = "no " + "/".join(lacking) if lacking else "no host"
        return Placement(None, "; ".join(r.reason for r in reasons) or "no hosts", shortage=shortage)

    def free_cpu(h: HostView) -> float:
        return (h.info.cpu_count if h.info else 0) - h.used.cpu

    if policy == "pack":
        best = min(fitting, key=lambda h: (_free_gpu_count(h) if demand.gpu else 0, free_cpu(h), h.name))
    else:
        best = min(fitting, key=lambda h: (h.api_replicas, -_free_gpu_count(h) if demand.gpu else 0,
                                           -free_cpu(h), h.name))
    gpu_ids = choose_gpus(best, demand, policy) if demand.gpu else []
    return Placement(best.name, gpu_ids=gpu_ids)


def note_placed(alloc: dict[str, dict[str, float]], exclusive: dict[str, set[str]], host: str,
                gpu_ids: list[str], demand: Demand) -> None:
    """Record GPUs just given on `host` so the next placement in the same pass sees them."""
    for gpu in gpu_ids:
        table = alloc.setdefault(host, {})
        table[gpu] = table.get(gpu, 0.0) + demand.gpu_amount
        if demand.gpu_share is None:
            exclusive.setdefault(host, set()).add(gpu)


def demand_for(compute: ComputeSpec) -> Demand:
    """What one replica of an API with this `compute` block asks of a host."""
    return Demand(cpu=compute.cpu or 0.0, mem=compute.mem or 0, gpu=compute.gpu_count,
                  gpu_share=compute.gpu_share, gpu_memory=compute.gpu_memory or 0,
                  gpu_type=compute.gpu_type)


def gpu_usage(replicas: Iterable[tuple[str, ReplicaInfo]]
              ) -> tuple[dict[str, dict[str, float]], dict[str, set[str]]]:
    """(host -> GPU id -> share allocated, host -> GPU ids held whole) from known replicas."""
    alloc: dict[str, dict[str, float]] = {}
    exclusive: dict[str, set[str]] = {}
    for host, replica in replicas:
        amount = Demand(gpu=len(replica.gpu_ids), gpu_share=replica.gpu_share)
        note_placed(alloc, exclusive, host, list(replica.gpu_ids), amount)
    return alloc, exclusive
