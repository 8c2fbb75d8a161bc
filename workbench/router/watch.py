"""What ends an exchange early: the client leaving, or a stream that stops moving.

ASGI tells an app that its client left only through ``receive()`` (``http.disconnect``), so seeing
it takes a receive() of its own running beside the exchange: a task per request, which costs more
(~10 µs) than relaying an answer that arrives in one read. So the watch starts only where it can
matter: at once when an answer turns out to be a stream (or a body of several reads), and for a
request still waiting for its answer after one or two ticks of :class:`SlowExchanges` (20-40 ms).

Both ends work the same way: the exchange waits inside an ``asyncio.timeout`` scope (`enter`), and
the watch expires that scope at once, after setting `gone` (the client left) or `stalled` (no chunk
for the idle limit). The exchange then tells the two apart by those flags, not by the TimeoutError.
The idle limit is checked lazily: a chunk only stamps `moved`, and one timer per idle period looks
at the stamp, so a stream of many small chunks pays a float store per chunk, not a timer.
"""

from __future__ import annotations

import asyncio
import contextlib

from .asgi import Receive

TICK = 0.02  # seconds between the sweeps of SlowExchanges


class ExchangeWatch:
    """The watch of one client request (see the module docstring). `stop` ends it; it must be
    called once the exchange is over."""

    __slots__ = ("_idle", "_idle_timer", "_receive", "_task", "gone", "moved", "scope", "sending",
                 "stalled", "stopped")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[None] | None = None
        self._idle = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self.scope: asyncio.Timeout | None = None  # what the exchange waits in now
        self.gone = False  # the client hung up
        self.stalled = False  # the stream sent nothing for the idle limit
        self.moved = 0.0  # loop time of the stream's last chunk
        self.sending = False  # a chunk is on its way to the client (its wait is not the replica's)
        self.stopped = False

    @property
    def ended(self) -> bool:
        return self.gone or self.stalled

    def ready(self) -> bool:
        """Whether the client side can be watched now (no one else is reading from it)."""
        return True

    # -- the scope the exchange waits in ---------------------------------------------------

    def enter(self, scope: asyncio.Timeout) -> None:
        self.scope = scope
        if self.gone or self.stalled:
            self._expire()

    def leave(self) -> None:
        self.scope = None

    def _expire(self) -> None:
        scope = self.scope
        if scope is not None and not scope.expired():
            with contextlib.suppress(RuntimeError):  # left the scope meanwhile
                scope.reschedule(0)  # in the past: expires on the next loop iteration

    # -- the client ------------------------------------------------------------------------

    def watch_client(self) -> None:
        """Start watching for the client's disconnect (once)."""
        if self._task is None and not self.stopped:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    @property
    def watching(self) -> bool:
        return self._task is not None

    async def _watch(self) -> None:
        receive = self._receive
        try:
            while (await receive())["type"] != "http.disconnect":
                pass  # a request without a body hands over its empty end first
        except Exception:
            return
        if not self.stopped:  # (the server also says "disconnect" once the response is complete)
            self.gone = True
            self._expire()

    # -- the stream ------------------------------------------------------------------------

    def watch_idle(self, seconds: float) -> None:
        """From now on, end the exchange when `moved` is older than `seconds`."""
        loop = asyncio.get_running_loop()
        self._idle = seconds
        self.moved = now = loop.time()
        if self._idle_timer is None and not self.stopped:
            self._idle_timer = loop.call_at(now + seconds, self._check_idle)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = (now if self.sending else self.moved) + self._idle
        if now >= due:
            self._idle_timer = None
            self.stalled = True
            self._expire()
        else:
            self._idle_timer = loop.call_at(due, self._check_idle)

    # -- the end ---------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopped = True
        self.scope = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


class SlowExchanges:
    """Starts the client watch of every exchange still out after one to two ticks. One sleeping
    task serves them all (it stops when none is left), so an exchange answered within a tick costs
    a set insertion and two removals, and no timer of its own."""

    __slots__ = ("_old", "_task", "_young")

    def __init__(self) -> None:
        self._young: set[ExchangeWatch] = set()
        self._old: set[ExchangeWatch] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, watch: ExchangeWatch) -> None:
        self._young.add(watch)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep())

    def discard(self, watch: ExchangeWatch) -> None:
        self._young.discard(watch)
        self._old.discard(watch)

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    async def _sweep(self) -> None:
        try:
            while self._young or self._old:
                await asyncio.sleep(TICK)
                waiting = set()
                for watch in self._old:
                    if watch.ready():
                        watch.watch_client()
                    else:
                        waiting.add(watch)  # its body still streams upstream: next tick
                self._old = self._young | waiting
                self._young = set()
        finally:
            self._task = None

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._young.clear()
        self._old.clear()
