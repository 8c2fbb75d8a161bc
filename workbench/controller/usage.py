"""Usage rollups: what each host and each API used, minute by minute, kept in the controller's
SQLite state (the agents keep ten minutes of GPU samples; this keeps `retention`, default 30 days).

The meter is told what the fleet looks like (:meth:`UsageMeter.record`, about once a second) and
accounts the time since the previous snapshot to that snapshot: a host in the fleet is present (and
costs its price), a replica reserves its GPUs, CPU and memory. Requests and GPU samples are counted
as they are read. Amounts are integers (milliseconds, thousandths of a GPU or a core, MiB), summed
per minute in memory and added to the stored rows at each :meth:`flush`, so nothing here rounds
money: workbench.controller.cost does the arithmetic, exactly, when a report is asked for.

The clock is the caller's: tests script a timeline and get exact amounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from workbench.controller.state import ApiMinute, HostMinute, Store

DEFAULT_RETENTION_SECONDS = 30 * 86400.0
#: a longer pause between two snapshots (a suspended laptop) is not counted beyond this
MAX_GAP_SECONDS = 120.0
MINUTE_MS = 60_000


@dataclass(frozen=True)
class ReplicaUse:
    """What one replica reserves on its host."""

    api: str
    gpu_milli: int = 0  # thousandths of a GPU, over all its GPUs (a half-GPU replica: 500)
    cpu_milli: int = 0  # thousandths of a core
    mem_mib: int = 0


@dataclass(frozen=True)
class HostUse:
    """One host as the meter sees it: its price now, its capacity, its replicas."""

    name: str
    price_micros: int | None = None  # per hour; None: not priced
    currency: str | None = None
    gpu_count: int = 0
    cpu_count: int = 0
    mem_mib: int = 0
    replicas: tuple[ReplicaUse, ...] = ()
    cpu_busy_milli: int | None = None  # cores busy (load average, capped at the core count)


def minute_of(seconds: float) -> int:
    return int(seconds // 60)


class _HostRow:
    __slots__ = ("cpu_busy", "gpu_busy_ms", "gpu_sampled_ms", "present_ms", "requests", "use")

    def __init__(self, use: HostUse) -> None:
        self.use = use
        self.present_ms = self.gpu_sampled_ms = self.gpu_busy_ms = self.requests = 0
        self.cpu_busy: int | None = None


class _ApiRow:
    __slots__ = ("cpu", "gpu", "mem", "replica_ms", "requests")

    def __init__(self) -> None:
        self.replica_ms = self.gpu = self.cpu = self.mem = self.requests = 0


class UsageMeter:
    """Per-minute amounts in memory until :meth:`flush` adds them to the store."""

    def __init__(self, store: Store, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                 max_gap_seconds: float = MAX_GAP_SECONDS) -> None:
        self.store = store
        self.retention_seconds = retention_seconds
        self.max_gap_ms = int(max_gap_seconds * 1000)
        self._hosts: dict[str, HostUse] = {}  # the last snapshot
        self._at_ms: int | None = None  # when it was taken
        self._host_rows: dict[tuple[int, str], _HostRow] = {}
        self._api_rows: dict[tuple[int, str, str], _ApiRow] = {}

    # -- what the fleet looks like ----------------------------------------------------------------
    def record(self, now: float, hosts: Sequence[HostUse]) -> None:
        """Account the time since the last snapshot to it; from `now` on, the fleet is `hosts`."""
        self._advance(now)
        self._hosts = {host.name: host for host in hosts}

    def requests(self, now: float, host: str, api: str, count: int) -> None:
        """`count` requests reached `api`'s replicas on `host` (counted in the minute of `now`)."""
        if count <= 0:
            return
        minute = minute_of(now)
        self._host_row(minute, host).requests += count
        self._api_row(minute, api, host).requests += count

    def gpu_samples(self, host: str, samples: Iterable[tuple[float, int, int]]) -> None:
        """GPU samples taken on `host`: (when, ms sampled over its GPUs, ms of those busy)."""
        for at, sampled_ms, busy_ms in samples:
            row = self._host_row(minute_of(at), host)
            row.gpu_sampled_ms += sampled_ms
            row.gpu_busy_ms += busy_ms

    def flush(self, now: float) -> None:
        """Account up to `now`, add the pending minutes to the store, forget expired ones."""
        self._advance(now)
        hosts = [HostMinute(minute=minute, host=name, present_ms=row.present_ms,
                            price_micros=row.use.price_micros, currency=row.use.currency,
                            gpu_count=row.use.gpu_count, cpu_count=row.use.cpu_count,
                            mem_mib=row.use.mem_mib, gpu_sampled_ms=row.gpu_sampled_ms,
                            gpu_busy_ms=row.gpu_busy_ms, cpu_busy=row.cpu_busy, requests=row.requests)
                 for (minute, name), row in self._host_rows.items()]
        apis = [ApiMinute(minute=minute, api=api, host=host, replica_ms=row.replica_ms, gpu=row.gpu,
                          cpu=row.cpu, mem=row.mem, requests=row.requests)
                for (minute, api, host), row in self._api_rows.items()]
        self._host_rows, self._api_rows = {}, {}
        if hosts or apis:
            self.store.add_usage(hosts, apis)
        self.store.prune_usage(minute_of(now - self.retention_seconds))

    # -- accounting -------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        end = round(now * 1000)
        start, self._at_ms = self._at_ms, end if self._at_ms is None else max(self._at_ms, end)
        if start is None or end <= start:
            return
        start = max(start, end - self.max_gap_ms)
        while start < end:
            minute = start // MINUTE_MS
            piece_end = min(end, (minute + 1) * MINUTE_MS)
            self._account(int(minute), piece_end - start)
            start = piece_end

    def _account(self, minute: int, ms: int) -> None:
        for host in self._hosts.values():
            row = self._host_row(minute, host.name)
            row.use = host
            row.present_ms += ms
            if host.cpu_busy_milli is not None:
                row.cpu_busy = (row.cpu_busy or 0) + host.cpu_busy_milli * ms
            for replica in host.replicas:
                api = self._api_row(minute, replica.api, host.name)
                api.replica_ms += ms
                api.gpu += replica.gpu_milli * ms
                api.cpu += replica.cpu_milli * ms
                api.mem += replica.mem_mib * ms

    def _host_row(self, minute: int, host: str) -> _HostRow:
        row = self._host_rows.get((minute, host))
        if row is None:
            use = self._hosts.get(host) or HostUse(host)
            row = self._host_rows[(minute, host)] = _HostRow(use)
        return row

    def _api_row(self, minute: int, api: str, host: str) -> _ApiRow:
        row = self._api_rows.get((minute, api, host))
        if row is None:
            row = self._api_rows[(minute, api, host)] = _ApiRow()
        return row
