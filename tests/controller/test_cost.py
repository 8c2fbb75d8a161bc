"""Spend on a scripted timeline: the usage meter is driven with an injected clock (irregular ticks,
minute boundaries crossed mid-tick, a price change, a replica joining late, GPU samples, requests)
into a real SQLite store, and the cost report must come out to the cent — exactly."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from workbench.controller.cost import LiveHost, amount, api_share, cost_report
from workbench.controller.state import Store
from workbench.controller.usage import HostUse, ReplicaUse, UsageMeter
from workbench.wire.control import CostReport, HostCostBody

T0 = 1_800_000_000.0  # a minute boundary
MIN = 60.0
GIB_MIB = 1024


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "state.db")
    try:
        yield db
    finally:
        db.close()


def box(price: Decimal | None, *replicas: ReplicaUse) -> HostUse:
    """2 GPUs, 16 cores, 64 GiB; `price` per hour in USD."""
    return HostUse("box", price_micros=None if price is None else int(price * 1_000_000),
                   currency="USD", gpu_count=2, cpu_count=16, mem_mib=64 * GIB_MIB, replicas=replicas)


def cpubox(*replicas: ReplicaUse) -> HostUse:
    """No GPU, 4 cores, 8 GiB, 0.60 EUR/h."""
    return HostUse("cpubox", price_micros=600_000, currency="EUR", cpu_count=4, mem_mib=8 * GIB_MIB,
                   replicas=replicas, cpu_busy_milli=2000)


def local(*replicas: ReplicaUse) -> HostUse:
    """The workstation: no price."""
    return HostUse("local", cpu_count=8, mem_mib=16 * GIB_MIB, replicas=replicas)


LLM = ReplicaUse("llm", gpu_milli=1000, cpu_milli=2000, mem_mib=8 * GIB_MIB)
EMB = ReplicaUse("emb", gpu_milli=500)
TINY_LOCAL = ReplicaUse("tiny", cpu_milli=2000, mem_mib=4 * GIB_MIB)
TINY_CPU = ReplicaUse("tiny", cpu_milli=1000, mem_mib=2 * GIB_MIB)


def ticks(start: float, end: float) -> Iterator[float]:
    """Irregular ticks from `start` (exclusive) to `end` (inclusive): 0.7 s, 1.3 s, 0.7 s, …"""
    at, step = start, 0
    while True:
        at += 0.7 if step % 2 == 0 else 1.3
        step += 1
        if at >= end:
            yield end
            return
        yield at


def run_timeline(meter: UsageMeter) -> None:
    """0-60 min: box (2.40/h) runs llm (1 GPU); cpubox and local run tiny.
    30 min: emb (half a GPU) joins box. 60 min: llm, cpubox and local's tiny leave; box now 3.00/h.
    90 min: box leaves. Requests: 300 to llm at 10 min, 200 to emb at 40 min. GPU samples on box for
    the first 10 minutes: both GPUs sampled each second, one of them busy."""
    def fleet(at: float) -> list[HostUse]:
        minute = (at - T0) / MIN
        if minute < 30:
            return [box(Decimal("2.40"), LLM), cpubox(TINY_CPU), local(TINY_LOCAL)]
        if minute < 60:
            return [box(Decimal("2.40"), LLM, EMB), cpubox(TINY_CPU), local(TINY_LOCAL)]
        if minute < 90:
            return [box(Decimal("3.00"), EMB), local()]
        return [local()]

    meter.record(T0, fleet(T0))
    for change in (30, 60, 90):
        for at in ticks(T0 + (change - 30) * MIN, T0 + change * MIN):
            meter.record(at, fleet(at))
            if at == T0 + 10 * MIN:
                meter.requests(at, "box", "llm", 300)
            if at == T0 + 40 * MIN:
                meter.requests(at, "box", "emb", 120)
                meter.flush(at)  # a flush mid-minute: the rest of that minute adds up in the store
                meter.requests(at, "box", "emb", 80)
    meter.gpu_samples("box", [(T0 + s, 2000, 1000) for s in range(600)])
    meter.flush(T0 + 90 * MIN)


def host(report: CostReport, name: str) -> HostCostBody:
    return next(h for h in report.hosts if h.name == name)


def test_spend_on_a_scripted_timeline_is_exact(store: Store) -> None:
    meter = UsageMeter(store)
    run_timeline(meter)
    live = {"local": LiveHost(), "box": LiveHost(price=Decimal("3.00"))}
    report = cost_report(store, T0, T0 + 90 * MIN, live)

    b = host(report, "box")
    assert b.spend == Decimal("3.90")  # 2.40 x 1 h + 3.00 x 0.5 h
    assert b.hours == 1.5 and b.priced_hours == 1.5
    assert b.price == Decimal("3.00") and b.currency == "USD" and b.in_fleet
    assert b.gpu_hours == 3.0 and b.gpu_reserved_hours == 1.5 and b.gpu_unallocated_hours == 1.5
    assert b.gpu_busy_hours == pytest.approx(1 / 6) and b.gpu_idle_hours == pytest.approx(3 - 1 / 6)
    assert b.cpu_reserved_core_hours == 2.0 and b.cpu_busy_core_hours is None
    assert b.requests == 500
    assert b.unallocated_spend == Decimal("2.025")  # 3.90 - 1.20 (llm) - 0.675 (emb)

    c = host(report, "cpubox")
    assert c.spend == Decimal("0.60") and c.currency == "EUR" and not c.in_fleet and c.price is None
    assert c.cpu_busy_core_hours == 2.0 and c.unallocated_spend == Decimal("0.45")

    lo = host(report, "local")
    assert lo.spend is None and lo.hours == 1.5 and lo.price is None
    assert report.unpriced == ["local"]

    apis = {a.name: a for a in report.apis}
    assert apis["llm"].spend == {"USD": Decimal("1.20")}  # 1 GPU of 2 for 1 h at 2.40
    assert apis["llm"].per_1000_requests == {"USD": Decimal("4.00")}
    assert apis["llm"].requests == 300 and apis["llm"].replica_hours == 1.0
    # 0.5 GPU of 2: 30 min at 2.40 (0.30) + 30 min at 3.00 (0.375)
    assert apis["emb"].spend == {"USD": Decimal("0.675")}
    assert apis["emb"].per_1000_requests == {"USD": Decimal("3.375")}
    # on cpubox: half by 1 of 4 cores, half by 2 of 8 GiB, for 1 h at 0.60 EUR; local is not priced
    assert apis["tiny"].spend == {"EUR": Decimal("0.15")}
    assert apis["tiny"].per_1000_requests == {}  # no request: no per-request cost
    assert {h.host: h.spend for h in apis["tiny"].hosts} == {"cpubox": Decimal("0.15"), "local": None}
    assert {h.host: h.replica_hours for h in apis["tiny"].hosts} == {"cpubox": 1.0, "local": 1.0}

    assert report.total == {"EUR": Decimal("0.60"), "USD": Decimal("3.90")}
    assert report.unallocated == {"EUR": Decimal("0.45"), "USD": Decimal("2.025")}
    assert report.per_hour == {"USD": Decimal("3.00")}  # the fleet now: box; local has no price


def test_a_window_counts_only_its_minutes(store: Store) -> None:
    run_timeline(UsageMeter(store))
    report = cost_report(store, T0 + 60 * MIN, T0 + 90 * MIN)
    assert host(report, "box").spend == Decimal("1.50")
    assert {a.name: a.spend for a in report.apis} == {"emb": {"USD": Decimal("0.375")}}
    assert report.total == {"USD": Decimal("1.50")}
    later = cost_report(store, T0 + 100 * MIN, T0 + 200 * MIN)
    assert later.hosts == [] and later.apis == [] and later.total == {}


def test_rollups_are_pruned_after_the_retention(store: Store) -> None:
    meter = UsageMeter(store, retention_seconds=86400)
    run_timeline(meter)
    assert cost_report(store, T0, T0 + 90 * MIN).total
    meter.flush(T0 + 60 * MIN + 86400)  # a day after minute 60: the minutes from 60 on are kept
    assert host(cost_report(store, T0, T0 + 2 * 86400), "box").spend == Decimal("1.50")
    meter.flush(T0 + 2 * 86400)
    left = cost_report(store, T0, T0 + 2 * 86400)
    assert [h.name for h in left.hosts] == ["local"] and left.total == {}  # local: its last 2 minutes


def test_a_long_pause_between_snapshots_is_not_billed(store: Store) -> None:
    meter = UsageMeter(store, max_gap_seconds=120)
    meter.record(T0, [box(Decimal("1.20"))])
    meter.record(T0 + 60, [box(Decimal("1.20"))])
    meter.flush(T0 + 8 * 3600)  # the laptop slept for eight hours: only the last 2 minutes count
    assert host(cost_report(store, T0, T0 + 9 * 3600), "box").spend == Decimal("0.06")


def test_shares_and_rounding() -> None:
    # a third of a cent per hour for one millisecond: rounded once, to micro-units
    assert amount(Fraction(1, 3)) == Decimal("0.000000")
    assert amount(Fraction(2_500_000, 1)) == Decimal("2.5")
    # a GPU host: by GPU time alone (CPU and memory do not count there)
    assert api_share(2_400_000, 2, 16, 65536, gpu=1000 * 3_600_000, cpu=10**12, mem=10**12) == 1_200_000
    # a CPU host: half CPU, half memory
    assert api_share(1_000_000, 0, 4, 1000, gpu=0, cpu=1000 * 3_600_000, mem=0) == 125_000
    assert api_share(1_000_000, 0, 4, 1000, gpu=0, cpu=0, mem=500 * 3_600_000) == 250_000
