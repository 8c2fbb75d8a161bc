"""Running user code: ``async def`` on the event loop, plain functions in worker threads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter

from .logs import log_exception


class Runner:
    """Calls user functions; a sync one runs in one of at most `max_threads` threads.

    A thread cannot be stopped: when the caller gives up (timeout, disconnect) the call
    goes on, and `done` is called only once it has really finished, so that slots stay
    held while user code runs.
    """

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._limiter: CapacityLimiter | None = None

    async def call(self, fn: Callable[[], Any], is_async: bool, done: Callable[[], None]) -> Any:
        """``fn()`` (awaited if `is_async`); `done()` afterwards, always exactly once."""
        if is_async:
            try:
                return await fn()
            finally:
                done()
        task = asyncio.ensure_future(self._in_thread(fn, done))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_abandoned)
            raise

    async def _in_thread(self, fn: Callable[[], Any], done: Callable[[], None]) -> Any:
        try:
            return await self.in_thread(fn)
        finally:
            done()

    async def in_thread(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in one of the worker threads (a step of a sync generator, its close)."""
        if self._limiter is None:
            self._limiter = CapacityLimiter(self.max_threads)
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)


def _abandoned(task: asyncio.Future[Any]) -> None:
    """Log what a call nobody waits for any more raised."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log_exception("predict failed after its request was abandoned", exc)
