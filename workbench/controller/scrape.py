"""Scraping the replicas' own Prometheus metrics for autoscaling on them (autoscaling.metric).

Every SCRAPE_SECONDS the controller GETs the metrics path of each ready replica of every API that
scales on a scraped gauge (a container API's container.metrics, a predictor's /metrics), parses
the text with prometheus-client's parser and keeps the gauge's value per replica (the sum of its
samples: vLLM labels its gauges by model name). The autoscaler reads the API's total; a replica
whose scrape failed or whose metrics lack the gauge makes the total unknown, and the autoscaler
then leaves the replica count alone (workbench/controller/scaling.py). The values show on the
controller's /metrics as ``workbench_replica_metric{api, replica, metric}``, in `workbench get`
and in the TUI.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from workbench.controller.periodic import every
from workbench.controller.state import ApiRecord
from workbench.router.types import Endpoint

log = logging.getLogger("workbench.controller.scrape")

SCRAPE_SECONDS = 2.0
SCRAPE_TIMEOUT = 2.0
MAX_METRICS_BYTES = 4 * 1024 * 1024  # a metrics page larger than this is not read


@dataclass(frozen=True)
class ScrapeTarget:
    """One API to scrape: the gauge, where its replicas serve metrics, and its ready replicas."""

    api: str
    metric: str
    path: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class Scraped:
    """One replica's last scrape: the gauge's value, or why there is none."""

    value: float | None
    problem: str | None
    at: float


def scrape_targets(records: list[ApiRecord],
                   endpoints: Callable[[str], list[Endpoint]]) -> list[ScrapeTarget]:
    """The APIs that scale on a scraped gauge, with their ready endpoints."""
    targets = []
    for record in records:
        if record.kind != "api":
            continue
        try:
            spec = record.api_spec()
        except ValueError:
            continue  # (routes.py logs an unreadable stored spec)
        scaling = spec.autoscaling
        if scaling is None or not scaling.scraped:
            continue
        path = spec.container.metrics if spec.container is not None else "/metrics"
        if path is None:
            continue
        targets.append(ScrapeTarget(record.name, scaling.metric, path, tuple(endpoints(record.name))))
    return targets


def gauge_value(text: str, metric: str) -> float | None:
    """The sum of `metric`'s samples in a Prometheus text page; None when it has none.
    Raises ValueError for a page the parser cannot read."""
    total: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric:
                total = (total or 0.0) + float(sample.value)
    return total


class MetricScraper:
    """Keeps the last scraped value of each ready replica of each API in `targets()`."""

    def __init__(self, targets: Callable[[], list[ScrapeTarget]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._targets = targets
        self._clock = clock
        self._values: dict[str, dict[str, Scraped]] = {}  # api → replica id → last scrape
        self._metric: dict[str, str] = {}  # api → its gauge
        self._client: httpx.AsyncClient | None = None

    # -- reading -----------------------------------------------------------------------------

    def replicas(self, api: str) -> dict[str, Scraped]:
        return dict(self._values.get(api, {}))

    def metric(self, api: str) -> str | None:
        return self._metric.get(api)

    def total(self, api: str) -> tuple[float | None, str | None]:
        """The API's gauge summed over its ready replicas, or (None, why not). (None, None): no
        replica is ready, so there is nothing to read yet."""
        values = self._values.get(api)
        if not values:
            return None, None
        problems = [f"{rid}: {s.problem}" for rid, s in sorted(values.items()) if s.problem]
        if problems:
            return None, "; ".join(problems)
        return sum(s.value or 0.0 for s in values.values()), None

    # -- scraping ----------------------------------------------------------------------------

    async def run(self) -> None:
        await every(SCRAPE_SECONDS, self.scrape_once, log=log, failed="scraping replica metrics failed",
                    least=0.1)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def scrape_once(self) -> None:
        targets = self._targets()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=SCRAPE_TIMEOUT, follow_redirects=False, trust_env=False)
        jobs = [(t, e) for t in targets for e in t.endpoints]
        results = await asyncio.gather(*(self._scrape(self._client, t, e) for t, e in jobs))
        values: dict[str, dict[str, Scraped]] = {t.api: {} for t in targets}
        for (target, endpoint), scraped in zip(jobs, results, strict=True):
            values[target.api][endpoint.replica_id] = scraped
        self._values = values
        self._metric = {t.api: t.metric for t in targets}

    async def _scrape(self, client: httpx.AsyncClient, target: ScrapeTarget, endpoint: Endpoint) -> Scraped:
        url = endpoint.url.rstrip("/") + target.path
        try:
            if endpoint.ca_cert:  # a direct-mode host: verified against its own CA
                async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT, verify=endpoint.ca_cert,
                                             trust_env=False) as own:
                    response = await own.get(url, headers=dict(endpoint.headers))
            else:
                response = await client.get(url, headers=dict(endpoint.headers))
        except httpx.HTTPError as error:
            why = str(error) or type(error).__name__
            return Scraped(None, f"cannot scrape {target.path}: {why}", self._clock())
        if response.status_code != 200:
            return Scraped(None, f"{target.path} answered {response.status_code}", self._clock())
        if len(response.content) > MAX_METRICS_BYTES:
            return Scraped(None, f"{target.path} is over {MAX_METRICS_BYTES} bytes", self._clock())
        try:
            value = gauge_value(response.text, target.metric)
        except ValueError as error:
            return Scraped(None, f"{target.path} is not Prometheus text: {error}", self._clock())
        if value is None:
            return Scraped(None, f"{target.path} has no {target.metric} (check autoscaling.metric)",
                           self._clock())
        return Scraped(value, None, self._clock())


class ScrapedCollector(Collector):
    """``workbench_replica_metric{api, replica, metric}`` on the controller's /metrics."""

    def __init__(self, scraper: MetricScraper, apis: Callable[[], list[str]]) -> None:
        self._scraper = scraper
        self._apis = apis

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("workbench_replica_metric",
                                   "the gauge autoscaling.metric names, as last scraped from each replica",
                                   labels=["api", "replica", "metric"])
        for api in self._apis():
            metric = self._scraper.metric(api)
            if metric is None:
                continue
            for replica, scraped in sorted(self._scraper.replicas(api).items()):
                if scraped.value is not None:
                    family.add_metric([api, replica, metric], scraped.value)
        yield family


__all__ = ["MetricScraper", "ScrapeTarget", "Scraped", "ScrapedCollector", "gauge_value", "scrape_targets"]
