"""Load-balancing policies: unit tests on endpoint states, and real replicas over HTTP."""

from __future__ import annotations

import asyncio
import collections
import time

import httpx
import pytest

from tests.router.conftest import replica_id
from workbench.router.policies import POLICIES, ewma, least_outstanding, p2c, round_robin
from workbench.router.pool import EndpointState, Pool
from workbench.router.types import Endpoint


def states(n: int) -> tuple[Pool, list[EndpointState]]:
    pool = Pool()
    pool.set([Endpoint(replica_id=f"r{i}", url=f"http://127.0.0.1:{1000 + i}") for i in range(n)])
    return pool, list(pool.endpoints)


def test_round_robin_is_exact():
    pool, eps = states(3)
    picks = [round_robin(pool, eps, 0.0).replica_id for _ in range(9)]
    assert collections.Counter(picks) == {"r0": 3, "r1": 3, "r2": 3}


@pytest.mark.parametrize("policy", [p2c, least_outstanding])
def test_load_aware_policies_favour_the_idle_endpoint(policy):
    pool, eps = states(2)
    eps[0].in_flight = 5
    picks = collections.Counter(policy(pool, eps, 0.0).replica_id for _ in range(200))
    assert picks["r1"] == 200


def test_p2c_spreads_equal_load():
    pool, eps = states(4)
    picks = collections.Counter(p2c(pool, eps, 0.0).replica_id for _ in range(4000))
    assert all(800 < picks[f"r{i}"] < 1200 for i in range(4))


def test_ewma_avoids_a_slow_endpoint():
    pool, eps = states(2)
    now = time.monotonic()
    for _ in range(20):
        eps[0].observe(0.5, now)
        eps[1].observe(0.002, now)
    picks = collections.Counter(ewma(pool, eps, now).replica_id for _ in range(200))
    assert picks["r1"] == 200


def test_ewma_counts_outstanding_age():
    _, eps = states(2)
    now = time.monotonic()
    eps[0].begin(now - 3.0)  # a request outstanding for 3 s: looks slow before it answers
    assert eps[0].cost(now) > eps[1].cost(now) * 100


def test_peak_ewma_decays_towards_faster_samples():
    _, [ep] = states(1)
    ep.observe(1.0, 100.0)
    assert ep.latency(100.0) == 1.0
    ep.observe(0.001, 130.0)  # 3 time constants later
    assert ep.latency(130.0) < 0.06


def http_spread(url: str, n: int, concurrency: int, path: str = "/api") -> collections.Counter[str]:
    async def go() -> list[str]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> str:
                async with sem:
                    r = await client.post(path, json={})
                    assert r.status_code == 200
                    return r.headers["x-workbench-replica"]

            return await asyncio.gather(*(one() for _ in range(n)))

    return collections.Counter(asyncio.run(go()))


def test_round_robin_over_http(replicas, router_server):
    reps = [replicas(f"r{i}") for i in range(3)]
    srv = router_server()
    srv.add_api("api", reps, routing={"policy": "round_robin"})
    with httpx.Client(base_url=srv.url) as client:
        seen = [client.post("/api", json={}).headers["x-workbench-replica"] for _ in range(30)]
    assert collections.Counter(seen) == {replica_id(r): 10 for r in reps}


@pytest.mark.parametrize("policy", ["p2c", "least_outstanding", "ewma"])
def test_busy_or_slow_replica_gets_little_traffic(replicas, router_server, policy):
    slow, fast = replicas("slow", config={"sleep": 0.3}), replicas("fast")
    srv = router_server()
    srv.add_api("api", [slow, fast], routing={"policy": policy})
    spread = http_spread(srv.url, 200, 8)
    assert spread[replica_id(fast)] >= 180, spread


def test_all_policies_are_registered():
    assert set(POLICIES) == {"p2c", "least_outstanding", "round_robin", "ewma"}
