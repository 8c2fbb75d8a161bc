"""The autoscaling loop: samples each autoscaled API's in-flight count at 1 Hz into its
Autoscaler (autoscaler.py) and applies decisions that change the replica count (each an event)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from workbench.controller.autoscaler import Autoscaler, Decision
from workbench.controller.events import Events
from workbench.controller.routes import RouterLike
from workbench.controller.state import ApiRecord, Store

log = logging.getLogger("workbench.controller.scaling")

TICK_SECONDS = 1.0


class AutoscalingLoop:
    def __init__(self, store: Store, router: RouterLike, events: Events, on_change: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic):
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
        while True:
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("autoscaler tick failed")
            await asyncio.sleep(max(0.05, TICK_SECONDS - (time.monotonic() - started)))

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
        try:
            in_flight = self.router.in_flight(record.name)
        except Exception:
            in_flight = 0
        scaler.record(in_flight, now)
        decision = scaler.recommend(record.desired_replicas, now)
        if decision.changed:
            self._apply(record, decision)

    def _apply(self, record: ApiRecord, decision: Decision) -> None:
        current = self.store.get_api(record.name)
        if current is None:
            return
        self.store.put_api(current.evolve(desired_replicas=decision.desired, updated_at=time.time()))
        text = f"{decision.current} → {decision.desired} replicas: {decision.reason}"
        self.events.record("autoscale", text, api=record.name, data=decision.inputs)
        self.on_change()
