"""A deleted and re-created API (a route of another incarnation) starts its counters afresh, even
when the router never saw the deletion (the controller synced once between the two)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from workbench.router import ApiRoute, Router


def count(registry: CollectorRegistry, api: str) -> float | None:
    return registry.get_sample_value("workbench_router_requests_total", {"api": api, "status": "2xx"})


def test_a_route_of_another_incarnation_starts_at_zero() -> None:
    registry = CollectorRegistry()
    router = Router(registry=registry)
    router.set_route(ApiRoute(name="echo", incarnation=1.0))
    stats = router._apis["echo"].stats
    for _ in range(3):
        stats.done(200, 0.01, 100.0)
    stats.upstream_error("reset")
    assert router.traffic("echo").status_2xx == 3 and count(registry, "echo") == 3

    router.set_route(ApiRoute(name="echo", incarnation=1.0, max_body_bytes=5))  # same API, new settings
    assert router.traffic("echo").status_2xx == 3

    router.set_route(ApiRoute(name="echo", incarnation=2.0))  # deleted and created again
    traffic = router.traffic("echo")
    assert traffic.status_2xx == 0 and traffic.p50_ms is None
    assert count(registry, "echo") == 0  # the series start again
    assert registry.get_sample_value("workbench_router_upstream_errors_total",
                                     {"api": "echo", "kind": "reset"}) is None


def test_a_removed_route_forgets_its_counters() -> None:
    registry = CollectorRegistry()
    router = Router(registry=registry)
    router.set_route(ApiRoute(name="echo"))
    router._apis["echo"].stats.done(500, 0.01, 100.0)
    router.remove_route("echo")
    assert registry.get_sample_value("workbench_router_requests_total",
                                     {"api": "echo", "status": "5xx"}) is None
    router.set_route(ApiRoute(name="echo"))
    assert router.traffic("echo").status_5xx == 0
