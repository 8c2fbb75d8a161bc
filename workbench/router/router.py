"""The router: a raw ASGI app that forwards ``/<api>/<path>`` to a ready replica of ``<api>``.

The controller's server sends every path that is not its own (``/v1/...``, ``/metrics``,
``/healthz``) here. See workbench/router/types.py for what the controller hands over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from workbench.spec.models import RoutingSpec

from . import outlier
from .answers import check_key, error_answer, pick_target
from .health import HealthChecker
from .metrics import ApiStats, RouterMetrics
from .policies import POLICIES, Policy
from .pool import EndpointState, Pool
from .proxy import (
    CONNECT,
    HOP_BY_HOP,
    QUEUE_FULL,
    RESET,
    UPSTREAM_ERRORS,
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    StreamedBody,
    Upstream,
    error_kind,
    read_all,
    read_body,
    relay_body,
    response_headers,
)
from .retry import RetryBudget
from .types import ApiRoute, ApiTraffic, Endpoint, SplitRoute

SHADOW_CONCURRENCY = 32
_QUEUE_FULL_MARKERS = (b"queue full", b"predictor not ready")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_now = time.monotonic


class _Api:
    """An API's routing state: its route, pool, policy, retry budget and counters."""

    __slots__ = ("budget", "name", "policy", "pool", "route", "routing", "stats", "wake_at")

    def __init__(self, name: str, stats: ApiStats) -> None:
        self.name = name
        self.route: ApiRoute | None = None
        self.routing = RoutingSpec()
        self.pool = Pool()
        self.policy: Policy = POLICIES[self.routing.policy]
        self.budget = RetryBudget(self.routing.retry_budget, self.routing.retry_budget_min)
        self.stats = stats
        self.wake_at = -1e9


@dataclass
class _Request:
    """What one client request carries through the attempts."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes | StreamedBody | None
    request_id: bytes


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
        self._wake = wake
        self.require_api_keys = require_api_keys
        self._routes: dict[str, ApiRoute | SplitRoute] = {}
        self._apis: dict[str, _Api] = {}
        self._stats: dict[str, ApiStats] = {}
        self._upstream: Upstream | None = None
        self._health = HealthChecker(self._all_endpoints)
        self._draining = False
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._shadow_slots = SHADOW_CONCURRENCY
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._upstream is None:
            self._upstream = Upstream()
        self._health.start()

    async def close(self) -> None:
        await self._health.close()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._upstream is not None:
            await self._upstream.close()
            self._upstream = None

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
        if isinstance(route, ApiRoute):
            api = self._api(route.name)
            api.route = route
            api.routing = r = route.routing
            api.policy = POLICIES.get(r.policy, POLICIES["ewma"])
            api.budget.configure(r.retry_budget, r.retry_budget_min)
        else:
            self._apis.pop(route.name, None)

    def remove_route(self, name: str) -> None:
        self._routes.pop(name, None)
        api = self._apis.pop(name, None)
        if api is not None:
            api.pool.set(())

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

    def in_flight(self, api: str) -> int:
        stats = self._stats.get(api)
        return stats.in_flight if stats is not None else 0

    def _api(self, name: str) -> _Api:
        api = self._apis.get(name)
        if api is None:
            api = self._apis[name] = _Api(name, self._stats_for(name))
        return api

    def _stats_for(self, name: str) -> ApiStats:
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = ApiStats(self._metrics, name)
        return stats

    def _all_endpoints(self) -> list[EndpointState]:
        return [s for api in self._apis.values() for s in api.pool.endpoints]

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
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
        path: str = scope["path"]
        slash = path.find("/", 1)
        name = path[1:] if slash < 0 else path[1:slash]
        route = self._routes.get(name)
        if route is None:
            await error_answer(send, 404, f"no API named {name!r}", extra={"apis": sorted(self._routes)})
            return
        if self._draining:
            await error_answer(send, 503, "the router is shutting down", retry_after=True)
            return

        # one pass over the request headers
        forward: list[tuple[bytes, bytes]] = []  # decoded once all is checked
        request_id: bytes | None = None
        length: bytes | None = None
        chunked = False
        authorization: bytes | None = None
        api_key: bytes | None = None
        connection: bytes | None = None
        for key, value in scope["headers"]:
            if key in HOP_BY_HOP:
                if key == b"connection":
                    connection = value
                elif key == b"transfer-encoding":
                    chunked = True
                continue
            if key == b"host":
                continue
            if key == b"content-length":
                length = value
                continue
            if key == b"x-request-id":
                request_id = value
                continue
            if key == b"authorization":
                authorization = value
            elif key == b"x-api-key":
                api_key = value
            forward.append((key, value))
        if connection is not None:
            named = {t.strip().lower() for t in connection.split(b",")}
            forward = [(k, v) for k, v in forward if k not in named]

        keys = route.api_keys
        if keys or self.require_api_keys:
            problem = check_key(keys, authorization, api_key, name)
            if problem is not None:
                await error_answer(send, 401, problem, headers=[(b"www-authenticate", b"Bearer")])
                return
            forward = [(k, v) for k, v in forward if k not in (b"authorization", b"x-api-key")]

        if request_id is None or not 0 < len(request_id) <= 200:
            request_id = uuid.uuid4().hex.encode()
        content_length: int | None = None
        if length is not None:
            if not length.isdigit() or len(length) > 18:
                await error_answer(send, 400, "invalid Content-Length", request_id=request_id)
                return
            content_length = int(length)

        raw: bytes = scope.get("raw_path") or path.encode()
        prefix_len = len(name) + 1
        rest = raw[prefix_len:] if raw[1:prefix_len] == name.encode() else path[prefix_len:].encode()
        target = rest if rest.startswith(b"/") else b"/" + rest
        query: bytes = scope.get("query_string", b"")
        if query:
            target = target + b"?" + query
        has_body = chunked or (content_length is not None and content_length > 0)
        request = _Request(
            scope["method"], target.decode("latin-1"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in forward], None, request_id,
        )

        if isinstance(route, SplitRoute):
            chosen = pick_target(route)
            if chosen is None:
                await error_answer(send, 503, f"traffic splitter {name!r} has no target with weight",
                                   request_id=request_id, retry_after=True)
                return
            api = self._apis.get(chosen)
            if api is None or api.route is None:
                await error_answer(send, 503, f"API {chosen!r} of traffic splitter {name!r} is not deployed",
                                   request_id=request_id, retry_after=True)
                return
            await self._serve(api, request, has_body, content_length, receive, send, shadow=route.shadow)
            return
        await self._serve(self._apis[name], request, has_body, content_length, receive, send)

    async def _serve(
        self,
        api: _Api,
        request: _Request,
        has_body: bool,
        content_length: int | None,
        receive: Receive,
        send: Send,
        shadow: str | None = None,
    ) -> None:
        stats = api.stats
        stats.enter()
        started = _now()
        status = 502
        try:
            status = await self._forward(api, request, has_body, content_length, receive, send, shadow)
        finally:
            stats.leave()
            now = _now()
            stats.done(status, now - started, now)

    async def _forward(
        self,
        api: _Api,
        request: _Request,
        has_body: bool,
        content_length: int | None,
        receive: Receive,
        send: Send,
        shadow: str | None,
    ) -> int:
        """Forward with retries; returns the status sent to the client."""
        route = api.route
        assert route is not None
        routing = api.routing
        rid = request.request_id
        limit = route.max_body_bytes
        if content_length is not None and content_length > limit:
            return await error_answer(send, 413, f"request body over {limit} bytes", request_id=rid)
        if has_body:
            try:
                request.body = await read_body(receive, limit)
            except BodyTooLarge:
                return await error_answer(send, 413, f"request body over {limit} bytes", request_id=rid)
            except ClientGone:
                return 499
        if shadow is not None:
            self._shadow(shadow, request)

        pool = api.pool
        now = _now()
        if not pool.endpoints and route.scale_to_zero:
            if self._wake is not None and now - api.wake_at > 1.0:
                api.wake_at = now
                with contextlib.suppress(Exception):
                    self._wake(api.name)
            wait = routing.scale_from_zero_timeout
            if not await pool.wait_for_endpoints(wait):
                return await error_answer(send, 503, f"API {api.name!r} did not start within {wait:g}s",
                                          request_id=rid, retry_after=True)
            now = _now()

        api.budget.request(now)
        deadline = now + routing.timeout
        upstream = self._upstream
        if upstream is None:
            return await error_answer(send, 503, "the router is not started", request_id=rid,
                                      retry_after=True)
        body = request.body
        replayable = not isinstance(body, StreamedBody)
        headers = [*request.headers, ("x-request-id", rid.decode("latin-1"))]
        if body is not None:
            size = len(body) if isinstance(body, bytes) else content_length
            if size is not None:
                headers.append(("content-length", str(size)))
        tried: list[EndpointState] = []
        # a "queue full" 503 to pass on when no retry is possible
        held: tuple[int, tuple[tuple[bytes, bytes], ...], bytes, EndpointState] | None = None
        last_problem = ""
        attempt = 0
        stats = api.stats
        while True:
            state = self._choose(api, tried, now)
            if state is None:
                break
            tried.append(state)
            state.begin(now)
            started = now
            ok = True
            kind = ""
            try:
                remaining = deadline - now
                if remaining <= 0:
                    raise TimeoutError
                try:
                    async with asyncio.timeout(remaining):
                        response = await upstream.open(state, request.method, request.target, headers, body)
                        status = response.status
                        if status == 503:
                            text = await read_all(response)
                            if any(m in text for m in _QUEUE_FULL_MARKERS):
                                kind = QUEUE_FULL
                                held = (503, response.raw_headers, text, state)
                            else:
                                self._failed(api, state, _now())
                                return await self._send_buffered(send, 503, response.raw_headers, text, state,
                                                                 rid, pool, routing, api)
                except TimeoutError:
                    ok = False
                    stats.upstream_error("timeout")
                    self._failed(api, state, _now())
                    return await error_answer(send, 504, f"no answer from API {api.name!r} within "
                                              f"{routing.timeout:g}s", request_id=rid)
                except BodyTooLarge:
                    ok = False
                    return await error_answer(send, 413, f"request body over {limit} bytes", request_id=rid)
                except ClientGone:
                    ok = False
                    return 499
                except UPSTREAM_ERRORS as exc:
                    ok = False
                    failure = body.failure if isinstance(body, StreamedBody) else None
                    if isinstance(failure, BodyTooLarge):
                        return await error_answer(send, 413, f"request body over {limit} bytes",
                                                  request_id=rid)
                    if isinstance(failure, ClientGone):
                        return 499
                    kind = error_kind(exc)
                    stats.upstream_error(kind)
                    self._failed(api, state, _now())
                    detail = str(exc) or type(exc).__name__
                    last_problem = f"{kind} error from replica {state.replica_id}: {detail}"
                except (ValueError, UnicodeError) as exc:  # the client library refused what it was given
                    ok = False
                    return await error_answer(send, 400, f"cannot forward this request: {exc}",
                                              request_id=rid)
                if not kind:
                    # an answer: relay it
                    if status >= 500:
                        self._failed(api, state, _now())
                    else:
                        outlier.record_success(state)
                    await send({"type": "http.response.start", "status": status,
                                "headers": response_headers(response.raw_headers, rid, state.replica_bytes)})
                    ok = await relay_body(response, send)
                    if not ok:
                        stats.upstream_error(RESET)
                        self._failed(api, state, _now())
                    return status
            finally:
                now = _now()
                state.end(started, now, ok and kind != QUEUE_FULL)

            # a failed attempt: may we retry on another replica?
            if kind in (QUEUE_FULL, CONNECT):
                allowed = replayable or not (isinstance(body, StreamedBody) and body.started)
            else:
                allowed = routing.idempotent and replayable
            if not allowed or attempt >= routing.max_retries:
                break
            if not api.budget.try_withdraw(now):
                stats.budget_exhausted_c.inc()
                break
            attempt += 1
            stats.retried()

        if held is not None:
            status, upstream_headers, text, state = held
            return await self._send_buffered(send, status, upstream_headers, text, state, rid,
                                             pool, routing, api)
        if last_problem:
            return await error_answer(send, 502, last_problem, request_id=rid)
        return await error_answer(send, 503, f"API {api.name!r} has no ready replica", request_id=rid,
                                  retry_after=True)

    async def _send_buffered(
        self, send: Send, status: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes,
        state: EndpointState, rid: bytes, pool: Pool, routing: RoutingSpec, api: _Api,
    ) -> int:
        out = response_headers(headers, rid, state.replica_bytes)
        out = [(k, v) for k, v in out if k != b"content-length"]
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return status

    def _choose(self, api: _Api, tried: list[EndpointState], now: float) -> EndpointState | None:
        pool = api.pool
        candidates = [s for s in pool.endpoints if s.healthy and s.ejected_until <= now]
        if tried:
            candidates = [s for s in candidates if s not in tried]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return api.policy(pool, candidates, now)

    def _failed(self, api: _Api, state: EndpointState, now: float) -> None:
        if outlier.record_failure(api.pool, state, api.routing, now):
            api.stats.ejected()

    # -- shadow traffic ------------------------------------------------------------------------

    def _shadow(self, name: str, request: _Request) -> None:
        counter = self._metrics.shadow
        if isinstance(request.body, StreamedBody):
            counter.labels(name, "skipped").inc()  # too large to copy
            return
        if self._shadow_slots <= 0:
            counter.labels(name, "dropped").inc()
            return
        self._shadow_slots -= 1
        task = asyncio.get_running_loop().create_task(self._send_shadow(name, request))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_shadow(self, name: str, request: _Request) -> None:
        outcome = "error"
        try:
            api = self._apis.get(name)
            upstream = self._upstream
            if api is None or upstream is None:
                outcome = "no_api"
                return
            now = _now()
            state = self._choose(api, [], now)
            if state is None:
                outcome = "no_replica"
                return
            headers = [*request.headers, ("x-request-id", request.request_id.decode("latin-1"))]
            body = request.body
            if isinstance(body, bytes):
                headers.append(("content-length", str(len(body))))
            state.begin(now)
            ok = False
            try:
                async with asyncio.timeout(api.routing.timeout):
                    response = await upstream.open(state, request.method, request.target, headers, body)
                    await read_all(response, 0)
                ok = response.status < 500
                outcome = "ok" if ok else "5xx"
            finally:
                state.end(now, _now(), ok)
        except Exception:
            outcome = "error"
        finally:
            self._shadow_slots += 1
            self._metrics.shadow.labels(name, outcome).inc()
