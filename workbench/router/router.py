"""The router: a raw ASGI app that forwards ``/<api>/<path>`` to a ready replica of ``<api>``.

The controller's server sends every path that is not its own (``/v1/...``, ``/metrics``,
``/healthz``) here. See workbench/router/types.py for what the controller hands over.

This module holds the route table and wires the pieces, one concept each: request.py reads a
request (API name, headers, key, target, splitter choice), forward.py forwards it with retries,
shadow.py sends shadow copies, proxy.py talks to replicas, health.py checks them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from workbench.wire.errors import Unauthorized, Unavailable

from .answers import ASK_FOR_KEY, error_answer
from .api import ApiState
from .asgi import Receive, Scope, Send
from .forward import Forwarder
from .frontdoor import FRONT_DOOR, FrontDoor, openai_error
from .health import HealthChecker
from .metrics import ApiStats, RouterMetrics
from .pool import EndpointState
from .proxy import Upstream
from .request import IncomingRequest, MalformedRequest, api_name, read_request, split_target
from .shadow import ShadowCopies
from .types import ApiRoute, ApiTraffic, Endpoint, ReplicaRequestCounts, SplitRoute
from .websocket import deny, relay_websocket

_now = time.monotonic


class Router:
    """ASGI callable; see the module docstring. All methods run on the server's event loop."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        wake: Callable[[str], None] | None = None,
        require_api_keys: bool = False,
    ) -> None:
        self._metrics = RouterMetrics(registry)
        self.require_api_keys = require_api_keys
        self._routes: dict[str, ApiRoute | SplitRoute] = {}
        self._apis: dict[str, ApiState] = {}
        self._stats: dict[str, ApiStats] = {}
        self._upstream: Upstream | None = None
        self._health = HealthChecker(self._all_endpoints, on_change=self._health_changed)
        self._shadow = ShadowCopies(self._metrics.shadow, self._apis)
        self._forwarder = Forwarder(self._shadow, wake)
        self._front_door = FrontDoor(self._routes, self._dispatch, lambda: self.require_api_keys)
        self._draining = False
        self._in_flight = 0
        self._idle: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._upstream is None:
            self._upstream = self._forwarder.upstream = self._shadow.upstream = Upstream()
        self._health.start()

    async def close(self) -> None:
        await self._health.close()
        await self._shadow.close()
        await self._forwarder.slow.close()
        if self._upstream is not None:
            await self._upstream.close()
            self._upstream = self._forwarder.upstream = self._shadow.upstream = None

    async def drain(self, timeout: float) -> bool:
        """Answer new requests 503; wait up to `timeout` s for those in flight. True if all finished."""
        self._draining = True
        if self._in_flight == 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # -- what the controller tells us ------------------------------------------------------

    def set_route(self, route: ApiRoute | SplitRoute) -> None:
        self._routes[route.name] = route
        self._front_door.models.claim(route.name, route.models)
        if isinstance(route, ApiRoute):
            api = self._api(route.name)
            if api.route is not None and api.route.incarnation != route.incarnation:
                api.stats = self._fresh_stats(route.name)  # deleted and created again
            api.configure(route)
        else:
            self._apis.pop(route.name, None)

    def remove_route(self, name: str) -> None:
        self._routes.pop(name, None)
        self._front_door.models.release(name)
        api = self._apis.pop(name, None)
        if api is not None:
            api.pool.set(())
        stats = self._stats.pop(name, None)
        if stats is not None:
            stats.forget()

    def set_endpoints(self, api: str, endpoints: Sequence[Endpoint]) -> None:
        self._api(api).pool.set(endpoints)

    def traffic(self, api: str) -> ApiTraffic:
        stats = self._stats.get(api)
        if stats is None:
            return ApiTraffic()
        now = _now()
        p50, p99 = stats.rolling.quantiles(now, (0.5, 0.99))
        state = self._apis.get(api)
        states = state.pool.endpoints if state is not None else []
        return ApiTraffic(
            requests_per_second=stats.rolling.rate(now),
            p50_ms=None if p50 is None else p50 * 1000.0,
            p99_ms=None if p99 is None else p99 * 1000.0,
            status_2xx=stats.status[0],
            status_4xx=stats.status[1],
            status_5xx=stats.status[2],
            in_flight=stats.in_flight,
            retries=stats.retries,
            ejections=stats.ejections,
            replica_in_flight={s.replica_id: s.in_flight for s in states},
            ejected=tuple(s.replica_id for s in states if s.ejected(now)),
        )

    def replica_counts(self) -> list[ReplicaRequestCounts]:
        """Requests sent to and in flight at every replica in a pool (the controller's meter reads
        them each second)."""
        return [ReplicaRequestCounts(name, s.endpoint.host, s.replica_id, s.requests, s.in_flight)
                for name, api in self._apis.items() for s in api.pool.endpoints]

    def in_flight(self, api: str) -> int:
        stats = self._stats.get(api)
        return stats.in_flight if stats is not None else 0

    def _api(self, name: str) -> ApiState:
        api = self._apis.get(name)
        if api is None:
            api = self._apis[name] = ApiState(name, self._stats_for(name))
        return api

    def _stats_for(self, name: str) -> ApiStats:
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = ApiStats(self._metrics, name)
        return stats

    def _fresh_stats(self, name: str) -> ApiStats:
        """New counters for `name`, the old ones' series dropped (requests still out with the old
        ones count there, unseen)."""
        old = self._stats.pop(name, None)
        if old is not None:
            old.forget()
        return self._stats_for(name)

    def _all_endpoints(self) -> list[EndpointState]:
        return [s for api in self._apis.values() for s in api.pool.endpoints]

    def _health_changed(self) -> None:
        for api in self._apis.values():
            api.pool.invalidate()

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            elif kind == "websocket":
                await self._websocket(scope, receive, send)
            return
        self._in_flight += 1
        try:
            await self._http(scope, receive, send)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = api_name(scope["path"])
        route = self._routes.get(name)
        if route is None:
            if name == FRONT_DOOR:
                if self._draining:
                    await openai_error(send, 503, "the router is shutting down", "server_error")
                    return
                await self._front_door(scope, receive, send)
                return
            await error_answer(send, 404, f"no API named {name!r}", extra={"apis": sorted(self._routes)})
            return
        if self._draining:
            await error_answer(send, 503, "the router is shutting down", retry_after=True)
            return
        try:
            request = read_request(scope, name, route.api_keys, self.require_api_keys)
        except Unauthorized as error:
            await error_answer(send, 401, error.message, headers=ASK_FOR_KEY)
            return
        except MalformedRequest as error:
            await error_answer(send, 400, error.message, request_id=error.given_request_id)
            return
        await self._dispatch(route, request, receive, send)

    async def _dispatch(self, route: ApiRoute | SplitRoute, request: IncomingRequest, receive: Receive,
                        send: Send) -> None:
        """Serve a read request on its route: a splitter's choice of API, the counters, forwarding."""
        shadow: str | None = None
        if isinstance(route, SplitRoute):
            try:
                api = split_target(route, self._apis)
            except Unavailable as error:
                await error_answer(send, 503, error.message, request_id=request.request_id,
                                   retry_after=True)
                return
            shadow = route.shadow
        else:
            api = self._apis[route.name]

        stats = api.stats
        stats.enter()
        started = _now()
        status = 502
        try:
            status = await self._forwarder.forward(api, request, receive, send, shadow)
        finally:
            stats.leave()
            now = _now()
            stats.done(status, (request.answered_at or now) - started, now)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket upgrade on ``/<api>/<path>``: passed through to a replica (websocket.py)."""
        if (await receive())["type"] != "websocket.connect":
            return
        name = api_name(scope["path"])
        route = self._routes.get(name)
        if route is None:
            await deny(scope, send, 404, f"no API named {name!r}", extra={"apis": sorted(self._routes)})
            return
        if self._draining or self._upstream is None:
            await deny(scope, send, 503, "the router is shutting down")
            return
        try:
            request = read_request(scope, name, route.api_keys, self.require_api_keys)
            api = split_target(route, self._apis) if isinstance(route, SplitRoute) else self._apis[name]
        except Unauthorized as error:
            await deny(scope, send, 401, error.message)
            return
        except MalformedRequest as error:
            await deny(scope, send, 400, error.message)
            return
        except Unavailable as error:
            await deny(scope, send, 503, error.message)
            return
        await relay_websocket(api, request, scope, receive, send, self._upstream)
