"""The autoscaling loop: samples each autoscaled API's in-flight count (or the gauge its replicas
expose, autoscaling.metric, as scrape.py last read it) at 1 Hz into its Autoscaler (autoscaler.py)
and applies decisions that change the replica count (each an event). A gauge that cannot be read
(a scrape failed, a replica lacks it) is an event, and the count stays as it is."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from workbench.controller.autoscaler import Autoscaler, Decision
from workbench.controller.events import Events
from workbench.controller.periodic import every
from workbench.controller.routes import RouterLike
from workbench.controller.scrape import MetricScraper
from workbench.controller.state import ApiRecord, Store

log = logging.getLogger("workbench.controller.scaling")

TICK_SECONDS = 1.0


class AutoscalingLoop:
    def __init__(self, store: Store, router: RouterLike, events: Events, on_change: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic, scraper: MetricScraper | None = None):
        self.scraper = scraper
        self._problems: dict[str, str] = {}  # api → why its scraped gauge cannot be read now
        self.store = store
        self.router = router
        self.events = events
        self.on_change = on_change
        self.clock = clock
        self.scalers: dict[str, Autoscaler] = {}

    def _scaler(self, record: ApiRecord) -> Autoscaler | None:
        spec = record.api_spec()
        if spec.autoscaling is None:
            self.scalers.pop(record.name, None)
            return None
        scaler = self.scalers.get(record.name)
        if scaler is None:
            scaler = Autoscaler(spec.autoscaling, default_target_concurrency=spec.serving.max_concurrency)
            self.scalers[record.name] = scaler
        elif scaler.spec != spec.autoscaling:
            scaler.reconfigure(spec.autoscaling, default_target_concurrency=spec.serving.max_concurrency)
        return scaler

    def wake(self, api: str) -> None:
        """The router holds a request for `api` and has no replica: scale from zero now."""
        record = self.store.get_api(api)
        if record is None or record.kind != "api":
            return
        scaler = self._scaler(record)
        if scaler is None:
            return
        scaler.wake()
        self._tick_one(record, self.clock())

    async def run(self) -> None:
        await every(TICK_SECONDS, self.tick, log=log, failed="autoscaler tick failed")

    def tick(self) -> None:
        now = self.clock()
        names = set()
        for record in self.store.apis():
            if record.kind == "api":
                names.add(record.name)
                self._tick_one(record, now)
        for name in set(self.scalers) - names:
            self.scalers.pop(name)

    def _tick_one(self, record: ApiRecord, now: float) -> None:
        scaler = self._scaler(record)
        if scaler is None:
            return
        if scaler.spec.scraped:
            if not self._record_scraped(record.name, scaler, now):
                return  # no data: the replica count stays
        else:
            try:
                in_flight = self.router.in_flight(record.name)
            except Exception:
                in_flight = 0
            scaler.record(in_flight, now)
        decision = scaler.recommend(record.desired_replicas, now)
        if decision.changed:
            self._apply(record, decision)

    def _record_scraped(self, api: str, scaler: Autoscaler, now: float) -> bool:
        """Feed the API's scraped gauge to `scaler`; False when it cannot be read (an event, once
        per problem). True with no sample when no replica is ready yet (a wake still scales)."""
        metric = scaler.spec.metric
        total, problem = self.scraper.total(api) if self.scraper is not None else (None, "no scraper")
        if problem is not None:
            if self._problems.get(api) != problem:
                self._problems[api] = problem
                self.events.record("autoscale", f"cannot read {metric} from the replicas of {api}, so "
                                   f"the replica count stays: {problem}", api=api, level=logging.WARNING,
                                   data={"metric": metric, "problem": problem})
            return False
        if self._problems.pop(api, None) is not None:
            self.events.record("autoscale", f"{metric} reads again from every replica of {api}", api=api,
                               data={"metric": metric})
        if total is not None:
            scaler.record(total, now)
        return True

    def _apply(self, record: ApiRecord, decision: Decision) -> None:
        current = self.store.get_api(record.name)
        if current is None:
            return
        self.store.put_api(current.evolve(desired_replicas=decision.desired, updated_at=time.time()))
        text = f"{decision.current} → {decision.desired} replicas: {decision.reason}"
        self.events.record("autoscale", text, api=record.name, data=decision.inputs)
        self.on_change()
