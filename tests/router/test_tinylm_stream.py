"""examples/tinylm, an OpenAI-style model server, behind the router (a real uvicorn server): its SSE
tokens come through chunk by chunk, and a client that leaves mid-stream (or while its request
waits for a slot) stops the generation on the server, as the router closes the connection.

Run as a process and as a container built from its Dockerfile (the `served` fixture of the tinylm
tests); both are plain endpoints here, until container APIs deploy it through a controller."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.examples.test_tinylm_server import TOKEN_DELAY, Served, served  # noqa: F401  (the fixture)
from tests.router.conftest import RouterServer
from tests.support.real_parts import wait_until
from workbench.router import Endpoint


@pytest.fixture
def routed(router_server: Any, served: Served) -> tuple[RouterServer, openai.OpenAI]:  # noqa: F811
    srv = router_server()
    srv.add_api("tinylm", [], routing={"stream_idle_timeout": 10})
    srv.call(srv.router.set_endpoints, "tinylm", [Endpoint(replica_id="tinylm-0", url=served.url)])
    client = openai.OpenAI(base_url=f"{srv.url}/tinylm/v1", api_key="unused", max_retries=0, timeout=30)
    return srv, client


def test_tokens_stream_through_the_router_chunk_by_chunk(routed: Any, served: Served) -> None:  # noqa: F811
    _, client = routed
    started = time.monotonic()
    stream = client.chat.completions.create(
        model=served.model, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=40,
        stream=True)
    arrivals = [(time.monotonic(), chunk) for chunk in stream]
    assert time.monotonic() - started < 20  # a hang bound: 40 tokens, 20 ms apart
    content = [c for _, c in arrivals if c.choices and c.choices[0].delta.content]
    assert len(content) == 40
    # most chunks came well before the last (held back, they would come one token late or at the end)
    last = arrivals[-1][0]
    assert sum(1 for at, _ in arrivals if at < last - 0.2) >= 20


def test_a_client_leaving_stops_the_generation(routed: Any, served: Served) -> None:  # noqa: F811
    srv, client = routed
    cancelled = served.metric("tinylm_requests_cancelled_total")
    stream = client.completions.create(model=served.model, prompt="Alice", max_tokens=2000, stream=True)
    read = 0
    for chunk in stream:
        read += len(chunk.choices[0].text)
        if read >= 5:
            break
    stream.close()
    wait_until(lambda: served.metric("tinylm_requests_cancelled_total") == cancelled + 1, timeout=5,
               interval=0.02, what="the server to see the router close the connection")
    at_disconnect = served.metric("tinylm_generated_tokens_total")
    time.sleep(10 * TOKEN_DELAY)
    assert served.metric("tinylm_generated_tokens_total") == at_disconnect  # generation stopped
    assert served.metric("tinylm_requests_running") == 0.0
    assert srv.router._metrics.client_cancelled.labels("tinylm")._value.get() == 1
