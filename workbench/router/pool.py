"""One API's endpoints and what the router knows about each: in-flight count, latency
(peak EWMA), health (active checks) and ejection (passive outlier detection)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from .types import Endpoint

DECAY_SECONDS = 10.0  # peak-EWMA time constant (Finagle/Linkerd use ~10 s)
DEFAULT_RTT = 0.001  # seconds, before anything was observed


class EndpointState:
    """Mutable per-endpoint state; only touched from the event loop."""

    __slots__ = (
        "_ewma",
        "_ewma_at",
        "_started_sum",
        "consecutive_failures",
        "ejected_until",
        "ejections",
        "endpoint",
        "healthy",
        "host",
        "in_flight",
        "port",
        "prefix",
        "removed",
        "replica_bytes",
        "replica_id",
        "requests",
        "scheme",
        "url",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.replica_id = endpoint.replica_id
        self.url = endpoint.url.rstrip("/")
        parts = urlsplit(self.url)
        self.scheme = (parts.scheme or "http").encode()
        self.host = (parts.hostname or "127.0.0.1").encode()
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.encode()  # a replica behind a path prefix
        self.replica_bytes = endpoint.replica_id.encode("utf-8", "replace")
        self.in_flight = 0
        self.requests = 0  # sent to this replica so far (metering: workbench.controller.usage)
        # the controller hands over ready replicas; active checks may say otherwise (a change of
        # `healthy` or `ejected_until` must be reported to the pool: Pool.invalidate)
        self.healthy = True
        self.removed = False
        self.consecutive_failures = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self._ewma = DEFAULT_RTT
        self._ewma_at = time.monotonic()
        self._started_sum = 0.0

    # -- load ------------------------------------------------------------------------------

    def begin(self, now: float) -> None:
        self.in_flight += 1
        self.requests += 1
        self._started_sum += now

    def end(self, started: float, now: float, ok: bool) -> None:
        self.in_flight -= 1
        self._started_sum -= started
        if self.in_flight == 0:
            self._started_sum = 0.0  # no float drift
        if ok:
            self.observe(now - started, now)

    def observe(self, rtt: float, now: float) -> None:
        """Peak EWMA: a slower sample replaces the estimate at once; faster ones decay it in."""
        if rtt > self._ewma:
            self._ewma = rtt
        else:
            w = math.exp(-(now - self._ewma_at) / DECAY_SECONDS)
            self._ewma = self._ewma * w + rtt * (1.0 - w)
        self._ewma_at = now

    def latency(self, now: float) -> float:
        """The latency estimate, raised by the mean age of requests still outstanding (a
        replica that stopped answering looks slow before its first slow answer arrives)."""
        estimate = self._ewma
        n = self.in_flight
        if n:
            age = now - self._started_sum / n
            if age > estimate:
                return age
        return estimate

    def cost(self, now: float) -> float:
        return self.latency(now) * (self.in_flight + 1)

    # -- eligibility -----------------------------------------------------------------------

    def ejected(self, now: float) -> bool:
        return self.ejected_until > now

    def available(self, now: float) -> bool:
        return self.healthy and self.ejected_until <= now


class Pool:
    """The endpoints of one API. `set` keeps the state of endpoints that stay.

    It also keeps the list of endpoints eligible for a request (healthy, not ejected), so a pick
    costs the same with 2 endpoints or 200: the list is rebuilt only when eligibility changes,
    which the health checks and outlier ejection report with `invalidate`, and when an ejection
    runs out (the pool knows the earliest time one does)."""

    __slots__ = ("_changed", "_eligible", "_eligible_until", "by_id", "endpoints", "rr_next")

    def __init__(self) -> None:
        self.endpoints: list[EndpointState] = []
        self.by_id: dict[str, EndpointState] = {}
        self.rr_next = 0
        self._changed: asyncio.Event | None = None
        self._eligible: list[EndpointState] = []
        self._eligible_until = -math.inf  # rebuild `_eligible` at the first pick at or after this

    def set(self, endpoints: Sequence[Endpoint]) -> None:
        states: list[EndpointState] = []
        by_id: dict[str, EndpointState] = {}
        for ep in endpoints:
            if ep.replica_id in by_id:
                continue
            old = self.by_id.get(ep.replica_id)
            state = old if old is not None and old.endpoint == ep else EndpointState(ep)
            states.append(state)
            by_id[ep.replica_id] = state
        for rid, old in self.by_id.items():
            if by_id.get(rid) is not old:
                old.removed = True  # requests in flight to it finish; it gets no new ones
        self.endpoints = states
        self.by_id = by_id
        self._eligible_until = -math.inf
        if states and self._changed is not None:
            self._changed.set()
            self._changed = None

    def eligible(self, now: float) -> list[EndpointState]:
        """Endpoints that may get a request at `now`: healthy and not ejected, in pool order.
        The list is the pool's own: read it, never change it."""
        if now >= self._eligible_until:
            self._rebuild(now)
        return self._eligible

    def invalidate(self) -> None:
        """An endpoint's health or ejection changed: rebuild the eligible list at the next pick."""
        self._eligible_until = -math.inf

    def _rebuild(self, now: float) -> None:
        eligible: list[EndpointState] = []
        until = math.inf
        for s in self.endpoints:
            if s.ejected_until > now:
                until = min(until, s.ejected_until)  # it may come back then
            elif s.healthy:
                eligible.append(s)
        self._eligible = eligible
        self._eligible_until = until

    async def wait_for_endpoints(self, timeout: float) -> bool:
        """Wait until `set` delivers at least one endpoint; False on timeout."""
        if self.endpoints:
            return True
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True
