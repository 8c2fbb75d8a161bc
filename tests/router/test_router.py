"""The router end to end: real replicas, the Router in a real uvicorn server, httpx clients."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

from tests.router.conftest import replica_id, wait_for
from workbench.router import ApiRoute, SplitRoute
from workbench.spec.models import RoutingSpec


def test_forwards_paths_methods_and_request_ids(replicas, router_server):
    rep = replicas("a")
    srv = router_server()
    srv.add_api("echo", [rep])
    with httpx.Client(base_url=srv.url) as client:
        r = client.post("/echo", json={"x": 1})
        assert r.status_code == 200
        body = r.json()
        assert body["payload"] == {"x": 1}
        rid = r.headers["x-request-id"]
        assert len(rid) == 32 and body["request_id"] == rid
        assert r.headers["x-workbench-replica"] == replica_id(rep)
        r = client.post("/echo/", json=[1], headers={"X-Request-ID": "mine-42"})
        assert r.headers["x-request-id"] == "mine-42" and r.json()["request_id"] == "mine-42"
        assert client.get("/echo/readyz").json()["ready"] is True
        assert client.get("/echo/healthz").status_code == 200
        assert client.delete("/echo/readyz").status_code == 405  # the replica's answer, passed on
        assert client.post("/echo/?sleep=0", content=b"raw").json()["payload"] == {"bytes": 3}
        assert "workbench" in client.get("/echo/metrics").text


def test_unknown_api_lists_known_ones(router_server):
    srv = router_server()
    srv.call(srv.router.set_route, ApiRoute(name="b"))
    srv.call(srv.router.set_route, ApiRoute(name="a"))
    r = httpx.get(srv.url + "/nope/x")
    assert r.status_code == 404
    assert r.json() == {"error": "no API named 'nope'", "apis": ["a", "b"]}
    assert httpx.get(srv.url + "/").status_code == 404


def test_no_endpoint_is_503_with_retry_after(router_server):
    srv = router_server()
    srv.call(srv.router.set_route, ApiRoute(name="echo"))
    r = httpx.post(srv.url + "/echo", json={})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "no ready replica" in r.json()["error"]


def test_body_over_limit_is_413(replicas, router_server):
    srv = router_server()
    srv.add_api("echo", [replicas()], max_body_bytes=1000)
    assert httpx.post(srv.url + "/echo", content=b"x" * 1001).status_code == 413

    def chunks():
        for _ in range(5):
            yield b"y" * 400

    r = httpx.post(srv.url + "/echo", content=chunks())  # chunked: counted while streaming
    assert r.status_code == 413
    assert httpx.post(srv.url + "/echo", content=b"x" * 1000).status_code == 200


def test_timeout_is_504(replicas, router_server):
    srv = router_server()
    srv.add_api("echo", [replicas()], routing={"timeout": 0.3})
    started = time.monotonic()
    r = httpx.post(srv.url + "/echo?sleep=3", json={})
    assert r.status_code == 504 and "0.3s" in r.json()["error"]
    assert time.monotonic() - started < 2.5


def test_api_keys(replicas, router_server):
    srv = router_server()
    srv.add_api("echo", [replicas()], api_keys=frozenset({"s3cret"}))
    url = srv.url + "/echo"
    assert httpx.post(url, json={}).status_code == 401
    assert httpx.post(url, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(url, json={}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert httpx.post(url, json={}, headers={"X-API-Key": "s3cret"}).status_code == 200


def test_require_api_keys_refuses_routes_without_keys(replicas, router_server):
    srv = router_server(require_api_keys=True)
    rep = replicas()
    srv.add_api("open", [rep])
    srv.add_api("locked", [rep], api_keys=frozenset({"k"}))
    r = httpx.post(srv.url + "/open", json={})
    assert r.status_code == 401 and "configure keys" in r.json()["error"]
    assert httpx.post(srv.url + "/locked", json={}, headers={"X-API-Key": "k"}).status_code == 200


def test_only_ready_endpoints_get_traffic(replicas, router_server, tmp_path):
    """A replica handed over while it still loads (its /readyz answers 503) is taken out of
    rotation by the router's active health check; once it is ready it gets traffic again.
    No retries, so a request that reached the loading replica would show as its 503."""
    loaded = tmp_path / "loaded"
    ready = replicas("ready")
    loading = replicas("loading", ready=False, config={"ready_file": str(loaded)})
    assert httpx.get(loading.url + "/readyz").status_code == 503
    srv = router_server()
    srv.add_api("echo", [ready, loading], routing={"max_retries": 0})

    def answers(n: int) -> list[httpx.Response]:
        return [httpx.post(srv.url + "/echo", json={}) for _ in range(n)]

    wait_for(lambda: all(r.status_code == 200 for r in answers(20)), 20,
             "the health check to take the loading replica out")
    later = answers(40)
    assert [r.status_code for r in later] == [200] * 40
    assert {r.headers["x-workbench-replica"] for r in later} == {replica_id(ready)}
    loaded.touch()
    loading.wait_ready()
    wait_for(lambda: {r.headers["x-workbench-replica"] for r in answers(20)}
             == {replica_id(ready), replica_id(loading)}, 20, "the now ready replica back in rotation")


def test_set_endpoints_lets_in_flight_requests_finish(replicas, router_server):
    old, new = replicas("old"), replicas("new")
    srv = router_server()
    srv.add_api("echo", [old])
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", httpx.post(srv.url + "/echo?sleep=1",
                                                                                json={}, timeout=10)))
    thread.start()
    wait_for(lambda: srv.call(srv.router.in_flight, "echo") == 1, 10, "request in flight")
    srv.set("echo", [new])
    assert httpx.post(srv.url + "/echo", json={}).headers["x-workbench-replica"] == replica_id(new)
    thread.join(10)
    assert result["r"].status_code == 200 and result["r"].json()["replica"] == "old"


def test_scale_to_zero_wakes_and_waits(replicas, router_server):
    woken: list[str] = []
    srv = router_server(wake=woken.append)
    srv.call(srv.router.set_route, ApiRoute(name="lazy", scale_to_zero=True,
                                            routing=RoutingSpec(scale_from_zero_timeout=30)))
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", httpx.post(srv.url + "/lazy", json={},
                                                                                timeout=40)))
    thread.start()
    wait_for(lambda: woken == ["lazy"], 10, "wake called")
    assert srv.call(srv.router.in_flight, "lazy") == 1  # the autoscaler sees the waiting request
    rep = replicas("late")
    srv.set("lazy", [rep])
    thread.join(20)
    assert result["r"].status_code == 200 and result["r"].json()["replica"] == "late"
    assert woken == ["lazy"]


def test_scale_to_zero_times_out(router_server):
    srv = router_server(wake=lambda api: None)
    srv.call(srv.router.set_route, ApiRoute(name="lazy", scale_to_zero=True,
                                            routing=RoutingSpec(scale_from_zero_timeout=0.5)))
    r = httpx.post(srv.url + "/lazy", json={}, timeout=10)
    assert r.status_code == 503 and "did not start" in r.json()["error"]


def test_split_by_weight_and_shadow(replicas, router_server):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    a, b, shadow = replicas("a"), replicas("b"), replicas("shadow")
    srv = router_server(registry=registry)
    for name, rep in (("a", a), ("b", b), ("s", shadow)):
        srv.add_api(name, [rep])
    srv.call(srv.router.set_route, SplitRoute(name="split", targets=(("a", 80.0), ("b", 20.0)), shadow="s"))

    async def go() -> list[str]:
        async with httpx.AsyncClient(base_url=srv.url) as client:
            sem = asyncio.Semaphore(16)

            async def one() -> str:
                async with sem:
                    r = await client.post("/split", json={"k": 1})
                    assert r.status_code == 200
                    return r.json()["replica"]

            return await asyncio.gather(*(one() for _ in range(1000)))

    answers = asyncio.run(go())
    share_a = answers.count("a") / len(answers)
    assert 0.75 <= share_a <= 0.85, share_a
    assert "shadow" not in answers

    def shadow_count(outcome: str) -> float:
        return registry.get_sample_value("workbench_router_shadow_requests_total",
                                         {"api": "s", "outcome": outcome}) or 0.0

    wait_for(lambda: shadow_count("ok") + shadow_count("dropped") == 1000, 20, "shadow copies")
    assert shadow_count("ok") >= 500  # copies are dropped only past 32 at once


def test_drain_finishes_in_flight(replicas, router_server):
    srv = router_server()
    srv.add_api("echo", [replicas()])
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", httpx.post(srv.url + "/echo?sleep=1",
                                                                                json={}, timeout=10)))
    thread.start()
    wait_for(lambda: srv.call(srv.router.in_flight, "echo") == 1, 10, "request in flight")
    drained = asyncio.run_coroutine_threadsafe(srv.router.drain(10), srv.loop)
    wait_for(lambda: httpx.post(srv.url + "/echo", json={}).status_code == 503, 5, "refusing new requests")
    assert drained.result(10) is True
    thread.join(10)
    assert result["r"].status_code == 200


def test_traffic_and_metrics(replicas, router_server):
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    srv = router_server(registry=registry)
    rep = replicas()
    srv.add_api("echo", [rep])
    for _ in range(30):
        httpx.post(srv.url + "/echo", json={})
    httpx.post(srv.url + "/echo/nothing-here", json={})
    t = srv.call(srv.router.traffic, "echo")
    assert t.status_2xx == 30 and t.status_4xx == 1 and t.status_5xx == 0
    assert t.requests_per_second > 0 and t.p50_ms is not None and t.p99_ms is not None
    assert 0 < t.p50_ms <= t.p99_ms < 5000
    assert t.replica_in_flight == {replica_id(rep): 0} and t.ejected == ()
    text = generate_latest(registry).decode()
    assert 'workbench_router_requests_total{api="echo",status="2xx"} 30.0' in text
    assert "workbench_router_request_duration_seconds_bucket" in text
    assert srv.call(srv.router.traffic, "unknown").status_2xx == 0


def test_replica_counts_say_what_each_replica_was_sent(replicas, router_server):
    """The controller's meter reads these each second (requests per API and host, idle hosts)."""
    a, b = replicas("a"), replicas("b")
    server = router_server()
    server.add_api("echo", [a, b])
    assert sorted((c.replica_id, c.requests) for c in server.call(server.router.replica_counts)) == sorted(
        [(replica_id(a), 0), (replica_id(b), 0)])
    with httpx.Client() as client:
        for i in range(10):
            assert client.post(f"{server.url}/echo", json={"i": i}).status_code == 200
    counts = server.call(server.router.replica_counts)
    assert sum(c.requests for c in counts) == 10 and all(c.in_flight == 0 for c in counts)
    assert {(c.api, c.host) for c in counts} == {("echo", "local")}
