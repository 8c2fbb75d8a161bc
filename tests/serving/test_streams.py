"""workbench.serving.streams: predict returning generators, in process (what goes on the wire) and
in a real replica subprocess (what a client sees when a stream fails, the slot held to the end)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.serving.streams import render

from .conftest import wait_until

AppClient = Callable[..., Any]

GENERATORS = """
import asyncio, time
from starlette.responses import StreamingResponse

class Predictor:
    def __init__(self, config):
        self.log = config.get("log")

    def predict(self, payload):
        kind = payload["kind"]
        if kind == "mixed":
            return iter_mixed()
        if kind == "empty":
            return (x for x in ())
        if kind == "fails_first":
            return fails(0)
        if kind == "fails_later":
            return fails(2)
        if kind == "starlette":
            return StreamingResponse(slow_bytes(payload.get("gap", 0)), media_type="text/plain")
        if kind == "quick":
            return {"ok": True}
        raise ValueError(kind)

def iter_mixed():
    yield {"a": 1}
    yield [1, 2]
    yield "two\\nlines"
    yield b"event: custom\\ndata: raw\\n\\n"

async def fails(after):
    for n in range(after):
        yield {"n": n}
    raise RuntimeError("the model fell over")

async def slow_bytes(gap):
    for n in range(3):
        await asyncio.sleep(gap)
        yield b"%d;" % n
"""

GENERATOR_FUNCTION = """
class Predictor:
    async def predict(self, payload):
        for n in range(payload["n"]):
            yield {"n": n}
"""


def test_items_render_as_predict_values_do() -> None:
    assert render({"a": 1}, False) == b'{"a":1}\n'
    assert render([1, "é"], False) == '[1,"é"]\n'.encode()
    assert render("tok", False) == b"tok"
    assert render(b"\x00raw", False) == b"\x00raw"
    assert render({"a": 1}, True) == b'data: {"a":1}\n\n'
    assert render("one\r\ntwo\nthree", True) == b"data: one\ndata: two\ndata: three\n\n"
    assert render(b"event: x\ndata: y\n\n", True) == b"event: x\ndata: y\n\n"
    with pytest.raises(TypeError, match="predict yielded a object, which is not JSON serializable"):
        render(object(), False)


async def test_plain_and_sse_streams(app_client: AppClient) -> None:
    client = await app_client(GENERATORS)
    plain = await client.post("/", json={"kind": "mixed"})
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/x-ndjson"
    assert plain.content == b'{"a":1}\n[1,2]\ntwo\nlinesevent: custom\ndata: raw\n\n'
    sse = await client.post("/", json={"kind": "mixed"}, headers={"accept": "text/event-stream"})
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.headers["cache-control"] == "no-cache"
    assert sse.content == (b'data: {"a":1}\n\ndata: [1,2]\n\ndata: two\ndata: lines\n\n'
                           b"event: custom\ndata: raw\n\n")


async def test_an_async_generator_function_streams(app_client: AppClient) -> None:
    client = await app_client(GENERATOR_FUNCTION)
    response = await client.post("/", json={"n": 3})
    assert response.content == b'{"n":0}\n{"n":1}\n{"n":2}\n'


async def test_empty_stream_and_failure_before_the_first_item(app_client: AppClient) -> None:
    client = await app_client(GENERATORS)
    empty = await client.post("/", json={"kind": "empty"})
    assert empty.status_code == 200 and empty.content == b""
    failed = await client.post("/", json={"kind": "fails_first"})
    assert failed.status_code == 500  # an error answer, not a broken stream
    assert failed.json() == {"error": "RuntimeError: the model fell over"}
    assert (await client.post("/", json={"kind": "quick"})).json() == {"ok": True}


async def test_a_failure_mid_stream_ends_sse_with_an_error_event(app_client: AppClient) -> None:
    client = await app_client(GENERATORS)
    sse = await client.post("/", json={"kind": "fails_later"}, headers={"accept": "text/event-stream"})
    events = sse.content.decode().split("\n\n")
    assert events[:2] == ['data: {"n":0}', 'data: {"n":1}']
    kind, data = events[2].split("\n")
    assert kind == "event: error"
    assert json.loads(data[len("data: "):]) == {"error": "RuntimeError: the model fell over"}


def test_a_failure_mid_stream_breaks_a_plain_stream_off(replica: Callable[..., Any]) -> None:
    rep = replica(GENERATORS)
    with httpx.stream("POST", rep.url + "/", json={"kind": "fails_later"}, timeout=30) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()  # no chunked terminator: the client knows the answer is cut
    assert httpx.post(rep.url + "/", json={"kind": "quick"}).json() == {"ok": True}
    assert "the model fell over" in rep.stderr()


def test_streams_hold_the_slot_until_they_end(replica: Callable[..., Any]) -> None:
    """max_concurrency 1, no queue: while a StreamingResponse of predict's own streams, another
    request is answered "queue full"; once it ended, it is served."""
    rep = replica(GENERATORS, serving={"max_concurrency": 1, "max_queue": 0})
    with httpx.stream("POST", rep.url + "/", json={"kind": "starlette", "gap": 0.5}, timeout=30) as stream:
        assert stream.status_code == 200
        busy = httpx.post(rep.url + "/", json={"kind": "quick"}, timeout=10)
        assert busy.status_code == 503 and "queue full" in busy.json()["error"]
        assert stream.read() == b"0;1;2;"
    wait_until(lambda: httpx.post(rep.url + "/", json={"kind": "quick"}, timeout=10).status_code == 200,
               10, "the slot back")


def test_a_generator_with_batching_is_a_clear_error(replica: Callable[..., Any], tmp_path: Path) -> None:
    code = """
    class Predictor:
        def predict(self, payloads):
            return [(x for x in range(2)) for _ in payloads]
    """
    rep = replica(code, serving={"max_batch_size": 4, "batch_timeout": 0.01})
    response = httpx.post(rep.url + "/", json={}, timeout=30)
    assert response.status_code == 500
    assert "streams only without dynamic batching (serving.max_batch_size: 1)" in response.json()["error"]


def test_the_first_item_is_bounded_by_request_timeout(replica: Callable[..., Any]) -> None:
    code = """
    import asyncio
    class Predictor:
        async def predict(self, payload):
            await asyncio.sleep(30)
            yield "late"
    """
    rep = replica(code, serving={"request_timeout": 0.5})
    started = time.monotonic()
    response = httpx.post(rep.url + "/", json={}, timeout=30)
    assert response.status_code == 504 and time.monotonic() - started < 10
