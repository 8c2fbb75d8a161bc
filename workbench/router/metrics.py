"""Router metrics: Prometheus series (on a given registry) and a cheap rolling window per API
for `traffic()` (requests/s over ~10 s, p50/p99 over ~60 s)."""

from __future__ import annotations

import math
from collections import Counter as _Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RATE_WINDOW = 10  # seconds
LATENCY_WINDOW = 60  # seconds
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# rolling-window histogram: log buckets, ~5 % wide, from 10 µs up
_BASE = 1e-5
_GROWTH = math.log(1.05)


def _bucket(seconds: float) -> int:
    if seconds <= _BASE:
        return 0
    return int(math.log(seconds / _BASE) / _GROWTH) + 1


def _bucket_value(index: int) -> float:
    """The middle of bucket `index`, in seconds."""
    if index == 0:
        return _BASE
    return _BASE * math.exp((index - 0.5) * _GROWTH)


class Rolling:
    """Per-second slots: request counts and a sparse latency histogram. Recording is O(1);
    reading sums at most 60 small dicts."""

    __slots__ = ("_counts", "_hists", "_second")

    def __init__(self) -> None:
        self._counts = [0] * LATENCY_WINDOW
        self._hists: list[dict[int, int]] = [{} for _ in range(LATENCY_WINDOW)]
        self._second = 0

    def _advance(self, second: int) -> int:
        if second != self._second:
            steps = min(second - self._second, LATENCY_WINDOW)
            for k in range(1, steps + 1):
                i = (self._second + k) % LATENCY_WINDOW
                self._counts[i] = 0
                self._hists[i] = {}
            self._second = second
        return second % LATENCY_WINDOW

    def record(self, seconds: float, now: float) -> None:
        i = self._advance(int(now))
        self._counts[i] += 1
        hist = self._hists[i]
        b = _bucket(seconds)
        hist[b] = hist.get(b, 0) + 1

    def rate(self, now: float) -> float:
        second = int(now)
        self._advance(second)
        # the last RATE_WINDOW complete seconds plus the current partial one, averaged over the span
        total = sum(self._counts[(second - k) % LATENCY_WINDOW] for k in range(RATE_WINDOW + 1))
        span = RATE_WINDOW + (now - second)
        return total / span

    def quantiles(self, now: float, qs: tuple[float, ...]) -> list[float | None]:
        self._advance(int(now))
        tally: _Tally[int] = _Tally()
        for hist in self._hists:
            tally.update(hist)
        total = sum(tally.values())
        if not total:
            return [None for _ in qs]
        out: list[float | None] = []
        ordered = sorted(tally.items())
        for q in qs:
            rank = max(1, math.ceil(q * total))
            seen = 0
            for index, n in ordered:
                seen += n
                if seen >= rank:
                    out.append(_bucket_value(index))
                    break
        return out


class RouterMetrics:
    """The Prometheus series. Per-API children are looked up once and cached by callers."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "workbench_router_requests", "Requests answered, by API and status class",
            ["api", "status"], registry=registry,
        )
        self.latency = Histogram(
            "workbench_router_request_duration_seconds", "Time to the response headers, by API",
            ["api"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            "workbench_router_in_flight", "Requests forwarded or waiting in the router", ["api"],
            registry=registry,
        )
        self.retries = Counter("workbench_router_retries", "Requests retried on another replica",
                               ["api"], registry=registry)
        self.budget_exhausted = Counter(
            "workbench_router_retry_budget_exhausted", "Retries not made because the budget was spent",
            ["api"], registry=registry,
        )
        self.ejections = Counter("workbench_router_ejections", "Replicas ejected by outlier detection",
                                 ["api"], registry=registry)
        self.upstream_errors = Counter(
            "workbench_router_upstream_errors", "Failed exchanges with replicas, by kind",
            ["api", "kind"], registry=registry,
        )
        self.shadow = Counter("workbench_router_shadow_requests", "Shadow copies, by outcome",
                              ["api", "outcome"], registry=registry)
        self.client_cancelled = Counter(
            "workbench_router_client_cancelled",
            "Requests whose client hung up while waiting for the answer or during its stream "
            "(the upstream connection was closed at once)", ["api"], registry=registry)


#: the `outcome` labels of workbench_router_shadow_requests_total
SHADOW_OUTCOMES = ("ok", "5xx", "error", "no_api", "no_replica", "skipped", "dropped")


class ApiStats:
    """Everything counted for one API: cached Prometheus children and the rolling window."""

    __slots__ = (
        "_kinds", "_m", "api", "budget_exhausted_c", "cancelled_c", "ejections", "ejections_c",
        "in_flight", "in_flight_g", "latency_h", "retries", "retries_c", "rolling", "status", "status_c",
    )

    def __init__(self, metrics: RouterMetrics, api: str) -> None:
        self._m = metrics
        self.api = api
        self.rolling = Rolling()
        self.status = [0, 0, 0]  # 2xx (and 1xx/3xx), 4xx, 5xx
        self.status_c = [metrics.requests.labels(api, c) for c in ("2xx", "4xx", "5xx")]
        self.latency_h = metrics.latency.labels(api)
        self.in_flight = 0
        self.in_flight_g = metrics.in_flight.labels(api)
        self.retries = 0
        self.retries_c = metrics.retries.labels(api)
        self.budget_exhausted_c = metrics.budget_exhausted.labels(api)
        self.ejections = 0
        self.ejections_c = metrics.ejections.labels(api)
        self.cancelled_c = metrics.client_cancelled.labels(api)
        self._kinds: set[str] = set()  # upstream error kinds counted

    def forget(self) -> None:
        """Drop this API's Prometheus series (the API is gone, or a new one of the same name took
        its place: that one starts at zero)."""
        m = self._m
        name = self.api
        for status in ("2xx", "4xx", "5xx"):
            m.requests.remove(name, status)
        for family in (m.latency, m.in_flight, m.retries, m.budget_exhausted, m.ejections,
                       m.client_cancelled):
            family.remove(name)
        for kind in self._kinds:
            m.upstream_errors.remove(name, kind)
        for outcome in SHADOW_OUTCOMES:
            m.shadow.remove(name, outcome)

    def enter(self) -> None:
        self.in_flight += 1
        self.in_flight_g.inc()

    def leave(self) -> None:
        self.in_flight -= 1
        self.in_flight_g.dec()

    def done(self, status: int, seconds: float, now: float) -> None:
        k = 2 if status >= 500 else 1 if status >= 400 else 0
        self.status[k] += 1
        self.status_c[k].inc()
        self.latency_h.observe(seconds)
        self.rolling.record(seconds, now)

    def retried(self) -> None:
        self.retries += 1
        self.retries_c.inc()

    def ejected(self) -> None:
        self.ejections += 1
        self.ejections_c.inc()

    def upstream_error(self, kind: str) -> None:
        self._kinds.add(kind)
        self._m.upstream_errors.labels(self.api, kind).inc()

    def cancelled(self) -> None:
        self.cancelled_c.inc()
