"""Load-balancing policies: pick one endpoint among the available ones.

Each is O(1) or O(n) in the (small) number of endpoints, and allocates nothing much.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .pool import EndpointState, Pool

Policy = Callable[[Pool, list[EndpointState], float], EndpointState]

_random = random.random
_randrange = random.randrange


def round_robin(pool: Pool, candidates: list[EndpointState], now: float) -> EndpointState:
    i = pool.rr_next
    pool.rr_next = i + 1
    return candidates[i % len(candidates)]


def least_outstanding(pool: Pool, candidates: list[EndpointState], now: float) -> EndpointState:
    """Fewest requests in flight; ties broken at random (starting at a random offset)."""
    n = len(candidates)
    start = _randrange(n) if n > 1 else 0
    best = candidates[start]
    for k in range(1, n):
        s = candidates[(start + k) % n]
        if s.in_flight < best.in_flight:
            best = s
    return best


def _two(candidates: list[EndpointState]) -> tuple[EndpointState, EndpointState]:
    n = len(candidates)
    i = _randrange(n)
    j = _randrange(n - 1)
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
