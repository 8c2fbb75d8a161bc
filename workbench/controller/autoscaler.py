"""Cortex's autoscaling algorithm for realtime APIs, on in-flight requests per API.

Pure: no I/O, no clock of its own. The controller samples the router's in-flight count for
an API (requests being processed plus requests queued, at the router and at the replicas)
about once a second and calls :meth:`Autoscaler.record`; on each control tick it calls
:meth:`Autoscaler.recommend` with the API's current replica count and applies
:attr:`Decision.desired` when :attr:`Decision.changed`.

One tick, as Cortex does it (``pkg/autoscaler/autoscaler.go``):

1. ``avg`` = mean of the samples over ``window``; ``raw = avg / target_concurrency``.
2. ``recommendation = ceil(raw)``, unless ``raw`` lies within the tolerance band around the
   current count (``current·(1 - downscale_tolerance) < raw < current·(1 + upscale_tolerance)``),
   then it stays ``current``.
3. One step moves at most to ``ceil(current · max_upscale_factor)`` (but always allows +1) and
   at least to ``ceil(current · max_downscale_factor)`` (but always allows -1).
4. Clamp to ``[min_replicas, max_replicas]``; remember the recommendation with its time.
5. Stabilization: scale up only to the *lowest* recommendation of the last
   ``upscale_stabilization_period``, down only to the *highest* of the last
   ``downscale_stabilization_period``; during the first such period after the autoscaler
   started, hold.

Added for workbench: scale from zero happens at once (a request waiting at the router, or
:meth:`Autoscaler.wake`); after a wake the API stays at ≥ 1 replica for a
``downscale_stabilization_period``; scale to zero needs that whole period with no request in
flight; ``min_replicas``/``max_replicas`` are hard bounds (a lowered ``max_replicas`` applies
at once, stabilization or not).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from workbench.spec.models import AutoscalingSpec

#: Seconds of samples needed before the first recommendation (or the whole window if shorter).
DEFAULT_MIN_HISTORY = 5.0


@dataclass(frozen=True)
class Decision:
    """What one autoscaler tick concluded, with everything that went into it (for the event log)."""

    desired: int
    current: int
    avg_in_flight: float | None  # None: no samples in the window
    raw_recommendation: int | None  # ceil(avg / target); None without samples
    reason: str
    changed: bool
    inputs: dict[str, Any] = field(default_factory=dict)


def _check_time(now: float) -> None:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise ValueError(f"time must be a finite number of seconds, not {now!r}")


def _fmt(value: float) -> str:
    """A number for a reason sentence: 7.3, 2, 0.75."""
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


class Autoscaler:
    """Cortex's autoscaler for one API. Not thread-safe: call it from one task."""

    def __init__(
        self,
        spec: AutoscalingSpec,
        *,
        default_target_concurrency: float = 1.0,
        min_history: float = DEFAULT_MIN_HISTORY,
    ) -> None:
        """`default_target_concurrency` is used when `spec.target_concurrency` is None; the
        controller passes the replica's ``serving.max_concurrency``."""
        if not (math.isfinite(default_target_concurrency) and default_target_concurrency > 0):
            raise ValueError(
                f"default_target_concurrency must be a positive number, not {default_target_concurrency!r}"
            )
        if not (math.isfinite(min_history) and min_history >= 0):
            raise ValueError(f"min_history must be zero or more seconds, not {min_history!r}")
        self._spec = spec
        self._default_target = float(default_target_concurrency)
        self._min_history = float(min_history)
        self._samples: deque[tuple[float, float]] = deque()
        self._first_sample_at: float | None = None
        self._recommendations: deque[tuple[float, int]] = deque()
        self._started_at: float | None = None  # first recommend()
        self._last_recommend_at: float | None = None
        self._wake_pending = False
        self._awakened_at: float | None = None

    # -- configuration ---------------------------------------------------------------------

    @property
    def spec(self) -> AutoscalingSpec:
        return self._spec

    @property
    def target_concurrency(self) -> float:
        """The per-replica target: of the scraped gauge (autoscaling.target) when the API scales
        on one, else of the in-flight count."""
        if self._spec.scraped and self._spec.target is not None:
            return float(self._spec.target)
        target = self._spec.target_concurrency
        return float(target) if target is not None else self._default_target

    def reconfigure(self, spec: AutoscalingSpec, *, default_target_concurrency: float | None = None) -> None:
        """New settings (e.g. new min/max from `workbench scale`); samples and history are kept."""
        self._spec = spec
        if default_target_concurrency is not None:
            if not (math.isfinite(default_target_concurrency) and default_target_concurrency > 0):
                raise ValueError("default_target_concurrency must be a positive number")
            self._default_target = float(default_target_concurrency)

    # -- input -----------------------------------------------------------------------------

    def record(self, in_flight: float, now: float) -> None:
        """One sample of the API's in-flight requests (processing + queued) at time `now` (s)."""
        if isinstance(in_flight, bool) or not isinstance(in_flight, int | float):
            raise ValueError(f"in-flight count must be a number, not {in_flight!r}")
        if not math.isfinite(in_flight) or in_flight < 0:
            raise ValueError(f"in-flight count must be a finite number ≥ 0, not {in_flight!r}")
        _check_time(now)
        if self._samples and now < self._samples[-1][0]:
            raise ValueError(
                f"sample time {now} is earlier than the previous sample ({self._samples[-1][0]}); "
                "use a monotonic clock"
            )
        self._samples.append((float(now), float(in_flight)))
        if self._first_sample_at is None:
            self._first_sample_at = float(now)
        self._forget_samples(now)

    def wake(self) -> None:
        """The router holds a request for this API while it has no replica: the next
        :meth:`recommend` answers at least one replica, whatever the stabilization says."""
        self._wake_pending = True

    # -- the algorithm ---------------------------------------------------------------------

    def recommend(self, current: int, now: float) -> Decision:
        """How many replicas the API should have now, given `current` (the count the controller
        last asked for)."""
        if isinstance(current, bool) or not isinstance(current, int) or current < 0:
            raise ValueError(f"current replica count must be an int ≥ 0, not {current!r}")
        _check_time(now)
        if self._last_recommend_at is not None and now < self._last_recommend_at:
            raise ValueError(
                f"time {now} is earlier than the previous recommendation ({self._last_recommend_at}); "
                "use a monotonic clock"
            )
        if self._started_at is None:
            self._started_at = now
        previous_tick = self._last_recommend_at
        self._last_recommend_at = now
        self._forget_samples(now)
        spec = self._spec
        target = self.target_concurrency
        inputs: dict[str, Any] = {
            "current": current,
            "now": now,
            "target_concurrency": target,
            "window": spec.window,
            "min_replicas": spec.min_replicas,
            "max_replicas": spec.max_replicas,
            "downscale_tolerance": spec.downscale_tolerance,
            "upscale_tolerance": spec.upscale_tolerance,
            "max_downscale_factor": spec.max_downscale_factor,
            "max_upscale_factor": spec.max_upscale_factor,
            "downscale_stabilization_period": spec.downscale_stabilization_period,
            "upscale_stabilization_period": spec.upscale_stabilization_period,
        }
        window = [value for at, value in self._samples if at > now - spec.window]
        avg = sum(window) / len(window) if window else None
        inputs["samples"] = len(window)
        inputs["avg_in_flight"] = avg  # (of the scraped gauge, when inputs["metric"] names one)
        inputs["metric"] = spec.metric

        # Scale from zero: someone is waiting; no averaging, no stabilization.
        waiting = self._wake_pending or self._request_waiting(previous_tick)
        if current == 0 and waiting:
            desired = min(max(1, spec.min_replicas), spec.max_replicas)
            why = "woken by the router" if self._wake_pending else "in-flight > 0"
            self._wake_pending = False
            self._awakened_at = now
            inputs.update(desired=desired, woken=True)
            return self._decision(
                desired, current, avg, None, f"request waiting ({why}): scale from zero → {desired}", inputs
            )
        if self._wake_pending and current > 0:
            self._wake_pending = False  # someone already scaled it up
            self._awakened_at = now

        # Not enough data yet: hold (but honour hard bounds).
        coverage = 0.0 if self._first_sample_at is None else now - self._first_sample_at
        needed = min(self._min_history, spec.window)
        if avg is None or coverage < needed:
            base = (
                "no in-flight samples in the window"
                if avg is None
                else f"only {_fmt(coverage)} s of samples (need {_fmt(needed)} s)"
            )
            desired, bound = self._bounded(current)
            reason = f"{base}: hold at {current}" if bound is None else f"{base}; {bound} → {desired}"
            inputs.update(coverage=coverage, desired=desired)
            return self._decision(desired, current, avg, None, reason, inputs)

        raw = avg / target
        raw_ceil = math.ceil(raw - 1e-9)  # 2.0000000001 from float noise is still 2
        measure = spec.metric if spec.scraped else "in-flight"  # (a scraped gauge: its name)
        steps = [f"avg {measure} {_fmt(avg)} over {_fmt(spec.window)} s / target {_fmt(target)} → {raw_ceil}"]
        inputs.update(raw=raw, raw_recommendation=raw_ceil)
        recommendation = raw_ceil

        # Tolerance band around the current count.
        low = current * (1 - spec.downscale_tolerance)
        high = current * (1 + spec.upscale_tolerance)
        if (low < raw < current or current < raw < high) and recommendation != current:
            recommendation = current
            steps.append(
                f"within tolerance ({_fmt(round(low, 3))}…{_fmt(round(high, 3))} around {current})"
                f" → {current}"
            )

        # At most one factor per step (always allowing ±1).
        downscale_floor = min(current - 1, math.ceil(current * spec.max_downscale_factor))
        upscale_ceil = max(current + 1, math.ceil(current * spec.max_upscale_factor))
        inputs.update(downscale_factor_floor=downscale_floor, upscale_factor_ceil=upscale_ceil)
        if recommendation < downscale_floor:
            recommendation = downscale_floor
            steps.append(
                f"capped by max_downscale_factor {_fmt(spec.max_downscale_factor)} → {recommendation}"
            )
        if recommendation > upscale_ceil:
            recommendation = upscale_ceil
            steps.append(
                f"capped by max_upscale_factor {_fmt(spec.max_upscale_factor)} → {recommendation}"
            )

        # Bounds.
        if recommendation < spec.min_replicas:
            recommendation = spec.min_replicas
            steps.append(f"raised to min_replicas {spec.min_replicas}")
        if recommendation > spec.max_replicas:
            recommendation = spec.max_replicas
            steps.append(f"lowered to max_replicas {spec.max_replicas}")
        inputs["recommendation"] = recommendation
        self._recommendations.append((now, recommendation))
        self._forget_recommendations(now)

        # Stabilization over the recommendation history.
        desired = recommendation
        since_start = now - self._started_at
        if desired < current:
            period = spec.downscale_stabilization_period
            floor = max(r for at, r in self._recommendations if at >= now - period)
            inputs["downscale_stabilization_floor"] = floor
            if since_start < period:
                desired = current
                steps.append(
                    f"no downscale in the first {_fmt(period)} s (downscale_stabilization_period) → {current}"
                )
            elif floor > desired:
                desired = min(floor, current)
                steps.append(
                    f"highest recommendation over the last {_fmt(period)} s is {floor} "
                    f"(downscale_stabilization_period) → {desired}"
                )
            if desired == 0:
                cause = self._why_not_zero(now, period)
                if cause is not None:
                    desired = 1
                    steps.append(f"not to zero: {cause} → 1")
        elif desired > current:
            period = spec.upscale_stabilization_period
            ceil = min(r for at, r in self._recommendations if at >= now - period)
            inputs["upscale_stabilization_ceil"] = ceil
            if since_start < period:
                desired = current
                steps.append(
                    f"no upscale in the first {_fmt(period)} s (upscale_stabilization_period) → {current}"
                )
            elif ceil < desired:
                desired = max(ceil, current)
                steps.append(
                    f"lowest recommendation over the last {_fmt(period)} s is {ceil} "
                    f"(upscale_stabilization_period) → {desired}"
                )

        bounded, bound = self._bounded(desired)
        if bound is not None:
            desired = bounded
            steps.append(f"{bound} → {desired}")
        inputs["desired"] = desired
        if desired == current and len(steps) == 1:
            steps.append(f"no change from {current}")
        return self._decision(desired, current, avg, raw_ceil, "; ".join(steps), inputs)

    # -- helpers ---------------------------------------------------------------------------

    def _decision(
        self, desired: int, current: int, avg: float | None, raw: int | None, reason: str,
        inputs: dict[str, Any],
    ) -> Decision:
        return Decision(
            desired=desired, current=current, avg_in_flight=avg, raw_recommendation=raw,
            reason=reason, changed=desired != current, inputs=inputs,
        )

    def _bounded(self, count: int) -> tuple[int, str | None]:
        """Hard bounds: what `count` becomes, and a phrase when it had to change."""
        spec = self._spec
        if count > spec.max_replicas:
            return spec.max_replicas, f"above max_replicas {spec.max_replicas}"
        if count < spec.min_replicas:
            return spec.min_replicas, f"below min_replicas {spec.min_replicas}"
        return count, None

    def _request_waiting(self, previous_tick: float | None) -> bool:
        """The latest sample, or any since the previous tick, shows a request in flight."""
        if not self._samples:
            return False
        if self._samples[-1][1] > 0:
            return True
        return any(value > 0 for at, value in self._samples if previous_tick is None or at > previous_tick)

    def _why_not_zero(self, now: float, period: float) -> str | None:
        """Why the API may not go to zero yet (None: it may): it needs a whole `period` of
        samples, all zero, and no wake within that period."""
        if self._first_sample_at is None or now - self._first_sample_at < period:
            return f"fewer than {_fmt(period)} s of samples"
        if any(value > 0 for at, value in self._samples if at >= now - period):
            return f"requests in flight within the last {_fmt(period)} s"
        if self._awakened_at is not None and now - self._awakened_at < period:
            return f"woken {_fmt(now - self._awakened_at)} s ago"
        return None

    def _keep_samples_for(self) -> float:
        return max(self._spec.window, self._spec.downscale_stabilization_period)

    def _forget_samples(self, now: float) -> None:
        horizon = now - self._keep_samples_for()
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def _forget_recommendations(self, now: float) -> None:
        spec = self._spec
        horizon = now - max(spec.downscale_stabilization_period, spec.upscale_stabilization_period)
        while self._recommendations and self._recommendations[0][0] < horizon:
            self._recommendations.popleft()
