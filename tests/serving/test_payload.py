"""workbench.serving.payload: the payload given to predict, by Content-Type; body limits."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from workbench.serving.payload import is_json, split_content_type

ECHO = """
from starlette.datastructures import FormData, UploadFile

class Predictor:
    async def predict(self, payload):
        if isinstance(payload, FormData):
            out = {}
            for key, value in payload.multi_items():
                if isinstance(value, UploadFile):
                    out[key] = {"filename": value.filename, "data": (await value.read()).decode()}
                else:
                    out[key] = value
            return {"type": "form", "value": out}
        if isinstance(payload, bytes):
            return {"type": "bytes", "value": payload.decode("latin-1")}
        return {"type": type(payload).__name__, "value": payload}
"""

AppClient = Callable[..., Any]


def test_split_content_type() -> None:
    assert split_content_type(None) == ("", {})
    assert split_content_type('Text/Plain; Charset="latin-1"; x') == (
        "text/plain",
        {"charset": "latin-1"},
    )
    assert is_json("application/json") and is_json("application/vnd.api+json")
    assert not is_json("text/json+") and not is_json("+json")


async def echo(client: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    response = await client.post("/", **kw)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_json(app_client: AppClient) -> None:
    client = await app_client(ECHO)
    assert await echo(client, json={"a": [1, 2]}) == {"type": "dict", "value": {"a": [1, 2]}}
    got = await echo(
        client, content=b"[1]", headers={"content-type": "application/vnd.x+json; charset=utf-8"}
    )
    assert got == {"type": "list", "value": [1]}


async def test_invalid_json_is_400(app_client: AppClient) -> None:
    client = await app_client(ECHO)
    for body in (b"{not json", b""):
        response = await client.post("/", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert "invalid JSON" in response.json()["error"]
    assert (await client.post("/", json=1)).status_code == 200


async def test_text_with_charset(app_client: AppClient) -> None:
    client = await app_client(ECHO)
    got = await echo(
        client, content="héllo".encode("latin-1"), headers={"content-type": "text/plain; charset=latin-1"}
    )
    assert got == {"type": "str", "value": "héllo"}
    got = await echo(client, content="héllo".encode(), headers={"content-type": "text/plain"})
    assert got == {"type": "str", "value": "héllo"}
    bad = await client.post("/", content=b"\xff\xfe", headers={"content-type": "text/plain"})
    assert bad.status_code == 400
    bad = await client.post("/", content=b"x", headers={"content-type": "text/plain; charset=nope"})
    assert bad.status_code == 400 and "charset" in bad.json()["error"]


async def test_urlencoded_form(app_client: AppClient) -> None:
    client = await app_client(ECHO)
    got = await echo(client, data={"a": "1", "b": "two"})
    assert got == {"type": "form", "value": {"a": "1", "b": "two"}}


async def test_multipart_form(app_client: AppClient) -> None:
    client = await app_client(ECHO)
    got = await echo(client, data={"field": "v"}, files={"upload": ("x.txt", b"file body")})
    assert got == {
        "type": "form",
        "value": {"field": "v", "upload": {"filename": "x.txt", "data": "file body"}},
    }


async def test_bad_multipart_is_400(app_client: AppClient) -> None:
    client = await app_client(ECHO)
    response = await client.post("/", content=b"garbage", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400


async def test_other_types_are_bytes(app_client: AppClient) -> None:
    client = await app_client(ECHO)
    got = await echo(client, content=b"\x00\x01", headers={"content-type": "image/png"})
    assert got == {"type": "bytes", "value": "\x00\x01"}
    got = await echo(client, content=b"raw")
    assert got == {"type": "bytes", "value": "raw"}


async def test_413_by_content_length(app_client: AppClient) -> None:
    client = await app_client(ECHO, serving={"max_body_bytes": 100})
    assert (await client.post("/", content=b"x" * 100)).status_code == 200
    response = await client.post("/", content=b"x" * 101)
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]


async def test_413_chunked(app_client: AppClient) -> None:
    client = await app_client(ECHO, serving={"max_body_bytes": 100})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 30

    response = await client.post("/", content=chunks())
    assert response.status_code == 413


def test_413_real_http(replica: Callable[..., Any]) -> None:
    """Over a real socket: a declared length and a chunked body, both over the limit."""
    rep = replica(ECHO, serving={"max_body_bytes": 1000})
    with rep.client() as client:
        assert client.post("/", content=b"x" * 1001).status_code == 413

        def chunks() -> Any:
            for _ in range(20):
                yield b"z" * 100

        assert client.post("/", content=chunks()).status_code == 413
        assert client.post("/", content=b"ok").json() == {"type": "bytes", "value": "ok"}


def test_bad_content_length_real_http(replica: Callable[..., Any]) -> None:
    """Over a real socket the server refuses an invalid Content-Length (400) before the app; a
    valid one on the same replica is read exactly."""
    rep = replica(ECHO)
    for length in (b"abc", b"-5", b"5, 6"):
        with socket.create_connection(("127.0.0.1", rep.port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\nhello")
            status_line = sock.recv(1000).split(b"\r\n")[0]
        assert status_line.startswith(b"HTTP/1.1 400 "), (length, status_line)
    with socket.create_connection(("127.0.0.1", rep.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert sock.recv(1000).split(b"\r\n")[0] == b"HTTP/1.1 200 OK"


async def test_bad_content_length_reaching_the_app_is_400(app_client: AppClient) -> None:
    """Behind an ASGI server that passes it on, the app's own check answers 400 (not a 500)."""
    client = await app_client(ECHO)
    response = await client.post("/", content=b"hello", headers={"content-length": "abc"})
    assert response.status_code == 400 and response.json() == {"error": "invalid Content-Length header"}


@pytest.mark.parametrize(
    ("content_type", "status", "answer"),
    [
        ("application/json", 400, None),
        ("text/plain", 200, {"type": "str", "value": ""}),
        ("application/x-www-form-urlencoded", 200, {"type": "form", "value": {}}),
        ("application/octet-stream", 200, {"type": "bytes", "value": ""}),
    ],
)
async def test_empty_bodies(app_client: AppClient, content_type: str, status: int, answer: Any) -> None:
    client = await app_client(ECHO)
    response = await client.post("/", content=b"", headers={"content-type": content_type})
    assert response.status_code == status, response.text
    if answer is None:
        assert "invalid JSON body" in response.json()["error"]
    else:
        assert response.json() == answer
