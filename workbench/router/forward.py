"""Forwarding one request with retries: a small state machine.

Each attempt sends the request to one replica (picked among the eligible ones not tried yet)
and ends in a named :class:`AttemptOutcome`. An outcome is either final (the replica's answer was
passed on, or the router answers for it: 504, 413, 400, or nobody to answer; or the client left,
or the stream stalled: see watch.py) or a failure that
:func:`retry_decision` may retry on another replica: only where the request can be sent again
(its body kept, or not started) and either nothing was done (connect failed, queue full) or the
API says its requests are idempotent; and only within the API's attempts and retry budget.
When no attempt is left: a held "queue full" answer is passed on, else 502 naming the last
failure, else 503 (no ready replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import aiohttp

from workbench.spec.models import RoutingSpec
from workbench.wire.errors import TooLarge

from . import outlier
from .answers import error_answer
from .api import ApiState
from .asgi import Receive, Send
from .policies import pick
from .pool import EndpointState
from .proxy import (
    UPSTREAM_ERRORS,
    ClientGone,
    Relayed,
    StreamedBody,
    Upstream,
    read_all,
    read_body,
    relay_body,
    response_headers,
    send_buffered,
    too_large_text,
)
from .request import IncomingRequest
from .retry import RetryBudget
from .shadow import ShadowCopies
from .watch import ExchangeWatch, SlowExchanges

_QUEUE_FULL_MARKERS = (b"queue full", b"predictor not ready")  # in a replica's 503 body
_now = time.monotonic


class AttemptOutcome(Enum):
    """How one attempt at one replica ended. The values of the failures are the `kind` label of
    ``workbench_router_upstream_errors_total``."""

    ANSWERED = "answered"  # the replica answered; its answer was relayed
    RELAY_BROKEN = "relay_broken"  # it answered, then broke off mid-body (counted as a reset)
    REPLICA_UNAVAILABLE = "unavailable"  # it answered 503 for another reason than a full queue: passed on
    QUEUE_FULL = "queue_full"  # it answered 503 "queue full" / "not ready": it did nothing; held
    CONNECT_FAILED = "connect"  # refused, unreachable, timed out connecting: nothing reached it
    RESET = "reset"  # the connection dropped, or a bad answer, after the request was (maybe) sent
    TIMEOUT = "timeout"  # no answer within routing.timeout: the router answers 504
    BODY_TOO_LARGE = "body_too_large"  # the client's streamed body went over the limit: 413
    CLIENT_GONE = "client_gone"  # the client hung up while its body streamed: nobody to answer
    NOT_FORWARDABLE = "not_forwardable"  # the HTTP client refused the request as given: 400
    CLIENT_CANCELLED = "client_cancelled"  # the client hung up waiting for the answer or during its
    # stream: the upstream connection was closed at once (the replica stops working on it)
    STREAM_IDLE = "stream_idle"  # the answer's stream sent nothing for routing.stream_idle_timeout


#: outcomes that may be retried on another replica (see retry_decision)
RETRYABLE = frozenset({AttemptOutcome.QUEUE_FULL, AttemptOutcome.CONNECT_FAILED, AttemptOutcome.RESET})
#: failures after which the replica surely did nothing with the request
NOTHING_DONE = frozenset({AttemptOutcome.QUEUE_FULL, AttemptOutcome.CONNECT_FAILED})
#: the replica's own answer went to the client (the attempt's status is the answer's)
PASSED_ON = frozenset({AttemptOutcome.ANSWERED, AttemptOutcome.RELAY_BROKEN,
                       AttemptOutcome.REPLICA_UNAVAILABLE, AttemptOutcome.STREAM_IDLE})
_RELAYED = {Relayed.COMPLETE: AttemptOutcome.ANSWERED, Relayed.BROKEN: AttemptOutcome.RELAY_BROKEN,
            Relayed.STALLED: AttemptOutcome.STREAM_IDLE, Relayed.CLIENT_LEFT: AttemptOutcome.CLIENT_CANCELLED}

_FAILURES: tuple[tuple[type[BaseException], AttemptOutcome], ...] = (
    (aiohttp.ClientConnectorError, AttemptOutcome.CONNECT_FAILED),  # refused, unreachable, DNS
    (aiohttp.ConnectionTimeoutError, AttemptOutcome.CONNECT_FAILED),
    (aiohttp.ServerDisconnectedError, AttemptOutcome.RESET),
    (aiohttp.ClientPayloadError, AttemptOutcome.RESET),
    (aiohttp.ClientOSError, AttemptOutcome.RESET),
    (aiohttp.ServerTimeoutError, AttemptOutcome.RESET),
)


def failure_outcome(exc: BaseException) -> AttemptOutcome:
    """What an error of the HTTP client (one of UPSTREAM_ERRORS) says about the attempt."""
    for cls, outcome in _FAILURES:
        if isinstance(exc, cls):
            return outcome
    return AttemptOutcome.RESET


def is_queue_full(body: bytes) -> bool:
    """A replica's 503 body that says it did nothing with the request (the runtime's own words)."""
    return any(marker in body for marker in _QUEUE_FULL_MARKERS)


class RetryDecision(Enum):
    RETRY = "retry"
    STOP = "stop"  # the outcome, the body or the attempts left rule a retry out
    BUDGET_SPENT = "budget_spent"  # a retry was allowed, but the API's retry budget is spent


def retry_decision(
    outcome: AttemptOutcome,
    body: bytes | StreamedBody | None,
    routing: RoutingSpec,
    retries: int,
    budget: RetryBudget,
    now: float,
) -> RetryDecision:
    """Whether a failed attempt is tried again on another replica; RETRY spends one retry from
    `budget`. `retries`: how many this request had so far."""
    if outcome not in RETRYABLE:
        return RetryDecision.STOP
    streamed = body if isinstance(body, StreamedBody) else None  # kept bodies can be sent again
    if outcome in NOTHING_DONE:
        allowed = streamed is None or not streamed.started
    else:
        allowed = routing.idempotent and streamed is None  # the replica may have run it
    if not allowed or retries >= routing.max_retries:
        return RetryDecision.STOP
    if not budget.try_withdraw(now):
        return RetryDecision.BUDGET_SPENT
    return RetryDecision.RETRY


@dataclass(slots=True)
class HeldAnswer:
    """A replica's "queue full" 503, passed on to the client when no retry is possible."""

    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    replica: bytes


class Exchange(ExchangeWatch):
    """One request on its way through the attempts: what every attempt sends, and what the
    attempts leave behind (the status passed on, a held answer, the last failure). It is also the
    request's watch (see watch.py): the client leaving or the stream stalling ends the attempt."""

    __slots__ = ("api", "body", "deadline", "headers", "held", "problem", "request", "send", "status",
                 "upstream")

    def __init__(self, api: ApiState, request: IncomingRequest, upstream: Upstream,
                 headers: list[tuple[str, str]], deadline: float, receive: Receive, send: Send) -> None:
        super().__init__(receive)
        self.api = api
        self.request = request
        self.body = request.body
        self.upstream = upstream
        self.headers = headers
        self.deadline = deadline
        self.send = send
        self.status = 0  # of the answer passed on
        self.held: HeldAnswer | None = None
        self.problem = ""  # the last failure, for the 502 (or why the request cannot be forwarded)

    def ready(self) -> bool:
        body = self.body
        return not isinstance(body, StreamedBody) or body.finished

    async def attempt(self, state: EndpointState, now: float) -> AttemptOutcome:
        """Send the request to `state`; relay its answer when it is one to pass on."""
        api = self.api
        body = self.body
        send = self.send
        state.begin(now)
        outcome: AttemptOutcome | None = None
        try:
            try:
                remaining = self.deadline - now
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining) as scope:
                    self.enter(scope)
                    request = self.request
                    response = await self.upstream.open(state, request.method, request.target,
                                                        self.headers, body)
                    if response.status == 503:
                        text = await read_all(response)
                        if is_queue_full(text):
                            self.held = HeldAnswer(response.raw_headers, text, state.replica_bytes)
                            outcome = AttemptOutcome.QUEUE_FULL
                            return outcome
                        api.failed(state, _now())
                        await send_buffered(send, 503, response.raw_headers, text, request.request_id,
                                            state.replica_bytes)
                        self.status = 503
                        state.observe(_now() - now, _now())
                        outcome = AttemptOutcome.REPLICA_UNAVAILABLE
                        return outcome
            except TimeoutError:
                if self.gone:
                    api.stats.cancelled()
                    outcome = AttemptOutcome.CLIENT_CANCELLED
                    return outcome
                api.stats.upstream_error(AttemptOutcome.TIMEOUT.value)
                api.failed(state, _now())
                outcome = AttemptOutcome.TIMEOUT
                return outcome
            except TooLarge:
                outcome = AttemptOutcome.BODY_TOO_LARGE
                return outcome
            except ClientGone:
                outcome = AttemptOutcome.CLIENT_GONE
                return outcome
            except UPSTREAM_ERRORS as exc:
                failure = body.failure if isinstance(body, StreamedBody) else None
                if isinstance(failure, TooLarge):  # the client side broke, not the replica
                    outcome = AttemptOutcome.BODY_TOO_LARGE
                elif isinstance(failure, ClientGone):
                    outcome = AttemptOutcome.CLIENT_GONE
                else:
                    outcome = failure_outcome(exc)
                    api.stats.upstream_error(outcome.value)
                    api.failed(state, _now())
                    self.problem = (f"{outcome.value} error from replica {state.replica_id}: "
                                    f"{str(exc) or type(exc).__name__}")
                return outcome
            except (ValueError, UnicodeError) as exc:  # the client library refused what it was given
                self.problem = f"cannot forward this request: {exc}"
                outcome = AttemptOutcome.NOT_FORWARDABLE
                return outcome
            finally:
                self.leave()

            # an answer: relay it. Its latency is the time to its headers (a stream's length is none)
            headers_at = _now()
            state.observe(headers_at - now, headers_at)
            self.request.answered_at = headers_at
            status = self.status = response.status
            if status >= 500:
                api.failed(state, headers_at)
            else:
                outlier.record_success(state)
            await send({"type": "http.response.start", "status": status,
                        "headers": response_headers(response.raw_headers, self.request.request_id,
                                                    state.replica_bytes)})
            outcome = _RELAYED[await relay_body(response, send, self, api.routing.stream_idle_timeout)]
            if outcome is AttemptOutcome.RELAY_BROKEN:
                api.stats.upstream_error(AttemptOutcome.RESET.value)
                api.failed(state, _now())
            elif outcome is AttemptOutcome.STREAM_IDLE:
                api.stats.upstream_error(AttemptOutcome.STREAM_IDLE.value)
                api.failed(state, _now())
            elif outcome is AttemptOutcome.CLIENT_CANCELLED:
                api.stats.cancelled()
            return outcome
        finally:
            state.end(now, _now(), False)


class Forwarder:
    """Forwards requests to their API's replicas. `upstream` is set while the router runs."""

    def __init__(self, shadow: ShadowCopies, wake: Callable[[str], None] | None = None) -> None:
        self.upstream: Upstream | None = None
        self._shadow = shadow
        self._wake = wake
        self.slow = SlowExchanges()

    async def forward(self, api: ApiState, request: IncomingRequest, receive: Receive, send: Send,
                      shadow: str | None = None) -> int:
        """Read the body, copy the request to `shadow` (an API name) if given, wait for a replica
        when the API is scaled to zero, then attempt; returns the status sent to the client (499:
        none, the client hung up)."""
        route = api.route
        assert route is not None
        routing = api.routing
        rid = request.request_id
        limit = route.max_body_bytes
        content_length = request.content_length
        if content_length is not None and content_length > limit:
            return await error_answer(send, 413, too_large_text(limit), request_id=rid)
        if request.has_body and request.body is None:  # (the front door read it already)
            try:
                request.body = await read_body(receive, limit)
            except TooLarge as error:
                return await error_answer(send, 413, error.message, request_id=rid)
            except ClientGone:
                return 499
        if shadow is not None:
            self._shadow.copy(shadow, request)

        pool = api.pool
        now = _now()
        if not pool.endpoints and route.scale_to_zero:
            wait = routing.scale_from_zero_timeout
            if not await self._wake_and_wait(api, now, wait):
                return await error_answer(send, 503, f"API {api.name!r} did not start within {wait:g}s",
                                          request_id=rid, retry_after=True)
            now = _now()

        api.budget.request(now)
        upstream = self.upstream
        if upstream is None:
            return await error_answer(send, 503, "the router is not started", request_id=rid,
                                      retry_after=True)
        body = request.body
        headers = [*request.headers, ("x-request-id", rid.decode("latin-1"))]
        if body is not None:
            size = len(body) if isinstance(body, bytes) else content_length
            if size is not None:
                headers.append(("content-length", str(size)))
        exchange = Exchange(api, request, upstream, headers, now + routing.timeout, receive, send)
        slow = self.slow
        slow.add(exchange)
        try:
            return await self._attempts(exchange, now)
        finally:
            slow.discard(exchange)
            exchange.stop()

    async def _attempts(self, exchange: Exchange, now: float) -> int:
        """Attempt on one replica after another, as retry_decision allows; the status sent."""
        api = exchange.api
        route = api.route
        assert route is not None
        routing = api.routing
        pool = api.pool
        send = exchange.send
        body = exchange.body
        rid = exchange.request.request_id
        tried: list[EndpointState] = []
        retries = 0
        affinity = api.affinity
        key = affinity.key(exchange.request) if affinity is not None else None
        while True:
            if affinity is None or key is None:
                state = pick(pool, api.policy, tried, now)
            else:  # policy: prefix, and the request has a key (workbench/router/affinity.py)
                state = affinity.pick(pool, key, tried, now)
            if state is None:
                break
            tried.append(state)
            outcome = await exchange.attempt(state, now)
            now = _now()
            if outcome in PASSED_ON:
                return exchange.status
            if outcome is AttemptOutcome.TIMEOUT:
                return await error_answer(send, 504, f"no answer from API {api.name!r} within "
                                          f"{routing.timeout:g}s", request_id=rid)
            if outcome is AttemptOutcome.CLIENT_CANCELLED:
                return exchange.status or 499  # (its status when the client left mid-stream)
            if outcome is AttemptOutcome.BODY_TOO_LARGE:
                return await error_answer(send, 413, too_large_text(route.max_body_bytes), request_id=rid)
            if outcome is AttemptOutcome.CLIENT_GONE:
                return 499
            if outcome is AttemptOutcome.NOT_FORWARDABLE:
                return await error_answer(send, 400, exchange.problem, request_id=rid)
            decision = retry_decision(outcome, body, routing, retries, api.budget, now)
            if decision is not RetryDecision.RETRY:
                if decision is RetryDecision.BUDGET_SPENT:
                    api.stats.budget_exhausted_c.inc()
                break
            retries += 1
            api.stats.retried()

        held = exchange.held
        if held is not None:
            await send_buffered(send, 503, held.headers, held.body, rid, held.replica)
            return 503
        if exchange.problem:
            return await error_answer(send, 502, exchange.problem, request_id=rid)
        return await error_answer(send, 503, f"API {api.name!r} has no ready replica", request_id=rid,
                                  retry_after=True)

    async def _wake_and_wait(self, api: ApiState, now: float, wait: float) -> bool:
        """An API scaled to zero: ask the controller to start a replica (at most once a second),
        then wait up to `wait` s for one; False when none came."""
        if self._wake is not None and now - api.wake_at > 1.0:
            api.wake_at = now
            with contextlib.suppress(Exception):
                self._wake(api.name)
        return await api.pool.wait_for_endpoints(wait)
