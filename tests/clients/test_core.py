"""The client core: one Call description, sent by the sync and by the async sender, against a real
uvicorn server; answers, streams, uploads and every failure read into the error family."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.real_parts import free_port
from tests.support.served import Served
from workbench.clients.core import AsyncCore, Call, Stream, SyncCore, quoted
from workbench.wire.errors import (
    BadRequest,
    ConnectionFailed,
    NotFound,
    Timeout,
    Unavailable,
    WorkbenchError,
    error_body,
)

TOKEN = "t0ken"


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"path": request.url.path, "query": dict(request.query_params), "size": len(body),
                         "authorization": request.headers.get("authorization")})


async def missing(request: Request) -> Response:
    return Response(error_body("no such thing", known=["a"]), 404, media_type="application/json")


async def busy(request: Request) -> Response:
    return Response(error_body("queue full"), 503, {"retry-after": "4"}, media_type="application/json")


async def lines(request: Request) -> Response:
    async def produce() -> AsyncIterator[bytes]:
        for n in range(3):
            yield json.dumps({"n": n}).encode() + b"\n\n"  # blank lines between are keep-alives
    return StreamingResponse(produce(), media_type="application/x-ndjson")


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return JSONResponse({})


APP = Starlette(routes=[Route("/echo/{rest:path}", echo, methods=["GET", "POST"]), Route("/missing", missing),
                        Route("/busy", busy), Route("/lines", lines), Route("/slow", slow)])


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with Served(APP) as server:
        yield server.url


def _json(response: httpx.Response) -> Any:
    return response.json()


CALLS = {
    "echo": Call("GET", "/echo/a%2Fb", params={"q": "1"}, parse=_json),
    "missing": Call("GET", "/missing"),
    "accepted-404": Call("GET", "/missing", accept=frozenset({404}), parse=lambda r: r.status_code),
    "busy": Call("GET", "/busy"),
}


def run_sync(url: str, call: Call[Any], **options: Any) -> Any:
    with SyncCore(url, token=TOKEN, **options) as core:
        return core.run(call)


def run_async(url: str, call: Call[Any], **options: Any) -> Any:
    async def go() -> Any:
        async with AsyncCore(url, token=TOKEN, **options) as core:
            return await core.run(call)
    return asyncio.run(go())


SENDERS = [run_sync, run_async]


@pytest.mark.parametrize("send", SENDERS)
def test_an_answer_is_parsed_the_same_by_both_senders(url: str, send: Any) -> None:
    answer = send(url, CALLS["echo"])
    assert answer == {"path": "/echo/a/b", "query": {"q": "1"}, "size": 0, "authorization": f"Bearer {TOKEN}"}
    assert send(url, CALLS["accepted-404"]) == 404


@pytest.mark.parametrize("send", SENDERS)
def test_error_answers_become_their_kind(url: str, send: Any) -> None:
    with pytest.raises(NotFound) as missing:
        send(url, CALLS["missing"])
    assert missing.value.message == "no such thing" and missing.value.body["known"] == ["a"]
    assert missing.value.url == url and missing.value.response.status_code == 404
    with pytest.raises(Unavailable) as busy:
        send(url, CALLS["busy"])
    assert busy.value.retry_after == 4.0 and busy.value.status == 503


@pytest.mark.parametrize("send", SENDERS)
def test_nothing_listening_is_connection_failed(send: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionFailed, match=f"cannot reach the server at {closed}"):
        send(closed, CALLS["echo"])


@pytest.mark.parametrize("send", SENDERS)
def test_no_answer_in_time_is_a_client_timeout(url: str, send: Any) -> None:
    with pytest.raises(Timeout) as caught:
        send(url, Call("GET", "/slow", timeout=0.3))
    assert caught.value.source == "client"


def test_streams_and_uploads_are_the_same_on_both_senders(url: str, tmp_path: Path) -> None:
    stream = Stream("GET", "/lines", parse_line=json.loads)
    upload = tmp_path / "blob"
    upload.write_bytes(b"x" * (3 * 2**20 + 5))  # several chunks
    sent = Call("POST", "/echo/up", upload=upload, parse=_json)
    with SyncCore(url) as core:
        assert list(core.lines(stream)) == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert core.run(sent)["size"] == 3 * 2**20 + 5
        with pytest.raises(NotFound):
            list(core.lines(Stream("GET", "/missing")))
        raw = list(core.lines(Stream("GET", "/lines", skip_blank=False)))
        assert raw.count("") == 3

    async def both() -> tuple[list[Any], int]:
        async with AsyncCore(url) as core:
            got = [item async for item in core.lines(stream)]
            with pytest.raises(NotFound):
                [item async for item in core.lines(Stream("GET", "/missing"))]
            return got, (await core.run(sent))["size"]

    assert asyncio.run(both()) == ([{"n": 0}, {"n": 1}, {"n": 2}], 3 * 2**20 + 5)


def test_a_broken_stream_names_what_broke() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with SyncCore(closed) as core, pytest.raises(ConnectionFailed, match="the log stream from"):
        list(core.lines(Stream("GET", "/x", what="log")))


def test_names_are_one_path_segment_and_the_token_is_never_shown(url: str) -> None:
    assert quoted("a/b?c") == "a%2Fb%3Fc"
    core = SyncCore(url, token=TOKEN)
    assert TOKEN not in repr(core)
    core.close()
    with pytest.raises(WorkbenchError) as caught:
        run_sync(url, CALLS["missing"])
    assert TOKEN not in str(caught.value)


def test_bad_input_to_a_call_is_refused_before_sending(url: str) -> None:
    with SyncCore(url) as core, pytest.raises(TypeError):
        core.run(Call("POST", "/echo/x", json={1, 2}))  # a set is not JSON
    with pytest.raises(BadRequest) as caught:  # the server's own refusal: 405
        run_sync(url, Call("DELETE", "/busy"))
    assert caught.value.status == 405
