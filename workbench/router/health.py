"""Active health checks: ``GET <replica>/readyz`` (a container API's own health path) every ~2 s
(1 s timeout) per endpoint; a replica that does not answer 2xx is out of rotation until it does.

The next round starts `interval` seconds after the last one finished (rounds never overlap).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from .pool import EndpointState
from .proxy import tls_context

INTERVAL = 2.0
TIMEOUT = 1.0


class HealthChecker:
    """Checks what `endpoints()` returns each round; calls `on_change()` after a round in which
    an endpoint turned healthy or unhealthy (the router then rebuilds its eligible lists)."""

    def __init__(
        self,
        endpoints: Callable[[], Iterable[EndpointState]],
        *,
        on_change: Callable[[], None] | None = None,
        interval: float = INTERVAL,
        timeout: float = TIMEOUT,
    ) -> None:
        self._endpoints = endpoints
        self._on_change = on_change
        self.interval = interval
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=10.0),
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            )
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check_all()

    async def check_all(self) -> None:
        states = [s for s in self._endpoints() if not s.removed]
        if states:
            results = await asyncio.gather(*(self.check(s) for s in states))
            changed = False
            for state, ok in zip(states, results, strict=True):
                if not state.removed and state.healthy != ok:
                    state.healthy = ok
                    changed = True
            if changed and self._on_change is not None:
                self._on_change()

    async def check(self, state: EndpointState) -> bool:
        session = self._session
        if session is None:
            return state.healthy
        endpoint = state.endpoint
        if endpoint.health_path is None:
            return True
        extra: dict[str, Any] = {}
        if endpoint.headers:  # a direct-mode host's agent token
            extra["headers"] = dict(endpoint.headers)
        if endpoint.ca_cert:
            extra["ssl"] = tls_context(endpoint.ca_cert)
        try:
            async with (asyncio.timeout(self.timeout),
                        session.get(state.url + endpoint.health_path, **extra) as response):
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return False
