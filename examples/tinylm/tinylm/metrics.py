"""The server's Prometheus metrics, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.running = Gauge("tinylm_requests_running", "Requests generating now (in the batch).",
                             registry=registry)
        self.waiting = Gauge("tinylm_requests_waiting",
                             "Requests waiting for a slot (past TINYLM_MAX_CONCURRENCY).", registry=registry)
        self.generated_tokens = Counter("tinylm_generated_tokens", "Tokens generated.", registry=registry)
        self.prompt_tokens = Counter("tinylm_prompt_tokens", "Prompt tokens read.", registry=registry)
        self.cancelled = Counter("tinylm_requests_cancelled",
                                 "Requests whose client left before they finished.", registry=registry)
        self.finished = Counter("tinylm_requests_finished", "Requests ended, by finish reason.",
                                ["finish_reason"], registry=registry)
        self.time_to_first_token = Histogram(
            "tinylm_time_to_first_token_seconds", "From arrival to the first generated token.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=registry)
        self.model_loaded = Gauge("tinylm_model_loaded", "1 once the model is loaded and serving.",
                                  registry=registry)
