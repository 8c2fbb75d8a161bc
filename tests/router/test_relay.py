"""Relaying answers (proxy.relay_body, the exchange's watch) against a real loopback server that
streams on cue: each chunk reaches the client before the next one is even written; a small answer
is one message; a client that leaves closes the upstream connection at once and is counted; a
stream that stalls past routing.stream_idle_timeout is ended (SSE with an error event)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.router import scripted
from tests.router.streamer import END, Client, streamer
from workbench.router.api import ApiState
from workbench.router.forward import Forwarder
from workbench.router.metrics import ApiStats, RouterMetrics
from workbench.router.proxy import Upstream
from workbench.router.request import IncomingRequest
from workbench.router.shadow import ShadowCopies
from workbench.router.types import ApiRoute, Endpoint
from workbench.spec.models import RoutingSpec


class Relay:
    """A started Forwarder over one API whose only replica is at `url`."""

    def __init__(self, url: str, upstream: Upstream, routing: dict[str, Any]) -> None:
        self.registry = CollectorRegistry()
        metrics = RouterMetrics(self.registry)
        self.api = ApiState("api", ApiStats(metrics, "api"))
        self.api.configure(ApiRoute(name="api", routing=RoutingSpec(**routing)))
        self.api.pool.set([Endpoint(replica_id="r0", url=url)])
        self.forwarder = Forwarder(ShadowCopies(metrics.shadow, {}))
        self.forwarder.upstream = upstream

    def start(self, client: Client) -> asyncio.Task[int]:
        request = IncomingRequest("GET", "/stream", [], b"rid-1", None, False)
        return asyncio.ensure_future(self.forwarder.forward(self.api, request, client.receive, client.send))

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, {"api": "api", **labels}) or 0.0


@pytest.fixture
async def relay() -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        upstream = Upstream()
        stack.push_async_callback(upstream.close)

        async def make(url: str, **routing: Any) -> Relay:
            made = Relay(url, upstream, routing)
            stack.push_async_callback(made.forwarder.slow.close)
            return made

        yield make


async def body(client: Client) -> tuple[bytes, bool]:
    message = await client.next()
    assert message["type"] == "http.response.body", message
    return message["body"], message.get("more_body", False)


async def test_each_chunk_is_relayed_before_the_next_one_is_written(relay):
    async with streamer() as server:
        setup = await relay(server.url)
        client = Client()
        task = setup.start(client)
        start = await client.next()
        assert start["type"] == "http.response.start" and start["status"] == 200
        for n in range(3):
            server.push(b"data: %d\n\n" % n)
            # one chunk behind would hold this until the next push: it must come now
            assert await body(client) == (b"data: %d\n\n" % n, True)
        server.push(END)
        assert await body(client) == (b"", False)
        assert await task == 200
        assert setup.sample("workbench_router_client_cancelled_total") == 0


async def test_an_answer_that_comes_whole_is_one_message(relay):
    async with scripted.scripted(scripted.ANSWER) as replica:
        setup = await relay(replica.url)
        client = Client()
        assert await setup.start(client) == 200
        bodies = [m for m in client.messages if m["type"] == "http.response.body"]
        assert len(bodies) == 1 and not bodies[0]["more_body"]
        assert json.loads(bodies[0]["body"]) == {"n": 1}


async def test_a_client_leaving_mid_stream_closes_the_upstream_connection(relay):
    async with streamer() as server:
        setup = await relay(server.url)
        client = Client()
        task = setup.start(client)
        await client.next()  # headers
        server.push(b"data: first\n\n")
        await body(client)
        client.leave()
        async with asyncio.timeout(5):
            await server.closed.wait()  # at once: the stream is watched from its first chunk
        assert await task == 200  # (the status the client was sent)
        assert setup.sample("workbench_router_client_cancelled_total") == 1
        assert setup.api.pool.endpoints[0].in_flight == 0


async def test_a_client_leaving_a_slow_answer_closes_the_upstream_connection(relay):
    async with streamer(hold_headers=True) as server:
        setup = await relay(server.url)
        client = Client()
        task = setup.start(client)
        async with asyncio.timeout(5):
            while not server.requests:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # past the sweep that starts the watch of a slow answer
        client.leave()
        async with asyncio.timeout(5):
            await server.closed.wait()
        assert await task == 499
        assert client.messages == []  # nobody to answer
        assert setup.sample("workbench_router_client_cancelled_total") == 1


async def test_a_stalled_sse_stream_ends_with_an_error_event(relay):
    async with streamer() as server:
        setup = await relay(server.url, stream_idle_timeout=0.3, timeout=30)
        client = Client()
        task = setup.start(client)
        await client.next()
        server.push(b"data: 1\n\n")
        assert await body(client) == (b"data: 1\n\n", True)
        data, more = await body(client)  # nothing pushed: the idle limit ends it
        assert not more
        event, _, rest = data.partition(b"\n")
        assert event == b"event: error" and rest.startswith(b"data: ") and data.endswith(b"\n\n")
        error = json.loads(rest[len(b"data: "):].strip())["error"]
        assert "stream_idle_timeout" in error and "0.3s" in error
        assert await task == 200
        async with asyncio.timeout(5):
            await server.closed.wait()  # the replica sees the connection close
        assert setup.sample("workbench_router_upstream_errors_total", kind="stream_idle") == 1


async def test_a_stalled_plain_stream_is_broken_off_not_passed_as_whole(relay):
    async with streamer(content_type="application/x-ndjson") as server:
        setup = await relay(server.url, stream_idle_timeout=0.3)
        client = Client()
        task = setup.start(client)
        await client.next()
        server.push(b'{"n": 1}\n')
        assert await body(client) == (b'{"n": 1}\n', True)
        assert await asyncio.wait_for(task, 10) == 200
        assert client.messages[-1].get("more_body") is True  # no end: the server breaks the connection
        async with asyncio.timeout(5):
            await server.closed.wait()


async def test_gaps_shorter_than_the_idle_limit_do_not_end_the_stream(relay):
    async with streamer() as server:
        setup = await relay(server.url, stream_idle_timeout=0.4)
        client = Client()
        task = setup.start(client)
        await client.next()
        for n in range(4):  # 1.2 s in all, never 0.4 s without a chunk
            await asyncio.sleep(0.3)
            server.push(b"data: %d\n\n" % n)
            assert (await body(client))[0] == b"data: %d\n\n" % n
        server.push(END)
        assert await body(client) == (b"", False)
        assert await task == 200


def test_stream_idle_timeout_must_be_positive():
    for bad in (0, -1, 7200, "soon"):
        with pytest.raises(ValueError, match="stream_idle_timeout"):
            RoutingSpec(stream_idle_timeout=bad)
    assert RoutingSpec().stream_idle_timeout == 60.0


class SlowReader(Client):
    """A client that takes `stall` seconds to take each chunk (its send blocks)."""

    def __init__(self, stall: float) -> None:
        super().__init__()
        self.stall = stall

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            await asyncio.sleep(self.stall)
        await super().send(message)


async def test_a_client_slow_to_read_is_not_a_stalled_stream(relay):
    async with streamer() as server:
        setup = await relay(server.url, stream_idle_timeout=0.3)
        client = SlowReader(stall=0.8)  # each chunk takes longer to hand over than the idle limit
        task = setup.start(client)
        await client.next()
        for n in range(3):
            server.push(b"data: %d\n\n" % n)  # at once: the replica never keeps the router waiting
            assert (await body(client))[0] == b"data: %d\n\n" % n
        server.push(END)
        assert await body(client) == (b"", False)
        assert await task == 200
        assert setup.sample("workbench_router_upstream_errors_total", kind="stream_idle") == 0
