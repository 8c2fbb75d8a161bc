"""Prometheus metrics of one replica, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST

DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def _batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    buckets: list[float] = []
    size = 1
    while size < max_batch_size:
        buckets.append(size)
        size *= 2
    buckets.append(max_batch_size)
    return tuple(buckets)


class Metrics:
    """``workbench_requests_total{status="2xx"|"4xx"|"5xx"|...}``,
    ``workbench_request_duration_seconds``, ``workbench_in_flight_requests`` (running),
    ``workbench_queue_depth`` (waiting) and, with batching, ``workbench_batch_size``.

    The gauges read `in_flight` and `queue_depth` when scraped: nothing on the hot path.
    """

    def __init__(
        self,
        in_flight: Callable[[], float],
        queue_depth: Callable[[], float],
        max_batch_size: int = 1,
    ) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "workbench_requests",
            "Prediction requests answered, by status class.",
            ["status"],
            registry=self.registry,
        )
        self._by_class: dict[int, Any] = {}
        self._duration = Histogram(
            "workbench_request_duration_seconds",
            "Time from a prediction request's arrival to its response.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        Gauge(
            "workbench_in_flight_requests", "Predictions running now.", registry=self.registry
        ).set_function(in_flight)
        Gauge(
            "workbench_queue_depth", "Prediction requests waiting to run.", registry=self.registry
        ).set_function(queue_depth)
        self._batch: Histogram | None = None
        if max_batch_size > 1:
            self._batch = Histogram(
                "workbench_batch_size",
                "Requests per predict() call.",
                buckets=_batch_buckets(max_batch_size),
                registry=self.registry,
            )

    def observe(self, status: int, seconds: float) -> None:
        """Count one answered request."""
        cls = status // 100
        child = self._by_class.get(cls)
        if child is None:
            child = self._by_class[cls] = self._requests.labels(status=f"{cls}xx")
        child.inc()
        self._duration.observe(seconds)

    def observe_batch(self, size: int) -> None:
        if self._batch is not None:
            self._batch.observe(size)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
