"""Forwarding with retries (workbench/router/forward.py): the outcome of each attempt, the retry
decision, and the state machine end to end against real loopback servers that answer, refuse,
reset, hang or say "queue full" on cue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from tests.router import scripted
from tests.router.scripted import ScriptedReplica, Sent, body_receive, refused_url
from workbench.router.api import ApiState
from workbench.router.forward import (
    NOTHING_DONE,
    RETRYABLE,
    AttemptOutcome,
    Forwarder,
    RetryDecision,
    failure_outcome,
    is_queue_full,
    retry_decision,
)
from workbench.router.metrics import ApiStats, RouterMetrics
from workbench.router.proxy import REPLAY_LIMIT, StreamedBody, Upstream, too_large_text
from workbench.router.request import IncomingRequest
from workbench.router.retry import RetryBudget
from workbench.router.shadow import ShadowCopies
from workbench.router.types import ApiRoute, Endpoint
from workbench.spec.models import RoutingSpec

# -- the outcome of an attempt ---------------------------------------------------------------


async def test_client_errors_name_their_outcome():
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError) as refused:
            await session.get(refused_url())
    assert failure_outcome(refused.value) is AttemptOutcome.CONNECT_FAILED
    assert failure_outcome(aiohttp.ConnectionTimeoutError()) is AttemptOutcome.CONNECT_FAILED
    assert failure_outcome(aiohttp.ServerDisconnectedError()) is AttemptOutcome.RESET
    assert failure_outcome(aiohttp.ClientPayloadError()) is AttemptOutcome.RESET
    assert failure_outcome(aiohttp.ClientError()) is AttemptOutcome.RESET
    assert failure_outcome(ConnectionResetError()) is AttemptOutcome.RESET


def test_failure_values_are_the_metric_labels_of_old():
    assert AttemptOutcome.CONNECT_FAILED.value == "connect"
    assert AttemptOutcome.RESET.value == "reset"
    assert AttemptOutcome.TIMEOUT.value == "timeout"
    assert AttemptOutcome.QUEUE_FULL.value == "queue_full"


def test_queue_full_is_the_runtime_saying_it_did_nothing():
    assert is_queue_full(b'{"error":"queue full"}')
    assert is_queue_full(b'{"error":"predictor not ready"}')
    assert not is_queue_full(b'{"error":"out of memory"}')


# -- the retry decision ----------------------------------------------------------------------

NOW = 1000.0


def budget(ratio: float = 1.0, minimum: float = 10.0) -> RetryBudget:
    return RetryBudget(ratio, minimum)


def streamed(started: bool) -> StreamedBody:
    body = StreamedBody([b"x"], 1, body_receive(), 10)
    body.started = started
    return body


def decide(outcome: AttemptOutcome, body: bytes | StreamedBody | None = b"{}", *, idempotent: bool = True,
           retries: int = 0, max_retries: int = 2, spend: RetryBudget | None = None) -> RetryDecision:
    routing = RoutingSpec(idempotent=idempotent, max_retries=max_retries)
    return retry_decision(outcome, body, routing, retries, spend or budget(), NOW)


def test_nothing_done_is_retried_even_when_not_idempotent():
    for outcome in NOTHING_DONE:
        assert decide(outcome, idempotent=False) is RetryDecision.RETRY
        assert decide(outcome, None, idempotent=False) is RetryDecision.RETRY
        assert decide(outcome, streamed(started=False), idempotent=False) is RetryDecision.RETRY
        assert decide(outcome, streamed(started=True)) is RetryDecision.STOP  # part of it is gone


def test_reset_is_retried_only_when_idempotent_and_replayable():
    assert decide(AttemptOutcome.RESET) is RetryDecision.RETRY
    assert decide(AttemptOutcome.RESET, idempotent=False) is RetryDecision.STOP
    assert decide(AttemptOutcome.RESET, streamed(started=False)) is RetryDecision.STOP


def test_final_outcomes_are_never_retried():
    for outcome in set(AttemptOutcome) - RETRYABLE:
        assert decide(outcome) is RetryDecision.STOP


def test_retries_stop_at_max_retries():
    assert decide(AttemptOutcome.CONNECT_FAILED, retries=1, max_retries=2) is RetryDecision.RETRY
    assert decide(AttemptOutcome.CONNECT_FAILED, retries=2, max_retries=2) is RetryDecision.STOP
    assert decide(AttemptOutcome.CONNECT_FAILED, max_retries=0) is RetryDecision.STOP


def test_a_retry_spends_the_budget():
    spend = budget(0.0, 0.1)  # one retry in the 10 s window
    assert decide(AttemptOutcome.CONNECT_FAILED, spend=spend) is RetryDecision.RETRY
    assert decide(AttemptOutcome.CONNECT_FAILED, spend=spend) is RetryDecision.BUDGET_SPENT
    spend = budget(0.0, 0.1)
    assert decide(AttemptOutcome.RESET, idempotent=False, spend=spend) is RetryDecision.STOP
    assert decide(AttemptOutcome.CONNECT_FAILED, spend=spend) is RetryDecision.RETRY  # STOP spent nothing


# -- the state machine against real servers --------------------------------------------------


class Setup:
    """A Forwarder with a real upstream pool, and one API over the given replica URLs."""

    def __init__(self, urls: Sequence[str], routing: dict[str, Any], max_body_bytes: int) -> None:
        self.registry = CollectorRegistry()
        metrics = RouterMetrics(self.registry)
        self.api = ApiState("api", ApiStats(metrics, "api"))
        self.api.configure(ApiRoute(name="api", routing=RoutingSpec(**{"policy": "round_robin", **routing}),
                                    max_body_bytes=max_body_bytes))
        self.api.pool.set([Endpoint(replica_id=f"r{i}", url=url) for i, url in enumerate(urls)])
        self.forwarder = Forwarder(ShadowCopies(metrics.shadow, {}))

    async def forward(self, *chunks: bytes, disconnect: bool = False, chunked: bool = False,
                      length: int | None = None) -> tuple[int, Sent]:
        """POST `chunks` as the body, declared with its length (or `length`), or chunked."""
        declared = None if chunked else (sum(map(len, chunks)) if length is None else length)
        request = IncomingRequest("POST", "/", [("content-type", "application/json")], b"rid-1",
                                  declared, chunked or bool(declared))
        sent = Sent()
        status = await self.forwarder.forward(self.api, request, body_receive(*chunks, disconnect=disconnect),
                                              sent)
        return status, sent

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, {"api": "api", **(labels or {})}) or 0.0

    @property
    def upstream_errors(self) -> dict[str, float]:
        return {kind: self.sample("workbench_router_upstream_errors_total", {"kind": kind})
                for kind in ("connect", "reset", "timeout")}


@pytest.fixture
async def forwarding() -> AsyncIterator[Any]:
    """``await forwarding(behaviour or URL, ..., routing={...})``: scripted replicas in that order
    behind a started Forwarder (round robin: the first one is tried first)."""
    async with AsyncExitStack() as stack:
        upstream = Upstream()
        stack.push_async_callback(upstream.close)

        async def make(*replicas: str, routing: dict[str, Any] | None = None,
                       max_body_bytes: int = 10 * 1024 * 1024) -> tuple[Setup, list[ScriptedReplica]]:
            started: list[ScriptedReplica] = []
            urls = []
            for item in replicas:
                if item.startswith("http://"):
                    urls.append(item)
                else:
                    replica = await stack.enter_async_context(scripted.scripted(item))
                    started.append(replica)
                    urls.append(replica.url)
            setup = Setup(urls, routing or {}, max_body_bytes)
            setup.forwarder.upstream = upstream
            return setup, started

        yield make


async def test_answer_is_relayed_with_request_id_and_replica(forwarding):
    setup, [replica] = await forwarding(scripted.ANSWER)
    status, sent = await setup.forward(b'{"x": 1}')
    assert status == 200 and sent.status == 200 and sent.json() == {"n": 1}
    assert sent.headers[b"x-request-id"] == b"rid-1" and sent.headers[b"x-workbench-replica"] == b"r0"
    assert sent.headers[b"x-from"] == b"scripted"
    [seen] = replica.seen
    assert seen.body == b'{"x": 1}'
    assert seen.headers["x-request-id"] == "rid-1" and seen.headers["content-length"] == "8"
    assert setup.api.pool.endpoints[0].in_flight == 0


async def test_queue_full_is_retried_on_another_replica(forwarding):
    setup, [full, fine] = await forwarding(scripted.QUEUE_FULL, scripted.ANSWER,
                                           routing={"idempotent": False})
    status, sent = await setup.forward(b"{}")
    assert status == 200 and sent.headers[b"x-workbench-replica"] == b"r1"
    assert len(full.seen) == 1 and len(fine.seen) == 1
    assert setup.api.stats.retries == 1


async def test_queue_full_everywhere_passes_the_replicas_answer_on(forwarding):
    setup, replicas = await forwarding(scripted.QUEUE_FULL, scripted.QUEUE_FULL)
    status, sent = await setup.forward(b"{}")
    assert status == 503 and sent.json() == {"error": "queue full"}
    assert sent.headers[b"x-workbench-replica"] == b"r1"  # the last answer held
    assert sent.headers[b"content-length"] == str(len(sent.body)).encode()
    assert [len(r.seen) for r in replicas] == [1, 1]
    assert all(s.consecutive_failures == 0 for s in setup.api.pool.endpoints)  # not a failure


async def test_refused_connection_is_retried(forwarding):
    setup, [fine] = await forwarding(refused_url(), scripted.ANSWER, routing={"idempotent": False})
    status, _ = await setup.forward(b"{}")
    assert status == 200 and len(fine.seen) == 1
    assert setup.upstream_errors == {"connect": 1.0, "reset": 0.0, "timeout": 0.0}
    assert setup.api.pool.endpoints[0].consecutive_failures == 1


async def test_reset_after_sending_is_not_retried_when_not_idempotent(forwarding):
    setup, [reset, fine] = await forwarding(scripted.RESET, scripted.ANSWER, routing={"idempotent": False})
    status, sent = await setup.forward(b"{}")
    assert status == 502 and sent.json()["error"].startswith("reset error from replica r0: ")
    assert sent.headers[b"x-request-id"] == b"rid-1"
    assert len(reset.seen) == 1 and fine.seen == []
    assert setup.upstream_errors["reset"] == 1.0 and setup.api.stats.retries == 0


async def test_reset_is_retried_when_idempotent(forwarding):
    setup, [_, fine] = await forwarding(scripted.RESET, scripted.ANSWER)
    status, _ = await setup.forward(b"{}")
    assert status == 200 and len(fine.seen) == 1 and setup.api.stats.retries == 1


async def test_every_replica_failing_is_502_naming_the_last(forwarding):
    setup, _ = await forwarding(refused_url(), refused_url(), refused_url(), routing={"max_retries": 5})
    status, sent = await setup.forward(b"{}")
    assert status == 502 and sent.json()["error"].startswith("connect error from replica r1: ")  # r0, r2, r1
    assert [s.consecutive_failures for s in setup.api.pool.endpoints] == [1, 1, 1]


async def test_spent_budget_stops_retries_and_is_counted(forwarding):
    setup, [fine] = await forwarding(refused_url(), scripted.ANSWER,
                                     routing={"retry_budget": 0.0, "retry_budget_min": 0.0})
    status, _ = await setup.forward(b"{}")
    assert status == 502 and fine.seen == []
    assert setup.sample("workbench_router_retry_budget_exhausted_total") == 1.0


async def test_other_503_is_passed_on_and_not_retried(forwarding):
    setup, [_, fine] = await forwarding(scripted.UNAVAILABLE, scripted.ANSWER)
    status, sent = await setup.forward(b"{}")
    assert status == 503 and sent.json() == {"error": "broken"} and fine.seen == []
    assert setup.api.pool.endpoints[0].consecutive_failures == 1


async def test_5xx_answer_is_relayed_and_counts_as_a_failure(forwarding):
    setup, [_, fine] = await forwarding(scripted.ERROR, scripted.ANSWER)
    status, sent = await setup.forward(b"{}")
    assert status == 500 and sent.json() == {"error": "flaky"} and fine.seen == []
    assert setup.api.pool.endpoints[0].consecutive_failures == 1


async def test_no_answer_in_time_is_504(forwarding):
    setup, [_, fine] = await forwarding(scripted.HANG, scripted.ANSWER, routing={"timeout": 0.2})
    status, sent = await setup.forward(b"{}")
    assert status == 504 and sent.json() == {"error": "no answer from API 'api' within 0.2s"}
    assert fine.seen == [] and setup.upstream_errors["timeout"] == 1.0


async def test_no_eligible_replica_is_503(forwarding):
    setup, _ = await forwarding()
    status, sent = await setup.forward(b"{}")
    assert status == 503 and sent.headers[b"retry-after"] == b"1"
    assert sent.json() == {"error": "API 'api' has no ready replica"}


async def test_declared_body_over_the_limit_is_413_before_reading(forwarding):
    setup, [replica] = await forwarding(scripted.ANSWER, max_body_bytes=10)
    status, sent = await setup.forward(b"x" * 11)
    assert status == 413 and sent.json() == {"error": too_large_text(10)} and replica.seen == []


async def test_body_over_the_limit_is_413_while_reading(forwarding):
    setup, [replica] = await forwarding(scripted.ANSWER, max_body_bytes=1000)
    status, sent = await setup.forward(b"x" * 600, b"x" * 600, chunked=True)
    assert status == 413 and sent.json() == {"error": too_large_text(1000)} and replica.seen == []


async def test_streamed_body_over_the_limit_is_413(forwarding):
    limit = 2 * REPLAY_LIMIT
    setup, _ = await forwarding(scripted.HANG, scripted.HANG, max_body_bytes=limit)
    chunk = b"z" * (REPLAY_LIMIT * 3 // 4)  # the second chunk goes past the replay limit: streamed
    status, sent = await setup.forward(chunk, chunk, chunk, chunked=True)
    assert status == 413 and sent.json() == {"error": too_large_text(limit)}
    assert setup.upstream_errors == {"connect": 0.0, "reset": 0.0, "timeout": 0.0}  # not the replica's fault


async def test_client_hanging_up_mid_body_gets_nothing(forwarding):
    setup, [replica, _] = await forwarding(scripted.HANG, scripted.HANG)
    status, sent = await setup.forward(b"{", disconnect=True, chunked=True)
    assert status == 499 and sent.messages == [] and replica.seen == []
    chunk = b"z" * (REPLAY_LIMIT * 3 // 4)  # streamed to the replica, then the client leaves
    status, sent = await setup.forward(chunk, chunk, chunk, disconnect=True, chunked=True)
    assert status == 499 and sent.messages == []
    assert setup.api.stats.retries == 0 and all(s.in_flight == 0 for s in setup.api.pool.endpoints)


async def test_large_body_streams_through_once(forwarding):
    setup, [replica] = await forwarding(scripted.ANSWER)
    chunk = b"y" * (REPLAY_LIMIT // 2 + 1)
    status, _ = await setup.forward(chunk, chunk, chunk)
    assert status == 200 and replica.seen[0].body == chunk * 3


async def test_a_request_the_client_library_refuses_is_400(forwarding):
    setup, [replica] = await forwarding(scripted.ANSWER)
    request = IncomingRequest("POST", "/", [("x-bad", "line\r\nbreak")], b"rid-1", None, False)
    sent = Sent()
    status = await setup.forwarder.forward(setup.api, request, body_receive(), sent)
    assert status == 400 and sent.json()["error"].startswith("cannot forward this request: ")
    assert replica.seen == []


async def test_not_started_is_503(forwarding):
    setup, _ = await forwarding(scripted.ANSWER)
    setup.forwarder.upstream = None
    status, sent = await setup.forward(b"{}")
    assert status == 503 and sent.json() == {"error": "the router is not started"}
