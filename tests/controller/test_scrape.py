"""Autoscaling on a gauge the replicas expose (controller/scrape.py, scaling.py): the real tinylm
server's /metrics scraped with prometheus-client's parser, its waiting gauge fed to the real
Autoscaler through the loop; a gauge that is missing or a scrape that fails is an event and
leaves the replica count alone."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.examples.test_tinylm_server import Served, served  # noqa: F401  (the fixture)
from tests.support.real_parts import free_port, wait_until
from workbench.controller.events import Events
from workbench.controller.scaling import AutoscalingLoop
from workbench.controller.scrape import MetricScraper, ScrapedCollector, ScrapeTarget, gauge_value
from workbench.controller.state import ApiRecord, Store
from workbench.router import Router
from workbench.router.types import Endpoint
from workbench.spec.models import ApiSpec

PAGE = """# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="a"} 2.0
vllm:num_requests_waiting{model_name="b"} 1.5
# TYPE tgi_queue_size gauge
tgi_queue_size 4
"""


def test_gauge_value_sums_labelled_samples() -> None:
    assert gauge_value(PAGE, "vllm:num_requests_waiting") == 3.5
    assert gauge_value(PAGE, "tgi_queue_size") == 4.0
    assert gauge_value(PAGE, "tinylm_requests_waiting") is None


def scraper_of(served: Served, metric: str, extra: tuple[Endpoint, ...] = ()) -> MetricScraper:  # noqa: F811
    endpoints = (Endpoint(replica_id="lm-0", url=served.url), *extra)
    return MetricScraper(lambda: [ScrapeTarget("lm", metric, "/metrics", endpoints)])


def scrape(scraper: MetricScraper) -> None:
    """One scrape in an event loop of its own (the scraper's client closed with it)."""
    async def once() -> None:
        try:
            await scraper.scrape_once()
        finally:
            await scraper.close()

    asyncio.run(once())


def test_scraping_the_real_server(served: Served) -> None:  # noqa: F811
    scraper = scraper_of(served, "tinylm_requests_waiting")
    scrape(scraper)
    assert scraper.total("lm") == (0.0, None)
    assert scraper.replicas("lm")["lm-0"].value == 0.0
    collected = next(iter(ScrapedCollector(scraper, lambda: ["lm"]).collect()))
    assert [(s.labels, s.value) for s in collected.samples] == [
        ({"api": "lm", "replica": "lm-0", "metric": "tinylm_requests_waiting"}, 0.0)]

    missing = scraper_of(served, "vllm:num_requests_waiting")
    scrape(missing)
    total, problem = missing.total("lm")
    assert total is None and problem == "lm-0: /metrics has no vllm:num_requests_waiting " \
                                        "(check autoscaling.metric)"

    gone = scraper_of(served, "tinylm_requests_waiting",
                      (Endpoint(replica_id="lm-1", url=f"http://127.0.0.1:{free_port()}"),))
    scrape(gone)
    total, problem = gone.total("lm")
    assert total is None and problem is not None and problem.startswith("lm-1: cannot scrape /metrics")
    assert MetricScraper(lambda: []).total("lm") == (None, None)  # nothing scraped: no data


def record(tmp_path: Path, metric: str) -> tuple[Store, ApiRecord]:
    spec = ApiSpec.model_validate({
        "name": "lm", "container": {"command": ["python", "-m", "tinylm"], "metrics": "/metrics"},
        "autoscaling": {"metric": metric, "target": 1, "max_replicas": 4, "window": 2,
                        "upscale_stabilization_period": 0, "downscale_stabilization_period": 600}})
    store = Store(tmp_path / "state.db")
    rec = ApiRecord(name="lm", kind="api", spec=spec.model_dump(mode="json", by_alias=True),
                    desired_replicas=1)
    store.put_api(rec)
    return store, rec


def test_the_waiting_gauge_scales_up(served: Served, tmp_path: Path) -> None:  # noqa: F811
    store, _ = record(tmp_path, "tinylm_requests_waiting")
    scraper = scraper_of(served, "tinylm_requests_waiting")
    loop = AutoscalingLoop(store, Router(), Events(store), lambda: None, scraper=scraper)
    # the server generates 2 at once (TINYLM_MAX_CONCURRENCY=2): 6 long streams leave 4 waiting
    client = served.client()
    stop = threading.Event()

    def stream() -> None:
        for _ in client.completions.create(model=served.model, prompt="A", max_tokens=400, stream=True):
            if stop.is_set():
                break

    threads = [threading.Thread(target=stream, daemon=True) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: served.metric("tinylm_requests_waiting") >= 4, 10, what="4 requests waiting")

        def scaled() -> bool:
            scrape(scraper)
            loop.tick()
            current = store.get_api("lm")
            return current is not None and current.desired_replicas > 1

        wait_until(scaled, 20, interval=0.3, what="a scale-up on the waiting gauge")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    current = store.get_api("lm")
    assert current is not None and current.desired_replicas == 2  # x1.5 at most, from 1: 2
    (event,) = [e for e in store.events("lm") if e.kind == "autoscale"]
    assert "1 → 2 replicas" in event.message and event.data["target_concurrency"] == 1.0


def test_a_gauge_the_replicas_lack_is_an_event_and_no_scaling(served: Served,  # noqa: F811
                                                              tmp_path: Path) -> None:
    store, _ = record(tmp_path, "vllm:num_requests_waiting")
    scraper = scraper_of(served, "vllm:num_requests_waiting")
    loop = AutoscalingLoop(store, Router(), Events(store), lambda: None, scraper=scraper)
    for _ in range(4):
        scrape(scraper)
        loop.tick()
    current = store.get_api("lm")
    assert current is not None and current.desired_replicas == 1
    events = [e for e in store.events("lm") if e.kind == "autoscale"]
    assert len(events) == 1, events  # once, not every tick
    assert "cannot read vllm:num_requests_waiting from the replicas of lm, so the replica count stays" \
        in events[0].message
    decision = loop.scalers["lm"].recommend(1, 1e9)
    assert decision.avg_in_flight is None  # no sample was recorded


def test_a_spec_scaling_on_a_gauge_needs_the_metrics_path() -> None:
    with pytest.raises(ValueError, match=r"set container\.metrics to their path"):
        ApiSpec.model_validate({"name": "lm", "container": {"command": ["x"]},
                                "autoscaling": {"metric": "tinylm_requests_waiting", "target": 1}})
