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


class Slot:
    """One place held in a :class:`Limiter`, released exactly once: when the prediction ends, or,
    when it `keep`s the place for a stream it returned, when that stream ends."""

    __slots__ = ("_limiter", "held", "kept")

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self.held = True
        self.kept = False

    def keep(self) -> None:
        """The prediction's result holds the place past the call (see `call_done`)."""
        self.kept = True

    def call_done(self) -> None:
        """The call of predict ended: release unless its result keeps the place."""
        if not self.kept:
            self.release()

    def release(self) -> None:
        if self.held:
            self.held = False
            self._limiter.release()
