"""Shadow copies (workbench/router/shadow.py) against real loopback servers: what a copy carries,
and every outcome it is counted by."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.router import scripted
from tests.router.scripted import body_receive, refused_url
from workbench.router.api import ApiState
from workbench.router.metrics import ApiStats, RouterMetrics
from workbench.router.proxy import StreamedBody, Upstream
from workbench.router.request import IncomingRequest
from workbench.router.shadow import ShadowCopies
from workbench.router.types import ApiRoute, Endpoint
from workbench.spec.models import RoutingSpec

OUTCOMES = ("ok", "5xx", "error", "no_api", "no_replica", "skipped", "dropped")


class Shadows:
    def __init__(self, concurrency: int) -> None:
        self.registry = CollectorRegistry()
        self.metrics = RouterMetrics(self.registry)
        self.apis: dict[str, ApiState] = {}
        self.copies = ShadowCopies(self.metrics.shadow, self.apis, concurrency)

    def api(self, name: str, *urls: str, timeout: float = 30.0) -> ApiState:
        api = self.apis[name] = ApiState(name, ApiStats(self.metrics, name))
        api.configure(ApiRoute(name=name, routing=RoutingSpec(timeout=timeout)))
        api.pool.set([Endpoint(replica_id=f"{name}{i}", url=url) for i, url in enumerate(urls)])
        return api

    def counts(self, name: str = "s") -> dict[str, float]:
        out = {}
        for outcome in OUTCOMES:
            value = self.registry.get_sample_value("workbench_router_shadow_requests_total",
                                                   {"api": name, "outcome": outcome})
            if value:
                out[outcome] = value
        return out

    async def settled(self, total: int, name: str = "s") -> dict[str, float]:
        async with asyncio.timeout(10):
            while sum(self.counts(name).values()) < total:
                await asyncio.sleep(0.01)
        return self.counts(name)


@pytest.fixture
async def shadows() -> AsyncIterator[Any]:
    made: list[Shadows] = []
    upstream = Upstream()

    def make(concurrency: int = 32) -> Shadows:
        made.append(Shadows(concurrency))
        made[-1].copies.upstream = upstream
        return made[-1]

    try:
        yield make
    finally:
        for s in made:
            await s.copies.close()
        await upstream.close()


def request(body: bytes | StreamedBody | None = b'{"k": 1}') -> IncomingRequest:
    return IncomingRequest("POST", "/v1/x?q=1", [("content-type", "application/json")], b"rid-9",
                           None, body is not None, body)


async def test_copy_carries_the_request(shadows):
    s = shadows()
    async with scripted.scripted(scripted.ANSWER) as replica:
        api = s.api("s", replica.url)
        s.copies.copy("s", request())
        assert await s.settled(1) == {"ok": 1.0}
        [seen] = replica.seen
        assert seen.request_line == "POST /v1/x?q=1 HTTP/1.1"
        assert seen.body == b'{"k": 1}'
        assert seen.headers["x-request-id"] == "rid-9" and seen.headers["content-length"] == "8"
        assert seen.headers["content-type"] == "application/json"
        assert api.pool.endpoints[0].in_flight == 0


async def test_outcomes_are_counted(shadows):
    s = shadows()
    async with scripted.scripted(scripted.ERROR) as failing:
        s.api("s", failing.url)
        s.api("gone", refused_url())
        s.api("empty")
        s.copies.copy("s", request())
        s.copies.copy("gone", request(None))
        s.copies.copy("empty", request())
        s.copies.copy("unknown", request())
        assert await s.settled(1) == {"5xx": 1.0}
        assert await s.settled(1, "gone") == {"error": 1.0}
        assert await s.settled(1, "empty") == {"no_replica": 1.0}
        assert await s.settled(1, "unknown") == {"no_api": 1.0}


async def test_streamed_body_is_not_copied(shadows):
    s = shadows()
    async with scripted.scripted(scripted.ANSWER) as replica:
        s.api("s", replica.url)
        s.copies.copy("s", request(StreamedBody([b"x"], 1, body_receive(), 10)))
        assert s.counts() == {"skipped": 1.0}
        await asyncio.sleep(0.05)
        assert replica.seen == []


async def test_copies_past_the_concurrency_are_dropped_and_close_cancels_the_rest(shadows):
    s = shadows(concurrency=2)
    async with scripted.scripted(scripted.HANG) as hanging:
        s.api("s", hanging.url)
        for _ in range(5):
            s.copies.copy("s", request())
        assert s.counts() == {"dropped": 3.0}
        async with asyncio.timeout(10):
            while len(hanging.seen) < 2:
                await asyncio.sleep(0.01)
        await s.copies.close()
        assert s.counts() == {"dropped": 3.0, "error": 2.0}
        s.copies.copy("s", request())  # the slots came back
        assert s.counts() == {"dropped": 3.0, "error": 2.0}


async def test_not_started_counts_no_api(shadows):
    s = shadows()
    async with scripted.scripted(scripted.ANSWER) as replica:
        s.api("s", replica.url)
        s.copies.upstream = None
        s.copies.copy("s", request())
        assert await s.settled(1) == {"no_api": 1.0}
