"""The predictor runtime over a real socket: `python -m workbench.serving` under uvicorn, fed
malformed HTTP and bodies it must refuse with a clear 4xx (or a 504), then still serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Replica, listening_socket, runtime_config, spawn, stop, write_project

PREDICTOR = """
import asyncio
from starlette.datastructures import FormData, UploadFile
from starlette.responses import PlainTextResponse

class Predictor:
    async def predict(self, payload, query_params):
        kind = query_params.get("return")
        if kind == "bytes":
            return b"\\x00\\x01"
        if kind == "str":
            return "h\\u00e9llo"
        if kind == "response":
            return PlainTextResponse("custom", status_code=201, headers={"x-custom": "1"})
        if kind == "object":
            return object()
        if "sleep" in query_params:
            await asyncio.sleep(float(query_params["sleep"]))
        if isinstance(payload, FormData):
            out = {}
            for key, value in payload.multi_items():
                out[key] = (await value.read()).decode() if isinstance(value, UploadFile) else value
            return {"type": "form", "value": out}
        if isinstance(payload, bytes):
            return {"type": "bytes", "value": payload.decode("latin-1")}
        return {"type": type(payload).__name__, "value": payload}
"""


@pytest.fixture(scope="module")
def rep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """One replica for the module (request_timeout 1 s, for the 504)."""
    tmp = tmp_path_factory.mktemp("real-http")
    cfg = runtime_config(write_project(tmp / "project", PREDICTOR), serving={"request_timeout": 1.0})
    sock = listening_socket()
    port = int(sock.getsockname()[1])
    try:
        proc = spawn(["--fd", str(sock.fileno())], cfg.model_dump_json(), tmp / "stderr.txt",
                     pass_fds=[sock.fileno()])
    finally:
        sock.close()
    replica = Replica(proc, f"http://127.0.0.1:{port}", port, tmp / "stderr.txt")
    try:
        replica.wait_ready()
        yield replica
    finally:
        stop(proc)


def exchange(port: int, data: bytes, *, until_closed: bool = False) -> bytes:
    """Send raw bytes; the answer's status line and headers (and what came with them), or with
    ``until_closed`` everything the server sent before it closed. A reset, a timeout or a close
    without an answer fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError) as error:
                raise AssertionError(f"no answer to {data[:60]!r}: {error!r}") from None
            if not chunk:
                raise AssertionError(f"closed without an answer to {data[:60]!r}: {received[:200]!r}")
            received += chunk
        while until_closed:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:  # closed with the extra bytes unread: what came is all
                break
            if not chunk:
                break
            received += chunk
        return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b"\r\n", 1)[0].split()[1])


def still_serving(rep: Replica) -> None:
    response = httpx.post(rep.url + "/", json={"after": "garbage"}, timeout=10)
    assert response.status_code == 200 and response.json() == {"type": "dict", "value": {"after": "garbage"}}


# -- bodies the runtime parses: each refused with its reason --------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"{not json", "application/json", "invalid JSON body"),
        (b"", "application/json", "invalid JSON body"),
        (b"\xff\xfe", "text/plain", "not valid utf-8"),
        (b"x", "text/plain; charset=nope", "unknown charset 'nope'"),
        (b"garbage", "multipart/form-data", "invalid form data"),
    ],
)
def test_bad_bodies_are_400_with_the_reason(rep: Replica, body: bytes, content_type: str, words: str) -> None:
    response = httpx.post(rep.url + "/", content=body, headers={"content-type": content_type}, timeout=10)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"], response.json()
    still_serving(rep)


def test_good_bodies_by_content_type(rep: Replica) -> None:
    def post(**kw: object) -> object:
        response = httpx.post(rep.url + "/", timeout=10, **kw)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return response.json()

    latin = {"content-type": "text/plain; charset=latin-1"}
    word = "h\u00e9llo"
    assert post(content=word.encode("latin-1"), headers=latin) == {"type": "str", "value": word}
    assert post(data={"a": "1"}, files={"up": ("x.txt", b"file body")}) == {
        "type": "form", "value": {"a": "1", "up": "file body"}}
    assert post(content=b"", headers={"content-type": "text/plain"}) == {"type": "str", "value": ""}
    assert post(content=b"\x00\x01", headers={"content-type": "image/png"}) == {
        "type": "bytes", "value": "\x00\x01"}


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        ("bytes", 200, "application/octet-stream", b"\x00\x01"),
        ("str", 200, "text/plain; charset=utf-8", "h\u00e9llo".encode()),
        ("response", 201, "text/plain; charset=utf-8", b"custom"),
    ],
)
def test_return_types_over_the_wire(rep: Replica, kind: str, status: int, content_type: str,
                                    body: bytes) -> None:
    response = httpx.post(rep.url + "/", params={"return": kind}, json={}, timeout=10)
    assert (response.status_code, response.headers["content-type"], response.content) == (
        status, content_type, body)


def test_unserializable_return_is_500_and_the_replica_keeps_serving(rep: Replica) -> None:
    response = httpx.post(rep.url + "/", params={"return": "object"}, json={}, timeout=10)
    assert response.status_code == 500 and response.json()["error"].startswith("TypeError")
    still_serving(rep)


def test_request_timeout_is_504(rep: Replica) -> None:
    response = httpx.post(rep.url + "/", params={"sleep": "5"}, json={}, timeout=10)
    assert response.status_code == 504, response.text
    assert response.json() == {"error": "request timed out after 1s"}
    still_serving(rep)


# -- malformed HTTP: refused by the server before the predictor sees it -------------------------

MALFORMED = {
    "not HTTP": b"\x00\x01\x02 not http at all\r\n\r\n",
    "Content-Length abc": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "Content-Length -1": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "two Content-Lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "length and chunked": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nabc\r\n0\r\n\r\n",
    "space in header name": b"POST / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    "HTTP/9.9": b"POST / HTTP/9.9\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("what", list(MALFORMED))
def test_malformed_http_is_400(rep: Replica, what: str) -> None:
    answer = exchange(rep.port, MALFORMED[what])
    assert status_of(answer) == 400, (what, answer[:300])
    still_serving(rep)


def test_declared_length_is_read_exactly(rep: Replica) -> None:
    """A valid Content-Length: the body is what it declares, nothing of the next bytes."""
    answer = exchange(rep.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: 5\r\nConnection: close\r\n\r\nhello, and more",
                      until_closed=True)
    assert status_of(answer) == 200, answer[:300]
    assert answer.endswith(b'{"type":"str","value":"hello"}'), answer[-200:]


def test_body_shorter_than_declared_is_not_predicted(rep: Replica, tmp_path: Path) -> None:
    """The client half-closes after 3 of the 10 bytes it declared: the runtime does not call
    predict with a truncated body (no 200) and keeps serving."""
    with socket.create_connection(("127.0.0.1", rep.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc")
        s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    assert not received.startswith(b"HTTP/1.1 200"), received[:300]
    still_serving(rep)
