"""Passive outlier ejection: consecutive failures take an endpoint out of rotation for a while.

`eject_after` consecutive failures eject it for `eject_seconds`, doubling with each ejection
(capped at 5 minutes); never more than `max_ejected_percent` of the pool, never the last one
still available.
"""

from __future__ import annotations

from workbench.spec.models import RoutingSpec

from .pool import EndpointState, Pool

MAX_EJECTION_SECONDS = 300.0


def record_success(state: EndpointState) -> None:
    state.consecutive_failures = 0


def record_failure(pool: Pool, state: EndpointState, routing: RoutingSpec, now: float) -> bool:
    """Count a failure; True when it ejected the endpoint."""
    state.consecutive_failures += 1
    if state.consecutive_failures < routing.eject_after or state.ejected_until > now:
        return False
    if state.removed or not may_eject(pool, state, routing, now):
        return False
    seconds = min(routing.eject_seconds * (2**state.ejections), MAX_EJECTION_SECONDS)
    state.ejected_until = now + seconds
    state.ejections += 1
    state.consecutive_failures = 0
    pool.invalidate()
    return True


def may_eject(pool: Pool, state: EndpointState, routing: RoutingSpec, now: float) -> bool:
    total = len(pool.endpoints)
    ejected = sum(1 for s in pool.endpoints if s.ejected_until > now)
    if (ejected + 1) * 100.0 > routing.max_ejected_percent * total:
        return False
    # never the last endpoint that could still take traffic
    return any(s is not state and s.available(now) for s in pool.endpoints)
