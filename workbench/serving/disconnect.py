"""Seeing that a request's client hung up, so its prediction stops.

ASGI says a client left only through ``receive()`` (``http.disconnect``), so the watch is a
receive() of its own beside the work: a task. A prediction that answers within `WATCH_AFTER`
seconds never pays for one (a timer is armed instead and cancelled); a stream is watched from
its start. On a disconnect the watch sets `gone` and expires the ``asyncio.timeout`` scope the
work runs in, so the work is cancelled where it waits (the user's ``await``, the queue) and the
caller tells it from a timeout by `gone`.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Receive

WATCH_AFTER = 0.02  # seconds: a prediction still running then is watched


class DisconnectWatch:
    """One request's watch; `stop` it when the work is over (see the module docstring)."""

    __slots__ = ("_receive", "_scope", "_task", "_timer", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._scope: asyncio.Timeout | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.gone = False

    def guard(self, scope: asyncio.Timeout) -> None:
        """Expire `scope` (entered) when the client hangs up."""
        self._scope = scope

    def start_later(self, delay: float = WATCH_AFTER) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, self.start)

    def start(self) -> None:
        self._timer = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        self._scope = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        receive = self._receive
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:
            return
        scope = self._scope
        if scope is None:
            return  # the work ended meanwhile (the server says "disconnect" after the response too)
        self.gone = True
        if not scope.expired():
            with contextlib.suppress(RuntimeError):  # the scope was left meanwhile
                scope.reschedule(0)
