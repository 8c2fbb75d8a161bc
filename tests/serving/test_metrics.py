"""workbench.serving.metrics: the Prometheus exposition of one replica."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbench.serving.metrics import Metrics


def test_render_counts_by_status_class() -> None:
    metrics = Metrics(lambda: 2, lambda: 5, max_batch_size=1)
    metrics.observe(200, 0.01)
    metrics.observe(201, 0.02)
    metrics.observe(503, 0.0)
    text = metrics.render().decode()
    assert 'workbench_requests_total{status="2xx"} 2.0' in text
    assert 'workbench_requests_total{status="5xx"} 1.0' in text
    assert "workbench_request_duration_seconds_count 3.0" in text
    assert "workbench_in_flight_requests 2.0" in text
    assert "workbench_queue_depth 5.0" in text
    assert "workbench_batch_size" not in text


def test_registries_are_separate() -> None:
    a, b = Metrics(lambda: 0, lambda: 0), Metrics(lambda: 0, lambda: 0, max_batch_size=8)
    a.observe(200, 0.1)
    b.observe_batch(8)
    assert 'status="2xx"' not in b.render().decode()
    assert 'workbench_batch_size_bucket{le="8.0"} 1.0' in b.render().decode()


async def test_metrics_endpoint_after_requests(app_client: Callable[..., Any]) -> None:
    code = """
    class Predictor:
        def predict(self, payload):
            if payload == "fail":
                raise RuntimeError("x")
            return payload
    """
    client = await app_client(code)
    for payload in ("a", "b", "fail"):
        await client.post("/", json=payload)
    await client.post("/", content=b"{", headers={"content-type": "application/json"})
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'workbench_requests_total{status="2xx"} 2.0' in text
    assert 'workbench_requests_total{status="4xx"} 1.0' in text
    assert 'workbench_requests_total{status="5xx"} 1.0' in text
    assert "workbench_request_duration_seconds_bucket" in text
    assert "workbench_in_flight_requests 0.0" in text
    assert "workbench_queue_depth 0.0" in text
