"""What the fleet cost over a window, from the usage rollups (workbench.controller.usage).

A host's spend is its price per hour x its time in the fleet. An API's share of a host's spend
follows what its replicas reserved x time: on a host with GPUs, its share of the host's GPU time
(GPUs nobody reserved are "unallocated"); on a host without GPUs, half by its share of the CPU cores
and half by its share of the memory. Replicas that reserve nothing are given no share.

The arithmetic is exact (integers and Fractions of micro-units); amounts are rounded once, to
micro-units, when the report is made, and to cents only when shown (workbench.wire.units.money).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

from workbench.controller.state import Store
from workbench.controller.usage import minute_of
from workbench.wire.control import ApiCostBody, ApiHostCostBody, CostReport, HostCostBody
from workbench.wire.units import DEFAULT_CURRENCY, MICROS

MS_PER_HOUR = 3_600_000
MILLI = 1000
_SIX_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class LiveHost:
    """A host in the fleet now: its price and idle state (what the rollups cannot say)."""

    price: Decimal | None = None
    currency: str = DEFAULT_CURRENCY
    idle: bool = False
    quiet_since: float | None = None


def amount(micros: Fraction) -> Decimal:
    """Exact micro-units as a Decimal amount of the currency, rounded to micro-units."""
    with localcontext() as context:
        context.prec = 60
        return (Decimal(micros.numerator) / Decimal(micros.denominator) / MICROS).quantize(_SIX_PLACES)


def _hours(ms: int | Fraction) -> float:
    return float(Fraction(ms) / MS_PER_HOUR)


def api_share(price_micros: int, gpu_count: int, cpu_count: int, mem_mib: int,
              gpu: int, cpu: int, mem: int) -> Fraction:
    """An API's spend (micro-units) on one host, from what it reserved there (see the module)."""
    if gpu_count > 0:
        return Fraction(price_micros * gpu, MS_PER_HOUR * MILLI * gpu_count)
    share = Fraction(0)
    if cpu_count > 0:
        share += Fraction(price_micros * cpu, MS_PER_HOUR * MILLI * cpu_count * 2)
    if mem_mib > 0:
        share += Fraction(price_micros * mem, MS_PER_HOUR * mem_mib * 2)
    return share


class _HostTotals:
    def __init__(self) -> None:
        self.present_ms = 0
        self.priced_ms = 0
        self.spend: Fraction | None = None
        self.currency: str | None = None
        self.gpus = 0
        self.gpu_ms = 0
        self.gpu_busy_ms = 0
        self.cpu_busy: int | None = None
        self.requests = 0
        self.reserved_gpu = 0  # thousandths of a GPU x ms
        self.reserved_cpu = 0
        self.api_spend = Fraction(0)


def cost_report(store: Store, since: float, until: float | None = None,
                live: Mapping[str, LiveHost] | None = None) -> CostReport:
    """Spend per host and per API over the minutes from `since` to `until` (now)."""
    until = time.time() if until is None else until
    live = live or {}
    first, last = minute_of(since), minute_of(until) + 1
    hosts: dict[str, _HostTotals] = {}
    for row in store.host_usage(first, last):
        totals = hosts.setdefault(row["host"], _HostTotals())
        present = int(row["present_ms"] or 0)
        totals.present_ms += present
        totals.gpus = max(totals.gpus, int(row["gpu_count"]))
        totals.gpu_ms += int(row["gpu_count"]) * present
        totals.gpu_busy_ms += int(row["gpu_busy_ms"] or 0)
        if row["cpu_busy"] is not None:
            totals.cpu_busy = (totals.cpu_busy or 0) + int(row["cpu_busy"])
        totals.requests += int(row["requests"] or 0)
        if row["price_micros"] is not None and present:
            totals.priced_ms += present
            totals.spend = (totals.spend or Fraction(0)) + Fraction(int(row["price_micros"]) * present,
                                                                    MS_PER_HOUR)
            totals.currency = row["currency"]

    apis: dict[str, ApiCostBody] = {}
    api_hosts: dict[tuple[str, str], tuple[ApiHostCostBody, list[Fraction]]] = {}
    api_spend: dict[str, dict[str, Fraction]] = {}
    for row in store.api_usage(first, last):
        name, host = row["api"], row["host"]
        body = apis.setdefault(name, ApiCostBody(name=name))
        gpu, cpu, mem = int(row["gpu"] or 0), int(row["cpu"] or 0), int(row["mem"] or 0)
        requests, replica_ms = int(row["requests"] or 0), int(row["replica_ms"] or 0)
        body.requests += requests
        body.replica_hours += _hours(replica_ms)
        key = (name, host)
        if key not in api_hosts:
            api_hosts[key] = (ApiHostCostBody(host=host), [])
        per_host, spends = api_hosts[key]
        per_host.replica_hours += _hours(replica_ms)
        per_host.gpu_hours += float(Fraction(gpu, MS_PER_HOUR * MILLI))
        per_host.requests += requests
        totals = hosts.setdefault(host, _HostTotals())
        totals.reserved_gpu += gpu
        totals.reserved_cpu += cpu
        if row["price_micros"] is None:
            continue
        currency = row["currency"] or DEFAULT_CURRENCY
        share = api_share(int(row["price_micros"]), int(row["gpu_count"]), int(row["cpu_count"]),
                          int(row["mem_mib"]), gpu, cpu, mem)
        per_host.currency = currency
        spends.append(share)
        totals.api_spend += share
        by_currency = api_spend.setdefault(name, {})
        by_currency[currency] = by_currency.get(currency, Fraction(0)) + share

    for (name, _), (per_host, spends) in sorted(api_hosts.items()):
        if spends:
            per_host.spend = amount(sum(spends, Fraction(0)))
        apis[name].hosts.append(per_host)
    for name, body in apis.items():
        for currency, spent in api_spend.get(name, {}).items():
            body.spend[currency] = amount(spent)
            if body.requests:
                body.per_1000_requests[currency] = amount(spent * 1000 / body.requests)

    report = CostReport(since=since, until=until, apis=sorted(apis.values(), key=lambda a: a.name))
    total: dict[str, Fraction] = {}
    unallocated: dict[str, Fraction] = {}
    for name in sorted(set(hosts) | set(live)):
        totals = hosts.get(name) or _HostTotals()
        now = live.get(name)
        currency = (now.currency if now and now.price is not None else None) or totals.currency \
            or DEFAULT_CURRENCY
        reserved_gpu_hours = float(Fraction(totals.reserved_gpu, MS_PER_HOUR * MILLI))
        gpu_hours = _hours(totals.gpu_ms)
        host_body = HostCostBody(
            name=name, price=now.price if now else None, currency=currency, in_fleet=now is not None,
            hours=_hours(totals.present_ms), priced_hours=_hours(totals.priced_ms), gpus=totals.gpus,
            gpu_hours=gpu_hours, gpu_busy_hours=min(_hours(totals.gpu_busy_ms), gpu_hours),
            gpu_reserved_hours=reserved_gpu_hours,
            gpu_unallocated_hours=max(gpu_hours - reserved_gpu_hours, 0.0),
            cpu_reserved_core_hours=float(Fraction(totals.reserved_cpu, MS_PER_HOUR * MILLI)),
            cpu_busy_core_hours=None if totals.cpu_busy is None
            else float(Fraction(totals.cpu_busy, MS_PER_HOUR * MILLI)),
            requests=totals.requests, idle=now.idle if now else False,
            quiet_since=now.quiet_since if now else None)
        host_body.gpu_idle_hours = max(host_body.gpu_hours - host_body.gpu_busy_hours, 0.0)
        if totals.spend is not None:
            spent_currency = totals.currency or DEFAULT_CURRENCY
            host_body.currency = spent_currency
            left = max(totals.spend - totals.api_spend, Fraction(0))
            host_body.spend, host_body.unallocated_spend = amount(totals.spend), amount(left)
            total[spent_currency] = total.get(spent_currency, Fraction(0)) + totals.spend
            unallocated[spent_currency] = unallocated.get(spent_currency, Fraction(0)) + left
        elif totals.present_ms:
            report.unpriced.append(name)
        report.hosts.append(host_body)
    report.total = {currency: amount(spent) for currency, spent in sorted(total.items())}
    report.unallocated = {currency: amount(left) for currency, left in sorted(unallocated.items())}
    per_hour: dict[str, Decimal] = {}
    for now in live.values():
        if now.price is not None:
            per_hour[now.currency] = per_hour.get(now.currency, Decimal(0)) + now.price
    report.per_hour = dict(sorted(per_hour.items()))
    return report
