"""The Python client against a real HTTP server on a loopback port.

The server is a small Starlette app that answers as the router does (the router itself is
being written alongside); nothing is mocked below HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from workbench.client import (
    DEFAULT_URL,
    APINotFound,
    AsyncClient,
    Client,
    ConnectionFailed,
    PredictionError,
    Timeout,
    Unauthorized,
    Unavailable,
    WorkbenchError,
)

KNOWN = ["echo", "iris", "secret"]
SECRET = "s3cret"


async def route(request: Request) -> Response:
    api = request.path_params["api"]
    body = await request.body()
    if api == "echo":
        return JSONResponse({
            "content_type": request.headers.get("content-type"),
            "body": body.decode("utf-8", "replace"),
            "authorization": request.headers.get("authorization"),
            "query": dict(request.query_params),
            "x_custom": request.headers.get("x-custom"),
        })
    if api == "text":
        return PlainTextResponse("hello, " + body.decode())
    if api == "bytes":
        return Response(b"\x00\x01" + body, media_type="application/octet-stream")
    if api == "problem-json":
        return Response(b'{"ok": true}', media_type="application/problem+json")
    if api == "empty":
        return Response(status_code=204)
    if api == "secret":
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return JSONResponse({"error": "missing or invalid API key"}, status_code=401)
        return JSONResponse({"secret": 42})
    if api == "busy":
        return JSONResponse({"error": "all replicas are busy"}, status_code=503, headers={"Retry-After": "7"})
    if api == "starting":
        return JSONResponse({"error": "no ready replica"}, status_code=503)
    if api == "gateway":
        return JSONResponse({"error": "replica did not answer within 60 s"}, status_code=504)
    if api == "boom":
        return JSONResponse({"error": "ZeroDivisionError: division by zero"}, status_code=500,
                            headers={"X-Request-ID": "req-1"})
    if api == "invalid":
        return JSONResponse({"detail": "field 'x' is required"}, status_code=422)
    if api == "teapot":
        return PlainTextResponse("short and stout", status_code=418)
    if api == "slow":
        await asyncio.sleep(3)
        return JSONResponse({"late": True})
    if api == "predictor-404":
        return JSONResponse({"error": "item not found"}, status_code=404)
    if api == "lonely":
        return JSONResponse({"error": "no API named 'lonely'", "apis": []}, status_code=404)
    return JSONResponse({"error": f"no API named {api!r}", "apis": KNOWN}, status_code=404)


class _Server:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = Starlette(routes=[Route("/{api:path}", route, methods=["POST"])])
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def router_url() -> Iterator[str]:
    with _Server() as server:
        yield server.url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_URL", raising=False)
    monkeypatch.delenv("WORKBENCH_API_KEY", raising=False)


@pytest.fixture
def client(router_url: str) -> Iterator[Client]:
    with Client(router_url) as c:
        yield c


@pytest.fixture
async def aclient(router_url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(router_url) as c:
        yield c


@pytest.fixture
def closed_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


# -- payloads and answers (sync) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "content_type", "body"),
    [
        ({"payload": {"name": "Ada"}}, "application/json", {"name": "Ada"}),
        ({"payload": [1, 2, 3]}, "application/json", [1, 2, 3]),
        ({"payload": "plain words"}, "text/plain; charset=utf-8", "plain words"),
        ({"payload": b"\x01raw"}, "application/octet-stream", "\x01raw"),
        ({"json": "a JSON string"}, "application/json", "a JSON string"),
        ({"json": None}, "application/json", None),
        ({"data": "text via data"}, "text/plain; charset=utf-8", "text via data"),
        ({"data": b"bytes via data"}, "application/octet-stream", "bytes via data"),
        ({"payload": {"ü": "é"}}, "application/json", {"ü": "é"}),
    ],
)
def test_payload_kinds(client: Client, kwargs: dict[str, Any], content_type: str, body: Any) -> None:
    payload = kwargs.pop("payload", None)
    answer = client.predict("echo", payload, **kwargs)
    assert answer["content_type"] == content_type
    if content_type == "application/json":
        assert json.loads(answer["body"]) == body
    else:
        assert answer["body"] == body


def test_no_payload_sends_an_empty_body(client: Client) -> None:
    answer = client.predict("echo")
    assert answer["body"] == ""
    assert answer["content_type"] is None


def test_answers_are_decoded_by_content_type(client: Client) -> None:
    assert client.predict("text", "Ada") == "hello, Ada"
    assert client.predict("bytes", b"!") == b"\x00\x01!"
    assert client.predict("problem-json") == {"ok": True}
    assert client.predict("empty") is None


def test_headers_and_params_pass_through(client: Client) -> None:
    answer = client.predict(
        "echo", "x", headers={"X-Custom": "yes", "Content-Type": "text/csv"}, params={"top_k": 3}
    )
    assert answer["x_custom"] == "yes"
    assert answer["content_type"] == "text/csv"
    assert answer["query"] == {"top_k": "3"}


def test_predict_response_gives_the_whole_response(client: Client) -> None:
    response = client.predict_response("text", "Bo")
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.text == "hello, Bo"


def test_only_one_payload_form(client: Client) -> None:
    with pytest.raises(TypeError, match="only one of payload, json= and data="):
        client.predict("echo", {"a": 1}, data=b"x")
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        client.predict("echo", {"a": object()})
    with pytest.raises(ValueError, match="API name"):
        client.predict("")


# -- errors (sync) -------------------------------------------------------------------------


def test_unknown_api_lists_the_known_ones(client: Client, router_url: str) -> None:
    with pytest.raises(APINotFound) as caught:
        client.predict("irsi", {"x": 1})
    err = caught.value
    assert err.apis == KNOWN
    assert err.status == 404
    assert "no API named 'irsi'" in str(err)
    assert "known APIs: echo, iris, secret" in str(err)
    assert router_url in str(err)
    with pytest.raises(APINotFound, match="no APIs are deployed"):
        client.predict("lonely")


def test_a_404_from_the_predictor_is_a_prediction_error(client: Client) -> None:
    with pytest.raises(PredictionError) as caught:
        client.predict("predictor-404")
    assert caught.value.error == "item not found"
    assert not isinstance(caught.value, APINotFound)


@pytest.mark.parametrize(
    ("api", "status", "error"),
    [
        ("boom", 500, "ZeroDivisionError: division by zero"),
        ("invalid", 422, "field 'x' is required"),
        ("teapot", 418, "short and stout"),
    ],
)
def test_prediction_errors_carry_status_and_server_text(
    client: Client, api: str, status: int, error: str
) -> None:
    with pytest.raises(PredictionError) as caught:
        client.predict(api, {"x": 1})
    err = caught.value
    assert (err.status, err.error, err.api) == (status, error, api)
    assert str(status) in str(err) and error in str(err)
    assert err.response is not None and err.response.status_code == status
    assert err.request_id == ("req-1" if api == "boom" else None)


def test_unavailable_has_retry_after(client: Client) -> None:
    with pytest.raises(Unavailable) as caught:
        client.predict("busy")
    err = caught.value
    assert err.retry_after == 7
    assert "retry after 7 s" in str(err)
    assert "all replicas are busy" in str(err)
    with pytest.raises(Unavailable) as caught:
        client.predict("starting")
    assert caught.value.retry_after is None


def test_router_timeout(client: Client) -> None:
    with pytest.raises(Timeout) as caught:
        client.predict("gateway")
    assert caught.value.source == "router"
    assert "504" in str(caught.value) and "router" in str(caught.value)


def test_client_timeout(router_url: str) -> None:
    with Client(router_url, timeout=0.3) as c, pytest.raises(Timeout) as caught:
        c.predict("slow")
    assert caught.value.source == "client"
    assert "within 0.3 s" in str(caught.value)
    assert "client timeout" in str(caught.value)


def test_per_call_timeout_overrides(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"within 0\.2 s"):
        client.predict("slow", timeout=0.2)
    assert time.monotonic() - started < 2


def test_unauthorized_says_how_to_pass_a_key(client: Client) -> None:
    with pytest.raises(Unauthorized) as caught:
        client.predict("secret")
    assert "api_key" in str(caught.value) and "WORKBENCH_API_KEY" in str(caught.value)
    assert caught.value.status == 401


def test_wrong_key_is_reported_as_not_accepted(router_url: str) -> None:
    with Client(router_url, api_key="nope") as c, pytest.raises(Unauthorized, match="not accepted"):
        c.predict("secret")


def test_api_key_from_argument_and_environment(router_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(router_url, api_key=SECRET) as c:
        assert c.predict("secret") == {"secret": 42}
    monkeypatch.setenv("WORKBENCH_API_KEY", SECRET)
    with Client(router_url) as c:
        assert c.predict("echo")["authorization"] == f"Bearer {SECRET}"
        assert c.predict("secret") == {"secret": 42}


def test_connection_failed_names_the_url(closed_url: str) -> None:
    with Client(closed_url) as c, pytest.raises(ConnectionFailed) as caught:
        c.predict("echo", {"x": 1})
    assert f"is `workbench serve` running on {closed_url}?" in str(caught.value)
    assert isinstance(caught.value, WorkbenchError)


def test_url_from_environment(router_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_URL", router_url + "/")
    with Client() as c:
        assert c.url == router_url
        assert c.predict("text", "env") == "hello, env"
    monkeypatch.delenv("WORKBENCH_URL")
    assert Client().url == DEFAULT_URL
    with pytest.raises(ValueError, match="not a router URL"):
        Client("ftp://example.com")


def test_connections_are_reused(router_url: str) -> None:
    with Client(router_url) as c:
        ports = {c.predict_response("echo").extensions["network_stream"].get_extra_info("client_addr")[1]
                 for _ in range(5)}
    assert len(ports) == 1


# -- the async client ----------------------------------------------------------------------


async def test_async_payloads_and_answers(aclient: AsyncClient) -> None:
    answer = await aclient.predict("echo", {"name": "Ada"})
    assert answer["content_type"] == "application/json"
    assert json.loads(answer["body"]) == {"name": "Ada"}
    assert await aclient.predict("text", "Ada") == "hello, Ada"
    assert await aclient.predict("bytes", b"?") == b"\x00\x01?"
    response = await aclient.predict_response("echo", data=b"z", params={"q": "1"})
    assert response.json()["query"] == {"q": "1"}


async def test_async_concurrent_calls(aclient: AsyncClient) -> None:
    answers = await asyncio.gather(*(aclient.predict("text", str(i)) for i in range(20)))
    assert answers == [f"hello, {i}" for i in range(20)]


@pytest.mark.parametrize(
    ("api", "error", "check"),
    [
        ("nope", APINotFound, lambda e: e.apis == KNOWN),
        ("boom", PredictionError, lambda e: e.error == "ZeroDivisionError: division by zero"),
        ("busy", Unavailable, lambda e: e.retry_after == 7),
        ("gateway", Timeout, lambda e: e.source == "router"),
        ("secret", Unauthorized, lambda e: "WORKBENCH_API_KEY" in str(e)),
    ],
)
async def test_async_errors(aclient: AsyncClient, api: str, error: type[WorkbenchError], check: Any) -> None:
    with pytest.raises(error) as caught:
        await aclient.predict(api, {"x": 1})
    assert check(caught.value)


async def test_async_client_timeout(router_url: str) -> None:
    async with AsyncClient(router_url, timeout=0.3) as c:
        with pytest.raises(Timeout) as caught:
            await c.predict("slow")
    assert caught.value.source == "client"


async def test_async_connection_failed(closed_url: str) -> None:
    async with AsyncClient(closed_url) as c:
        with pytest.raises(ConnectionFailed, match="workbench serve"):
            await c.predict("echo")


async def test_async_api_key(router_url: str) -> None:
    async with AsyncClient(router_url, api_key=SECRET) as c:
        assert await c.predict("secret") == {"secret": 42}
