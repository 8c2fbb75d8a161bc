"""One API's routing state: its route, endpoint pool, policy, retry budget and counters."""

from __future__ import annotations

from workbench.spec.models import RoutingSpec

from . import outlier
from .affinity import Affinity
from .metrics import ApiStats
from .policies import POLICIES, Policy
from .pool import EndpointState, Pool
from .retry import RetryBudget
from .types import ApiRoute


class ApiState:
    """Created on the first `set_route` or `set_endpoints` for the name (whichever comes first:
    `route` stays None until the route arrives, and such an API is not deployed yet)."""

    __slots__ = ("affinity", "budget", "name", "policy", "pool", "route", "routing", "stats", "wake_at")

    def __init__(self, name: str, stats: ApiStats) -> None:
        self.name = name
        self.route: ApiRoute | None = None
        self.routing = RoutingSpec()
        self.pool = Pool()
        self.policy: Policy = POLICIES[self.routing.policy]
        self.affinity: Affinity | None = None  # policy: prefix (then `policy` picks keyless requests)
        self.budget = RetryBudget(self.routing.retry_budget, self.routing.retry_budget_min)
        self.stats = stats
        self.wake_at = -1e9  # when the router last asked the controller to wake it from zero

    def configure(self, route: ApiRoute) -> None:
        self.route = route
        self.routing = r = route.routing
        self.policy = POLICIES.get(r.policy, POLICIES["ewma"])  # prefix: ewma for keyless requests
        self.affinity = Affinity(r) if r.policy == "prefix" else None
        self.budget.configure(r.retry_budget, r.retry_budget_min)

    def failed(self, state: EndpointState, now: float) -> None:
        """An exchange with `state` failed: count it towards ejecting the endpoint."""
        if outlier.record_failure(self.pool, state, self.routing, now):
            self.stats.ejected()
