"""A retry budget (as Finagle's and Linkerd's): retries may add at most `retry_budget` x the
requests of the last ~10 s, plus `retry_budget_min` per second, so retries cannot multiply
the load on an API that is failing anyway."""

from __future__ import annotations

WINDOW = 10  # seconds


class RetryBudget:
    __slots__ = ("_requests", "_retries", "_second", "_slots", "min_per_second", "ratio")

    def __init__(self, ratio: float, min_per_second: float) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self._slots = [[0, 0] for _ in range(WINDOW)]  # per second: requests, retries
        self._second = 0
        self._requests = 0  # sums over the window
        self._retries = 0

    def configure(self, ratio: float, min_per_second: float) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second

    def _advance(self, now: float) -> list[int]:
        second = int(now)
        if second != self._second:
            steps = min(second - self._second, WINDOW)
            for k in range(1, steps + 1):
                slot = self._slots[(self._second + k) % WINDOW]
                self._requests -= slot[0]
                self._retries -= slot[1]
                slot[0] = slot[1] = 0
            self._second = second
        return self._slots[second % WINDOW]

    def request(self, now: float) -> None:
        """Count one original request (it earns the budget)."""
        self._advance(now)[0] += 1
        self._requests += 1

    def try_withdraw(self, now: float) -> bool:
        """Spend one retry if the budget allows it."""
        slot = self._advance(now)
        allowed = self.ratio * self._requests + self.min_per_second * WINDOW
        if self._retries + 1 > allowed:
            return False
        slot[1] += 1
        self._retries += 1
        return True
