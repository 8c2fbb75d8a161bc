"""Bounded concurrency with a bounded wait queue, for one replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from workbench.wire.errors import Unavailable


class QueueFull(Unavailable):
    """No slot free and the wait queue is full: answer 503 at once."""


class Limiter:
    """At most `max_concurrency` holders; up to `max_queue` callers wait (FIFO).

    :meth:`acquire` raises :class:`QueueFull` without waiting when the queue is full.
    Not thread-safe: use it from the event loop only.
    """

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.running < self.max_concurrency and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise QueueFull(
                f"queue full (max_concurrency={self.max_concurrency}, max_queue={self.max_queue})"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # release() may have dropped it
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give the slot to the next waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1
