"""`workbench.Client` and `AsyncClient` against the real router: a real controller (`workbench
serve`, its own home) with real process replicas. Every error the README names comes from its
real cause: no such API (APINotFound), a replica's queue full and no ready replica (Unavailable,
with the router's Retry-After), the API's routing.timeout (Timeout from a 504), an exception in
predict (PredictionError), nothing listening (ConnectionFailed)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.controller.helpers import Controller
from tests.router.conftest import router_subprocess
from tests.serving.conftest import stop
from tests.support.real_parts import Workbench, wait_until
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

SECRET = "s3cret"
KEYS_ENV = "WB_CLIENT_TEST_KEYS"
ROUTER_TIMEOUT = 2  # routing.timeout of `echo`: a predict sleeping longer gets the router's 504

#: Echoes what reached it; `?answer=` picks another kind of answer, `?sleep=` delays it.
PREDICTOR = '''
import asyncio
from starlette.responses import JSONResponse, PlainTextResponse, Response


class Predictor:
    def __init__(self, config):
        pass

    async def predict(self, payload, query_params, headers):
        if "sleep" in query_params:
            await asyncio.sleep(float(query_params["sleep"]))
        answer = query_params.get("answer")
        if answer == "text":
            return "hello, " + payload
        if answer == "bytes":
            return b"\\x00\\x01" + payload
        if answer == "problem-json":
            return Response(b'{"ok": true}', media_type="application/problem+json")
        if answer == "empty":
            return Response(status_code=204)
        if answer == "404":
            return JSONResponse({"error": "item not found"}, status_code=404)
        if answer == "422":
            return JSONResponse({"detail": "field 'x' is required"}, status_code=422)
        if answer == "418":
            return PlainTextResponse("short and stout", status_code=418)
        if answer == "warming":
            return JSONResponse({"error": "model still warming"}, status_code=503, headers=(
                {"Retry-After": query_params["retry"]} if "retry" in query_params else {}))
        if answer == "raise":
            return 1 / 0
        kind = type(payload).__name__
        if isinstance(payload, bytes):
            payload = payload.decode("latin-1")
        return {"type": kind, "payload": payload, "content_type": headers.get("content-type"),
                "authorization": headers.get("authorization"), "x_custom": headers.get("x-custom"),
                "query": {k: v for k, v in query_params.items() if k != "answer"}}
'''

APIS = {
    "echo": f"routing: {{timeout: {ROUTER_TIMEOUT}}}\nserving: {{max_concurrency: 16}}\n",
    "busy": "serving: {max_concurrency: 1, max_queue: 0}\n",  # a second request finds the queue full
    "locked": f"routing: {{api_keys_env: {KEYS_ENV}}}\n",
    "idle": "replicas: 0\n",  # deployed, no replica: the router has none ready
}


@pytest.fixture(scope="module")
def router_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The controller's address (router and control API), with the APIs above deployed."""
    root = tmp_path_factory.mktemp("client")
    bench = Workbench.create(root / "home")
    bench.env[KEYS_ENV] = SECRET
    ctl = Controller(bench)
    try:
        ctl.start()
        for name, extra in APIS.items():
            folder = root / name
            folder.mkdir()
            (folder / "predictor.py").write_text(PREDICTOR)
            replicas = "" if "replicas:" in extra else "replicas: 1\n"
            (folder / "workbench.yaml").write_text(
                f"name: {name}\nruntime: process\n{replicas}compute: {{cpu: 0.1, mem: 64Mi}}\n{extra}")
            events = ctl.deploy(folder)
            assert events[-1]["kind"] == "done", events[-3:]
        for name in ("echo", "busy", "locked"):
            ctl.wait_ready(name, 1)
        yield ctl.url
    finally:
        ctl.stop()
        bench.cleanup()


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


def hold_the_busy_replica(router_url: str, seconds: float = 2.0) -> threading.Thread:
    """Occupy `busy`'s only slot for `seconds`; returns once a second request is refused."""
    thread = threading.Thread(target=lambda: httpx.post(f"{router_url}/busy", params={"sleep": seconds},
                                                        json={}, timeout=30), daemon=True)
    thread.start()

    def refused() -> bool:
        return httpx.post(f"{router_url}/busy", json={}, timeout=30).status_code == 503

    wait_until(refused, 10, interval=0.05, what="busy's slot taken")
    return thread


# -- payloads and answers (sync) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "content_type", "kind", "payload"),
    [
        ({"payload": {"name": "Ada"}}, "application/json", "dict", {"name": "Ada"}),
        ({"payload": [1, 2, 3]}, "application/json", "list", [1, 2, 3]),
        ({"payload": "plain words"}, "text/plain; charset=utf-8", "str", "plain words"),
        ({"payload": b"\x01raw"}, "application/octet-stream", "bytes", "\x01raw"),
        ({"json": "a JSON string"}, "application/json", "str", "a JSON string"),
        ({"json": None}, "application/json", "NoneType", None),
        ({"data": "text via data"}, "text/plain; charset=utf-8", "str", "text via data"),
        ({"data": b"bytes via data"}, "application/octet-stream", "bytes", "bytes via data"),
        ({"payload": {"ü": "é"}}, "application/json", "dict", {"ü": "é"}),
    ],
)
def test_payload_kinds(client: Client, kwargs: dict[str, Any], content_type: str, kind: str,
                       payload: Any) -> None:
    """What the client sends is what the replica's predict receives, through the router."""
    answer = client.predict("echo", kwargs.pop("payload", None), **kwargs)
    assert (answer["content_type"], answer["type"], answer["payload"]) == (content_type, kind, payload)


def test_no_payload_sends_an_empty_body(client: Client) -> None:
    answer = client.predict("echo")
    assert (answer["type"], answer["payload"], answer["content_type"]) == ("bytes", "", None)


def test_answers_are_decoded_by_content_type(client: Client) -> None:
    assert client.predict("echo", "Ada", params={"answer": "text"}) == "hello, Ada"
    assert client.predict("echo", b"!", params={"answer": "bytes"}) == b"\x00\x01!"
    assert client.predict("echo", params={"answer": "problem-json"}) == {"ok": True}
    assert client.predict("echo", params={"answer": "empty"}) is None


def test_headers_and_params_pass_through(client: Client) -> None:
    answer = client.predict("echo", "x", headers={"X-Custom": "yes", "Content-Type": "text/csv"},
                            params={"top_k": 3})
    assert answer["x_custom"] == "yes" and answer["content_type"] == "text/csv"
    assert answer["type"] == "bytes"  # text/csv is not text/plain: the replica hands over bytes
    assert answer["query"] == {"top_k": "3"}


def test_predict_response_gives_the_whole_response(client: Client) -> None:
    response = client.predict_response("echo", "Bo", params={"answer": "text"})
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200 and response.text == "hello, Bo"
    assert len(response.headers["x-request-id"]) == 32 and response.headers["x-workbench-replica"]


def test_only_one_payload_form(client: Client) -> None:
    with pytest.raises(TypeError, match="only one of payload, json= and data="):
        client.predict("echo", {"a": 1}, data=b"x")
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        client.predict("echo", {"a": object()})
    with pytest.raises(ValueError, match="API name"):
        client.predict("")


# -- errors (sync), each from its real cause ----------------------------------------------------


def test_unknown_api_lists_the_known_ones(client: Client, router_url: str) -> None:
    with pytest.raises(APINotFound) as caught:
        client.predict("ehco", {"x": 1})
    err = caught.value
    assert err.apis == sorted(APIS) and err.status == 404
    assert err.error == "no API named 'ehco'"
    assert f"no API named 'ehco' at {router_url}; known APIs: busy, echo, idle, locked" in str(err)


def test_unknown_api_on_a_router_without_apis(tmp_path: Path) -> None:
    proc, url = router_subprocess([], tmp_path / "router.txt")
    try:
        with Client(url) as c:
            wait_until(lambda: _answers(url), 30, what="the router to listen")
            with pytest.raises(APINotFound, match="no APIs are deployed") as caught:
                c.predict("lonely")
        assert caught.value.apis == []
    finally:
        stop(proc)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/x", timeout=2).status_code == 404
    except httpx.TransportError:
        return False


def test_a_404_from_the_predictor_is_a_prediction_error(client: Client) -> None:
    with pytest.raises(PredictionError) as caught:
        client.predict("echo", params={"answer": "404"})
    assert caught.value.error == "item not found" and caught.value.status == 404
    assert not isinstance(caught.value, APINotFound)


def test_predictor_exception_is_a_prediction_error(client: Client) -> None:
    with pytest.raises(PredictionError) as caught:
        client.predict("echo", {"x": 1}, params={"answer": "raise"})
    err = caught.value
    assert (err.status, err.error, err.api) == (500, "ZeroDivisionError: division by zero", "echo")
    assert str(err) == "API 'echo' answered 500 Internal Server Error: ZeroDivisionError: division by zero"
    assert err.response is not None and err.request_id == err.response.headers["x-request-id"]
    assert len(err.request_id or "") == 32
    assert client.predict("echo", {"still": "serving"})["payload"] == {"still": "serving"}


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [("422", 422, "field 'x' is required"), ("418", 418, "short and stout")],
)
def test_prediction_errors_carry_status_and_server_text(client: Client, answer: str, status: int,
                                                        error: str) -> None:
    with pytest.raises(PredictionError) as caught:
        client.predict("echo", {"x": 1}, params={"answer": answer})
    err = caught.value
    assert (err.status, err.error, err.api) == (status, error, "echo")
    assert str(status) in str(err) and error in str(err)


def test_queue_full_is_unavailable_with_the_replicas_retry_after(client: Client, router_url: str) -> None:
    holder = hold_the_busy_replica(router_url)
    with pytest.raises(Unavailable) as caught:
        client.predict("busy", {"x": 1})
    holder.join(30)
    err = caught.value
    assert err.status == 503 and err.retry_after == 1
    assert err.error == "queue full (max_concurrency=1, max_queue=0)"
    assert "API 'busy' is unavailable (503: queue full" in str(err) and "retry after 1 s" in str(err)


def test_no_ready_replica_is_unavailable(client: Client) -> None:
    with pytest.raises(Unavailable) as caught:
        client.predict("idle")
    assert caught.value.retry_after == 1 and caught.value.error == "API 'idle' has no ready replica"


def test_a_predictors_own_503_keeps_its_retry_after_or_none(client: Client) -> None:
    with pytest.raises(Unavailable) as caught:
        client.predict("echo", params={"answer": "warming", "retry": "7"})
    assert caught.value.retry_after == 7 and "retry after 7 s" in str(caught.value)
    with pytest.raises(Unavailable) as caught:
        client.predict("echo", params={"answer": "warming"})
    assert caught.value.retry_after is None and "retry after" not in str(caught.value)
    assert caught.value.error == "model still warming"


def test_router_timeout(client: Client) -> None:
    with pytest.raises(Timeout) as caught:
        client.predict("echo", params={"sleep": ROUTER_TIMEOUT + 3})
    err = caught.value
    assert err.source == "router" and err.status == 504
    assert err.error == f"no answer from API 'echo' within {ROUTER_TIMEOUT}s"
    assert "the router timed out waiting for API 'echo' (504" in str(err)


def test_client_timeout(router_url: str) -> None:
    with Client(router_url, timeout=0.3) as c, pytest.raises(Timeout) as caught:
        c.predict("echo", params={"sleep": 1})
    assert caught.value.source == "client"
    assert "within 0.3 s" in str(caught.value) and "client timeout" in str(caught.value)


def test_per_call_timeout_overrides(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"within 0\.2 s"):
        client.predict("echo", params={"sleep": 1.5}, timeout=0.2)
    assert time.monotonic() - started < 1.5  # the call's own timeout, not the client's 360 s


def test_unauthorized_says_how_to_pass_a_key(client: Client) -> None:
    with pytest.raises(Unauthorized) as caught:
        client.predict("locked")
    err = caught.value
    assert err.status == 401 and "api_key" in str(err) and "WORKBENCH_API_KEY" in str(err)
    assert "requires an API key" in str(err)


def test_wrong_key_is_reported_as_not_accepted(router_url: str) -> None:
    with Client(router_url, api_key="nope") as c, pytest.raises(Unauthorized, match="not accepted"):
        c.predict("locked")


def test_api_key_from_argument_and_environment(router_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(router_url, api_key=SECRET) as c:
        assert c.predict("locked", {"k": 1})["payload"] == {"k": 1}
    monkeypatch.setenv("WORKBENCH_API_KEY", SECRET)
    with Client(router_url) as c:
        assert c.predict("echo")["authorization"] == f"Bearer {SECRET}"  # an API without keys: passed on
        answer = c.predict("locked")
        assert answer["authorization"] is None  # checked by the router, not handed to the replica


def test_connection_failed_names_the_url(closed_url: str) -> None:
    with Client(closed_url) as c, pytest.raises(ConnectionFailed) as caught:
        c.predict("echo", {"x": 1})
    assert f"is `workbench serve` running on {closed_url}?" in str(caught.value)
    assert isinstance(caught.value, WorkbenchError)


def test_url_from_environment(router_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_URL", router_url + "/")
    with Client() as c:
        assert c.url == router_url
        assert c.predict("echo", "env", params={"answer": "text"}) == "hello, env"
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
    assert answer["content_type"] == "application/json" and answer["payload"] == {"name": "Ada"}
    assert await aclient.predict("echo", "Ada", params={"answer": "text"}) == "hello, Ada"
    assert await aclient.predict("echo", b"?", params={"answer": "bytes"}) == b"\x00\x01?"
    response = await aclient.predict_response("echo", data=b"z", params={"q": "1"})
    assert response.json()["query"] == {"q": "1"}


async def test_async_concurrent_calls(aclient: AsyncClient) -> None:
    answers = await asyncio.gather(*(aclient.predict("echo", str(i), params={"answer": "text"})
                                     for i in range(20)))
    assert answers == [f"hello, {i}" for i in range(20)]


@pytest.mark.parametrize(
    ("api", "params", "error", "check"),
    [
        ("nope", {}, APINotFound, lambda e: e.apis == sorted(APIS)),
        ("echo", {"answer": "raise"}, PredictionError, lambda e: e.error.startswith("ZeroDivisionError")),
        ("idle", {}, Unavailable, lambda e: e.retry_after == 1),
        ("echo", {"sleep": ROUTER_TIMEOUT + 3}, Timeout, lambda e: e.source == "router"),
        ("locked", {}, Unauthorized, lambda e: "WORKBENCH_API_KEY" in str(e)),
    ],
)
async def test_async_errors(aclient: AsyncClient, api: str, params: dict[str, Any],
                            error: type[WorkbenchError], check: Any) -> None:
    with pytest.raises(error) as caught:
        await aclient.predict(api, {"x": 1}, params=params)
    assert check(caught.value)


async def test_async_queue_full(aclient: AsyncClient, router_url: str) -> None:
    holder = await asyncio.to_thread(hold_the_busy_replica, router_url)
    with pytest.raises(Unavailable) as caught:
        await aclient.predict("busy", {"x": 1})
    await asyncio.to_thread(holder.join, 30)
    assert caught.value.retry_after == 1 and "queue full" in caught.value.error


async def test_async_client_timeout(router_url: str) -> None:
    async with AsyncClient(router_url, timeout=0.3) as c:
        with pytest.raises(Timeout) as caught:
            await c.predict("echo", params={"sleep": 1})
    assert caught.value.source == "client"


async def test_async_connection_failed(closed_url: str) -> None:
    async with AsyncClient(closed_url) as c:
        with pytest.raises(ConnectionFailed, match="workbench serve"):
            await c.predict("echo")


async def test_async_api_key(router_url: str) -> None:
    async with AsyncClient(router_url, api_key=SECRET) as c:
        assert (await c.predict("locked", [1]))["payload"] == [1]


def test_json_payload_round_trip_is_exact(client: Client) -> None:
    value = {"n": 1.5, "nested": [True, None, "ü"], "big": 2**53}
    assert client.predict("echo", value)["payload"] == json.loads(json.dumps(value))
