"""An API's pool (workbench/router/pool.py): the endpoints kept across updates, and the eligible
list the picks read — up to date after health changes, ejections and their end; and `pick`."""

from __future__ import annotations

import collections

from tests.router.scripted import refused_url
from workbench.router import outlier
from workbench.router.health import HealthChecker
from workbench.router.policies import POLICIES, pick, round_robin
from workbench.router.pool import EndpointState, Pool
from workbench.router.types import Endpoint
from workbench.spec.models import RoutingSpec


def endpoints(*ids: str) -> list[Endpoint]:
    return [Endpoint(replica_id=i, url=f"http://127.0.0.1:{1000 + n}") for n, i in enumerate(ids)]


def ids(states: list[EndpointState]) -> list[str]:
    return [s.replica_id for s in states]


def test_set_keeps_the_state_of_endpoints_that_stay():
    pool = Pool()
    pool.set(endpoints("a", "b"))
    a, b = pool.endpoints
    a.in_flight = 3
    pool.set(endpoints("a", "c"))
    assert pool.endpoints[0] is a and a.in_flight == 3 and not a.removed
    assert b.removed and ids(pool.eligible(0.0)) == ["a", "c"]
    pool.set([*endpoints("a"), Endpoint(replica_id="a", url="http://127.0.0.1:9")])  # duplicate id
    assert ids(pool.endpoints) == ["a"]


def test_eligible_leaves_out_unhealthy_and_ejected_in_pool_order():
    pool = Pool()
    pool.set(endpoints("a", "b", "c", "d"))
    assert ids(pool.eligible(0.0)) == ["a", "b", "c", "d"]
    a, b, c, _ = pool.endpoints
    b.healthy = False
    c.ejected_until = 50.0
    assert ids(pool.eligible(1.0)) == ["a", "b", "c", "d"]  # not told yet
    pool.invalidate()
    assert ids(pool.eligible(1.0)) == ["a", "d"]
    assert ids(pool.eligible(49.9)) == ["a", "d"]
    assert ids(pool.eligible(50.0)) == ["a", "c", "d"]  # the ejection ran out, nobody had to say so
    b.healthy = True
    pool.invalidate()
    assert ids(pool.eligible(50.0)) == ["a", "b", "c", "d"]
    assert a is pool.endpoints[0]


def test_ejection_takes_the_endpoint_out_at_once():
    pool = Pool()
    pool.set(endpoints("a", "b", "c"))
    routing = RoutingSpec(eject_after=1, eject_seconds=10, max_ejected_percent=50)
    assert ids(pool.eligible(0.0)) == ["a", "b", "c"]
    assert outlier.record_failure(pool, pool.endpoints[1], routing, 5.0)
    assert ids(pool.eligible(5.0)) == ["a", "c"]
    assert ids(pool.eligible(15.0)) == ["a", "b", "c"]


def test_pick_leaves_out_what_was_tried():
    pool = Pool()
    pool.set(endpoints("a", "b", "c"))
    a, b, c = pool.endpoints
    for name, policy in POLICIES.items():
        picks = collections.Counter(pick(pool, policy, [a, c], 0.0) for _ in range(50))
        assert picks == {b: 50}, name
        assert pick(pool, policy, [a, b, c], 0.0) is None
        assert {pick(pool, policy, (), 0.0) for _ in range(300)} == {a, b, c}, name


def test_pick_with_one_candidate_skips_the_policy():
    pool = Pool()
    pool.set(endpoints("a", "b"))
    a, b = pool.endpoints
    assert pick(pool, round_robin, [a], 0.0) is b
    assert pool.rr_next == 0  # round robin did not move on
    assert pick(Pool(), round_robin, (), 0.0) is None


async def test_health_round_reports_changes_only():
    pool = Pool()
    pool.set([Endpoint(replica_id="down", url=refused_url())])
    changes: list[int] = []
    checker = HealthChecker(lambda: pool.endpoints, on_change=lambda: changes.append(1), timeout=2.0)
    checker.start()
    try:
        [state] = pool.endpoints
        await checker.check_all()
        assert not state.healthy and changes == [1]
        await checker.check_all()
        assert changes == [1]  # still down: nothing changed
    finally:
        await checker.close()
