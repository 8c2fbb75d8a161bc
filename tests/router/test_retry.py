"""Retries on another replica, and the budget that bounds them; unit tests and real faults."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from tests.router.conftest import replica_id, wait_for
from workbench.router.retry import RetryBudget


def test_budget_allows_share_of_requests_plus_minimum():
    budget = RetryBudget(0.2, 0.0)
    now = 1000.0
    for _ in range(100):
        budget.request(now)
    granted = sum(budget.try_withdraw(now) for _ in range(100))
    assert granted == 20
    budget = RetryBudget(0.0, 1.0)  # 1/s over the 10 s window
    assert sum(budget.try_withdraw(now) for _ in range(50)) == 10
    assert budget.try_withdraw(now + 11)  # the window moved on


def test_sigkill_one_of_three_under_load_loses_no_request(replicas, router_server):
    reps = [replicas(f"r{i}") for i in range(3)]
    srv = router_server()
    srv.add_api("echo", reps, routing={"eject_after": 3})
    victim = reps[0]
    results: list[int] = []

    async def load(seconds: float) -> None:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            stop_at = time.monotonic() + seconds

            async def worker() -> None:
                while time.monotonic() < stop_at:
                    r = await client.post("/echo?sleep=0.01", json={"n": 1})
                    results.append(r.status_code)

            async def killer() -> None:
                await asyncio.sleep(seconds / 3)
                victim.proc.send_signal(signal.SIGKILL)

            await asyncio.gather(killer(), *(worker() for _ in range(20)))

    asyncio.run(load(3.0))
    assert len(results) > 100
    assert [s for s in results if s != 200] == []
    traffic = srv.call(srv.router.traffic, "echo")
    assert replica_id(victim) in traffic.ejected
    assert traffic.ejections >= 1 and traffic.retries >= 1


def test_queue_full_is_retried_elsewhere(replicas, router_server):
    busy = replicas("busy", serving={"max_concurrency": 1, "max_queue": 0})
    idle = replicas("idle")
    srv = router_server()
    srv.add_api("echo", [busy, idle], routing={"policy": "round_robin"})
    with httpx.Client(base_url=busy.url, timeout=10) as direct:
        import threading

        hold = threading.Thread(target=lambda: direct.post("/?sleep=2", json={}))
        hold.start()
        time.sleep(0.3)  # the busy replica's only slot is now taken
        try:
            assert direct.post("/", json={}).status_code == 503  # its queue is full
            for _ in range(6):
                r = httpx.post(srv.url + "/echo", json={})
                assert r.status_code == 200 and r.json()["replica"] == "idle"
        finally:
            hold.join(10)
    assert srv.call(srv.router.traffic, "echo").retries >= 3


def test_non_idempotent_api_is_not_retried_after_send(replicas, router_server):
    dying = [replicas("die1", config={"die": True}), replicas("die2", config={"die": True})]
    srv = router_server()
    srv.add_api("once", dying, routing={"idempotent": False})
    r = httpx.post(srv.url + "/once", json={})
    assert r.status_code == 502
    assert srv.call(srv.router.traffic, "once").retries == 0
    assert sum(rep.proc.poll() is not None for rep in dying) == 1 or wait_for(
        lambda: sum(rep.proc.poll() is not None for rep in dying) == 1, 5) is None


def test_idempotent_api_is_retried_after_send(replicas, router_server):
    dying, fine = replicas("dying", config={"die": True}), replicas("fine")
    srv = router_server()
    srv.add_api("again", [dying, fine], routing={"policy": "round_robin"})
    answers = [httpx.post(srv.url + "/again", json={}) for _ in range(4)]
    assert [r.status_code for r in answers] == [200] * 4
    assert {r.json()["replica"] for r in answers} == {"fine"}


def test_retry_budget_caps_retries_when_everything_fails(router_server):
    import socket

    # three "replicas" that refuse connections: ports bound and closed again
    ports = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    from prometheus_client import CollectorRegistry

    from workbench.router import ApiRoute, Endpoint
    from workbench.spec.models import RoutingSpec

    registry = CollectorRegistry()
    srv = router_server(registry=registry)
    routing = RoutingSpec(max_retries=3, retry_budget=0.1, retry_budget_min=0.0, eject_after=1000)
    srv.call(srv.router.set_route, ApiRoute(name="down", routing=routing))
    srv.call(srv.router.set_endpoints, "down",
             [Endpoint(replica_id=f"d{p}", url=f"http://127.0.0.1:{p}") for p in ports])
    started = time.monotonic()
    with httpx.Client(base_url=srv.url) as client:
        statuses = [client.post("/down", json={}).status_code for _ in range(200)]
    # 502 while tried; 503 once the active health checks took them all out of rotation
    assert set(statuses) <= {502, 503} and 502 in statuses
    assert time.monotonic() - started < 30
    traffic = srv.call(srv.router.traffic, "down")
    tried = statuses.count(502)
    assert 1 <= traffic.retries <= 0.1 * tried + 1  # not 3 per request
    budget = registry.get_sample_value("workbench_router_retry_budget_exhausted_total", {"api": "down"}) or 0
    assert budget >= tried - traffic.retries - 1
