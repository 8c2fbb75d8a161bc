"""Load-balancing policies: pick one endpoint among the eligible ones.

`pick` is what the router calls per attempt: the pool's eligible list (kept up to date by the
pool, not rebuilt per request) and the API's policy. round_robin, p2c and ewma are O(1) in the
number of endpoints; least_outstanding is O(n) by definition (it compares them all).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

from .pool import EndpointState, Pool

Policy = Callable[[Pool, list[EndpointState], float], EndpointState]

_random = random.random  # int(_random() * n): a uniform index, 4x cheaper than random.randrange(n)


def pick(pool: Pool, policy: Policy, tried: Collection[EndpointState], now: float) -> EndpointState | None:
    """An eligible endpoint not in `tried` (the attempts so far), chosen by `policy`; None when
    there is none."""
    candidates = pool.eligible(now)
    if tried:  # a retry (rare): leave out the endpoints already tried
        candidates = [s for s in candidates if s not in tried]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    return policy(pool, candidates, now)


def round_robin(pool: Pool, candidates: list[EndpointState], now: float) -> EndpointState:
    i = pool.rr_next
    pool.rr_next = i + 1
    return candidates[i % len(candidates)]


def least_outstanding(pool: Pool, candidates: list[EndpointState], now: float) -> EndpointState:
    """Fewest requests in flight; ties broken at random (starting at a random offset)."""
    n = len(candidates)
    start = int(_random() * n) if n > 1 else 0
    best = candidates[start]
    for k in range(1, n):
        s = candidates[(start + k) % n]
        if s.in_flight < best.in_flight:
            best = s
    return best


def _two(candidates: list[EndpointState]) -> tuple[EndpointState, EndpointState]:
    n = len(candidates)
    i = int(_random() * n)
    j = int(_random() * (n - 1))
    if j >= i:
        j += 1
    return candidates[i], candidates[j]


def p2c(pool: Pool, candidates: list[EndpointState], now: float) -> EndpointState:
    """Power of two choices: the less loaded (in flight) of two distinct random endpoints."""
    if len(candidates) == 1:
        return candidates[0]
    a, b = _two(candidates)
    if a.in_flight == b.in_flight:
        return a  # a is already random
    return a if a.in_flight < b.in_flight else b


def ewma(pool: Pool, candidates: list[EndpointState], now: float) -> EndpointState:
    """Peak-EWMA: p2c by latency estimate x (outstanding + 1), as Finagle and Linkerd."""
    if len(candidates) == 1:
        return candidates[0]
    a, b = _two(candidates)
    return a if a.cost(now) <= b.cost(now) else b


POLICIES: dict[str, Policy] = {
    "round_robin": round_robin,
    "least_outstanding": least_outstanding,
    "p2c": p2c,
    "ewma": ewma,
}
