"""The fleet meter: once a second, what the fleet holds goes into the usage rollups and the idle
watcher; every few seconds each GPU host's new GPU samples are read from its agent.

- presence, price and capacity of every host in the fleet, and what its live replicas reserve
  (the API's `compute` block: GPUs pinned, CPU cores, memory) → workbench.controller.usage;
- requests: what the router sent each replica since the last tick (its per-replica counters);
- GPU samples (the agent's 1 Hz ring, only those since the last read): busy when utilization is at
  or above the host's threshold, or when a replica holds memory on the GPU;
- activity per host (a request sent or in flight, a replica starting, a GPU at/above the
  threshold) → workbench.controller.idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from workbench.controller.fleet import Fleet, Host
from workbench.controller.idle import IdleWatcher
from workbench.controller.periodic import every
from workbench.controller.reconciler import demand_of
from workbench.controller.scheduler import Demand
from workbench.controller.state import ApiRecord, Store
from workbench.controller.usage import HostUse, ReplicaUse, UsageMeter
from workbench.router.types import ReplicaRequestCounts
from workbench.wire.agent import GpuReport, ReplicaInfo, ReplicaState
from workbench.wire.errors import WorkbenchError

log = logging.getLogger("workbench.controller.metering")

TICK_SECONDS = 1.0
GPU_READ_SECONDS = 5.0
FLUSH_SECONDS = 60.0
GONE = (ReplicaState.STOPPING, ReplicaState.STOPPED)
MIB = 2**20


class CountingRouter(Protocol):
    def replica_counts(self) -> list[ReplicaRequestCounts]: ...


def replica_use(replica: ReplicaInfo, demand: Demand) -> ReplicaUse:
    """What a replica reserves: the GPUs pinned to it (times its share), the API's CPU and memory."""
    share = replica.gpu_share if replica.gpu_share is not None else 1.0
    return ReplicaUse(api=replica.api, gpu_milli=round(len(replica.gpu_ids) * share * 1000),
                      cpu_milli=round(demand.cpu * 1000), mem_mib=demand.mem // MIB)


def gpu_busy_samples(report: GpuReport, threshold: float, now: float
                     ) -> tuple[list[tuple[float, int, int]], bool, float | None]:
    """(samples as (when, ms sampled, ms busy) on the controller's clock, whether any GPU was at or
    above `threshold`, the newest sample's time on the agent's clock)."""
    held = {gpu.index for gpu in report.gpus
            if gpu.allocated_to or any(p.replica_id for p in gpu.processes)}
    newest = max((s.at for samples in report.history.values() for s in samples), default=None)
    if newest is None:
        return [], False, None
    shift = now - newest  # the agent's clock may differ from ours
    by_second: dict[float, list[int]] = {}
    over = False
    for index, samples in report.history.items():
        for sample in samples:
            util = sample.utilization_gpu
            hot = util is not None and util >= threshold
            over = over or hot
            busy = hot or (index in held and (sample.memory_used_bytes or 0) > 0)
            slot = by_second.setdefault(sample.at + shift, [0, 0])
            slot[0] += 1000
            slot[1] += 1000 if busy else 0
    return [(at, sampled, busy) for at, (sampled, busy) in sorted(by_second.items())], over, newest


class FleetMeter:
    def __init__(self, store: Store, fleet: Fleet, router: CountingRouter, usage: UsageMeter,
                 idle: IdleWatcher, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.fleet = fleet
        self.router = router
        self.usage = usage
        self.idle = idle
        self.clock = clock
        self._counts: dict[str, int] = {}  # replica id -> requests the router had sent it
        self._demands: dict[str, tuple[float, Demand]] = {}  # api -> (updated_at, demand)
        self._gpu_read_at: dict[str, float] = {}
        self._gpu_since: dict[str, float] = {}  # host -> newest sample read (agent clock)
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._flushed_at = 0.0
        self._cpu_busy: dict[str, int | None] = {}

    async def run(self) -> None:
        await every(TICK_SECONDS, self.tick, log=log, failed="metering tick failed")

    def flush(self) -> None:
        now = self.clock()
        self.usage.flush(now)
        self._flushed_at = now

    async def close(self) -> None:
        for task in list(self._reading.values()):
            task.cancel()
        for task in list(self._reading.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.idle.close()
        self.flush()

    # -- one tick --------------------------------------------------------------------------------
    def _demand(self, record: ApiRecord | None) -> Demand:
        if record is None:
            return Demand()
        cached = self._demands.get(record.name)
        if cached is None or cached[0] != record.updated_at:
            cached = self._demands[record.name] = (record.updated_at, demand_of(record))
        return cached[1]

    def tick(self) -> None:
        now = self.clock()
        self.idle.reload()
        records = {record.name: record for record in self.store.apis()}
        prices = self.store.prices()
        active: set[str] = set()
        uses = []
        for host in self.fleet.hosts.values():
            info = host.info
            price = prices.get(host.name)
            replicas = []
            for replica in host.replicas.values():
                if replica.state in GONE:
                    continue
                if replica.state == ReplicaState.STARTING:
                    active.add(host.name)
                replicas.append(replica_use(replica, self._demand(records.get(replica.api))))
            cpu_busy = None
            if info is not None and info.load_1m is not None:
                cpu_busy = round(min(info.load_1m, info.cpu_count) * 1000)
            uses.append(HostUse(
                name=host.name, price_micros=price.price_micros if price else None,
                currency=price.currency if price else None, gpu_count=len(info.gpus) if info else 0,
                cpu_count=info.cpu_count if info else 0, mem_mib=info.mem_total_bytes // MIB if info else 0,
                replicas=tuple(replicas), cpu_busy_milli=cpu_busy))
        self.usage.record(now, uses)
        self._count_requests(now, active)
        for name in [n for n in self._demands if n not in records]:
            del self._demands[name]
        for host in self.fleet.hosts.values():
            has_gpus = bool(host.info and host.info.gpus)
            if has_gpus and host.reachable:
                self._read_gpus_later(host, now)
            self.idle.observe(now, host.name, reachable=host.reachable, active=host.name in active,
                              has_gpus=has_gpus, address=host.address)
        for name in [n for n in self.idle.quiet if n not in self.fleet.hosts]:
            self.idle.forget(name)
            self._gpu_since.pop(name, None)
            self._gpu_read_at.pop(name, None)
        if now - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def _count_requests(self, now: float, active: set[str]) -> None:
        seen: dict[str, int] = {}
        for counts in self.router.replica_counts():
            before = self._counts.get(counts.replica_id, 0)
            sent = counts.requests - before if counts.requests >= before else counts.requests
            seen[counts.replica_id] = counts.requests
            if sent:
                self.usage.requests(now, counts.host, counts.api, sent)
            if sent or counts.in_flight:
                active.add(counts.host)
        self._counts = seen

    # -- GPU samples -----------------------------------------------------------------------------
    def _read_gpus_later(self, host: Host, now: float) -> None:
        if host.name in self._reading or now - self._gpu_read_at.get(host.name, 0.0) < GPU_READ_SECONDS:
            return
        self._gpu_read_at[host.name] = now
        self._spawn(host.name, self._read_gpus(host))

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._reading[name] = task
        task.add_done_callback(lambda _: self._reading.pop(name, None))

    async def _read_gpus(self, host: Host) -> None:
        since = self._gpu_since.get(host.name)
        try:
            report = await host.poller.gpus(history=True, since=since)
        except WorkbenchError as error:
            log.debug("reading the GPUs of %s failed: %s", host.name, error)
            return
        if self.fleet.hosts.get(host.name) is not host:
            return  # removed or replaced meanwhile
        if since is None:  # the first read: the agent's last few seconds (on its own clock)
            newest = max((s.at for samples in report.history.values() for s in samples), default=None)
            if newest is not None:
                report.history = {index: [s for s in samples if s.at > newest - GPU_READ_SECONDS]
                                  for index, samples in report.history.items()}
        now = self.clock()
        _, threshold = self.idle.limits(host.name)
        samples, over, newest = gpu_busy_samples(report, threshold, now)
        if newest is None:
            return  # no new sample: the GPUs were not read (nothing is judged idle on that)
        self._gpu_since[host.name] = newest
        self.usage.gpu_samples(host.name, samples)
        self.idle.gpus_read(host.name, now, over)
