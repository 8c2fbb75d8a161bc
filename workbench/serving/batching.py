"""Dynamic batching: requests are grouped into one ``predict`` call with a list payload.

A batch is sent when `max_batch_size` requests wait, or `batch_timeout` seconds after its
first request arrived, whichever comes first; at most `max_concurrency` batches run at once
(requests keep gathering while all are busy). ``predict`` gets lists — payloads, and
``query_params``/``headers`` when it asks for them — one item per request, in arrival order,
and must return a list (or tuple) of the same length; each caller gets its own item.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.wire.errors import Failed

from .limits import QueueFull
from .logs import log_exception

#: ``predict(payloads, query_params, headers, done)``: run one batch; call ``done()`` once
#: the user's code has really finished (it may outlive a cancelled caller).
BatchPredict = Callable[[list[Any], list[Any], list[Any], Callable[[], None]], Awaitable[Any]]


class BatchError(Failed):
    """``predict`` returned something other than one result per request."""


@dataclass(slots=True, eq=False)
class _Item:
    payload: Any
    query_params: Any
    headers: Any
    future: asyncio.Future[Any]
    enqueued: float
    dispatched: bool = field(default=False)


class Batcher:
    """Collects requests into batches and runs them; see the module docstring.

    At most ``max_queue + max_batch_size`` requests wait for a batch to start (the batch
    being gathered is not counted as queue); beyond that :meth:`submit` raises
    :class:`QueueFull`.
    """

    def __init__(
        self,
        predict: BatchPredict,
        *,
        max_batch_size: int,
        batch_timeout: float,
        max_concurrency: int,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.max_waiting = max_queue + max_batch_size
        self._on_batch = on_batch
        self.waiting = 0  # requests not yet in a running batch
        self.running = 0  # requests in running batches
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    async def submit(self, payload: Any, query_params: Any = None, headers: Any = None) -> Any:
        """This request's result, once its batch has run."""
        if self.waiting >= self.max_waiting:
            raise QueueFull(
                f"queue full (max_batch_size={self.max_batch_size}, "
                f"max_concurrency={self.max_concurrency}, max_queue={self.max_queue})"
            )
        if self._task is None:
            self._task = asyncio.create_task(self._collect())
        loop = asyncio.get_running_loop()
        item = _Item(payload, query_params, headers, loop.create_future(), loop.time())
        self._queue.put_nowait(item)
        self.waiting += 1
        try:
            return await item.future
        except asyncio.CancelledError:
            if not item.dispatched:
                item.dispatched = True  # never counted again
                self.waiting -= 1
            raise

    async def close(self) -> None:
        """Stop gathering; fail what still waits."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.cancel()

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        self._slots = slots = asyncio.Semaphore(self.max_concurrency)
        while True:
            await slots.acquire()
            try:
                batch = await self._gather(loop)
            except BaseException:
                slots.release()
                raise
            self._dispatch(batch)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[_Item]:
        first = await self._next()
        batch = [first]
        deadline = first.enqueued + self.batch_timeout
        while len(batch) < self.max_batch_size:
            item = self._next_nowait()
            if item is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await self._next()
                except TimeoutError:
                    break
            batch.append(item)
        live = [i for i in batch if not i.dispatched]
        return live or await self._gather(loop)

    async def _next(self) -> _Item:
        while True:
            item = await self._queue.get()
            if not item.dispatched:
                return item

    def _next_nowait(self) -> _Item | None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.dispatched:
                return item
        return None

    def _dispatch(self, batch: list[_Item]) -> None:
        size = len(batch)
        for item in batch:
            item.dispatched = True
        self.waiting -= size
        self.running += size
        if self._on_batch is not None:
            self._on_batch(size)
        task = asyncio.create_task(self._run(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run(self, batch: list[_Item]) -> None:
        size = len(batch)
        released = False

        def done() -> None:
            nonlocal released
            if not released:
                released = True
                self.running -= size
                assert self._slots is not None
                self._slots.release()

        try:
            results = await self._predict(
                [i.payload for i in batch],
                [i.query_params for i in batch],
                [i.headers for i in batch],
                done,
            )
        except asyncio.CancelledError:
            _fail(batch, None)
            raise
        except Exception as exc:
            done()  # no-op when the runner already called it
            _fail(batch, exc)
            return
        done()
        if not isinstance(results, list | tuple) or len(results) != size:
            what = (
                f"a {type(results).__name__} of length {len(results)}"
                if isinstance(results, list | tuple)
                else f"a {type(results).__name__}"
            )
            error = BatchError(
                f"predict returned {what} for a batch of {size}; "
                f"with batching it must return a list of {size} results, in order"
            )
            log_exception("batch failed", error)
            _fail(batch, error)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)


def _fail(batch: list[_Item], exc: BaseException | None) -> None:
    for item in batch:
        if not item.future.done():
            if exc is None:
                item.future.cancel()
            else:
                item.future.set_exception(exc)
