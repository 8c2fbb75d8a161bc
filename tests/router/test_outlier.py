"""Passive outlier ejection."""

from __future__ import annotations

from workbench.router.outlier import MAX_EJECTION_SECONDS, record_failure, record_success
from workbench.router.pool import Pool
from workbench.router.types import Endpoint
from workbench.spec.models import RoutingSpec


def pool_of(n: int) -> Pool:
    pool = Pool()
    pool.set([Endpoint(replica_id=f"r{i}", url=f"http://127.0.0.1:{1000 + i}") for i in range(n)])
    return pool


def test_consecutive_failures_eject_with_doubling():
    pool = pool_of(4)
    ep = pool.endpoints[0]
    routing = RoutingSpec(eject_after=3, eject_seconds=10)
    assert not record_failure(pool, ep, routing, 0.0)
    assert not record_failure(pool, ep, routing, 0.0)
    assert record_failure(pool, ep, routing, 0.0)
    assert ep.ejected_until == 10.0 and not ep.available(5.0)
    for _ in range(3):
        record_failure(pool, ep, routing, 20.0)
    assert ep.ejected_until == 40.0  # 20 s the second time
    ep.ejections = 30
    for _ in range(3):
        record_failure(pool, ep, routing, 100.0)
    assert ep.ejected_until == 100.0 + MAX_EJECTION_SECONDS


def test_success_resets_the_count():
    pool = pool_of(2)
    ep = pool.endpoints[0]
    routing = RoutingSpec(eject_after=2)
    record_failure(pool, ep, routing, 0.0)
    record_success(ep)
    assert not record_failure(pool, ep, routing, 0.0)


def test_never_ejects_the_last_endpoint():
    pool = pool_of(1)
    routing = RoutingSpec(eject_after=1, max_ejected_percent=100)
    for _ in range(10):
        assert not record_failure(pool, pool.endpoints[0], routing, 0.0)
    pool = pool_of(2)
    a, b = pool.endpoints
    assert record_failure(pool, a, routing, 0.0)
    assert not record_failure(pool, b, routing, 0.0)  # the other one is the last still available


def test_max_ejected_percent():
    pool = pool_of(4)
    routing = RoutingSpec(eject_after=1, max_ejected_percent=50)
    results = [record_failure(pool, ep, routing, 0.0) for ep in pool.endpoints]
    assert results == [True, True, False, False]
