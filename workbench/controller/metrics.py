"""Per-API replica gauges (desired, ready) for GET /metrics, computed at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workbench.controller.state import Store


class ReplicaCollector(Collector):
    def __init__(self, store: Store, ready: Callable[[str], int]):
        self.store = store
        self.ready = ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        desired = GaugeMetricFamily("workbench_api_replicas_desired", "replicas the API should have",
                                    labels=["api"])
        ready = GaugeMetricFamily("workbench_api_replicas_ready", "ready replicas in the router's pool",
                                  labels=["api"])
        for record in self.store.apis():
            if record.kind == "api":
                desired.add_metric([record.name], record.desired_replicas)
                ready.add_metric([record.name], self.ready(record.name))
        yield desired
        yield ready
