"""The scheduler: which host gets the next replica of an API (pure; no I/O).

A host fits when it is reachable, offers the API's runtime, and its CPU cores and memory minus
what replicas already placed there request leave room. Among hosts that fit, the one with the
fewest replicas of this API wins (spread), then the one with the most free CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.models import HostInfo


@dataclass(frozen=True)
class Demand:
    cpu: float = 0.0
    mem: int = 0


@dataclass(frozen=True)
class HostView:
    name: str
    reachable: bool
    info: HostInfo | None
    used: Demand = Demand()
    api_replicas: int = 0  # replicas of the API being placed


@dataclass(frozen=True)
class Placement:
    host: str | None
    reason: str | None = None  # why no host fits


def _fits(host: HostView, demand: Demand, runtime: str) -> str | None:
    if not host.reachable or host.info is None:
        return f"{host.name} is not reachable"
    info = host.info
    if runtime not in info.runtimes or (runtime == "docker" and not info.docker.available):
        return f"{host.name} has no {runtime} runtime"
    free_cpu = info.cpu_count - host.used.cpu
    if demand.cpu > free_cpu + 1e-9:
        return (f"{host.name} lacks CPU: {demand.cpu:g} cores wanted, "
                f"{max(free_cpu, 0):g} of {info.cpu_count} free")
    free_mem = info.mem_total_bytes - host.used.mem
    if demand.mem > free_mem:
        return (f"{host.name} lacks memory: {demand.mem / 2**20:.0f} MiB wanted, "
                f"{max(free_mem, 0) / 2**20:.0f} MiB free")
    return None


def place(demand: Demand, runtime: str, hosts: list[HostView]) -> Placement:
    """Pick a host for one more replica, or say which host lacks what."""
    reasons: list[str] = []
    fitting: list[HostView] = []
    for host in hosts:
        reason = _fits(host, demand, runtime)
        if reason is None:
            fitting.append(host)
        else:
            reasons.append(reason)
    if not fitting:
        return Placement(None, "; ".join(reasons) or "no hosts")
    best = min(fitting, key=lambda h: (h.api_replicas, h.used.cpu - (h.info.cpu_count if h.info else 0),
                                       h.name))
    return Placement(best.name)
