"""WebSocket upgrades through the router (a real uvicorn server) to a real WebSocket server on
loopback: messages both ways, subprotocols, close codes passed on; and handshakes the router
refuses with a reason: a replica that does not serve WebSockets, no such API, no API key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import connect

from tests.router.conftest import RouterServer
from tests.serving.conftest import replica  # noqa: F401  (the fixture)
from workbench.router import ApiRoute, Endpoint
from workbench.spec.models import RoutingSpec


@dataclass
class EchoServer:
    url: str = ""
    closes: list[int | None] = field(default_factory=list)  # the close codes the clients sent
    headers: list[dict[str, str]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    """``/ws`` echoes text and bytes; the text ``close:<code>`` makes it close with that code."""
    state = EchoServer()

    async def ws(request: web.Request) -> web.WebSocketResponse:
        state.headers.append({k.lower(): v for k, v in request.headers.items()})
        socket = web.WebSocketResponse(protocols=("chat.v2",))
        await socket.prepare(request)
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                if message.data.startswith("close:"):
                    await socket.close(code=int(message.data[6:]), message=b"asked to")
                    break
                await socket.send_str("echo " + message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                await socket.send_bytes(message.data[::-1])
        state.closes.append(socket.close_code)
        state.closed.set()
        return socket

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield state
    finally:
        await runner.cleanup()


def add(srv: RouterServer, name: str, url: str, **route: Any) -> None:
    srv.call(srv.router.set_route, ApiRoute(name=name, routing=RoutingSpec(), **route))
    srv.call(srv.router.set_endpoints, name, [Endpoint(replica_id=f"{name}-0", url=url)])


def ws_url(srv: RouterServer, path: str) -> str:
    return srv.url.replace("http://", "ws://") + path


async def test_messages_both_ways_and_the_replicas_close_code(router_server, echo_server):
    srv = router_server()
    add(srv, "chat", echo_server.url)
    async with connect(ws_url(srv, "/chat/ws"), subprotocols=["chat.v2"]) as client:  # type: ignore[list-item]
        assert client.subprotocol == "chat.v2"
        assert client.response.headers["x-workbench-replica"] == "chat-0"
        await client.send("hello")
        assert await client.recv() == "echo hello"
        await client.send(b"\x01\x02\x03")
        assert await client.recv() == b"\x03\x02\x01"
        await client.send("close:4001")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert closed.value.rcvd.reason == "asked to"
    assert echo_server.headers[0]["x-request-id"]  # the router's request id went along


async def test_the_clients_close_code_reaches_the_replica(router_server, echo_server):
    srv = router_server()
    add(srv, "chat", echo_server.url)
    async with connect(ws_url(srv, "/chat/ws")) as client:
        await client.send("x")
        assert await client.recv() == "echo x"
        await client.close(code=4002, reason="bye")
    async with asyncio.timeout(10):
        await echo_server.closed.wait()
    assert echo_server.closes == [4002]
    async with asyncio.timeout(10):  # the session ends, and is counted as one request
        while (traffic := srv.call(srv.router.traffic, "chat")).in_flight:
            await asyncio.sleep(0.02)
    assert traffic.status_2xx == 1 and traffic.replica_in_flight == {"chat-0": 0}


async def test_a_replica_that_refuses_the_upgrade_refuses_the_client_with_a_reason(
        router_server, replica: Callable[..., Any]):  # noqa: F811
    rep = replica("class Predictor:\n    def predict(self, payload):\n        return payload\n")
    srv = router_server()
    add(srv, "plain", rep.url)
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(ws_url(srv, "/plain/ws")):
            pass
    response = refused.value.response
    assert response.status_code == 404  # the replica's own answer to GET /ws
    error = json.loads(response.body)["error"]
    assert "API 'plain' refused the WebSocket upgrade on /ws" in error and "HTTP 404" in error
    # nothing changed: the API serves as before
    assert httpx.post(srv.url + "/plain", json={"still": 1}).json() == {"still": 1}


async def test_unknown_api_and_missing_key_are_refused(router_server, echo_server):
    srv = router_server()
    add(srv, "locked", echo_server.url, api_keys=frozenset({"k1"}))
    with pytest.raises(websockets.InvalidStatus) as unknown:
        async with connect(ws_url(srv, "/nope/ws")):
            pass
    assert unknown.value.response.status_code == 404
    assert json.loads(unknown.value.response.body) == {"error": "no API named 'nope'", "apis": ["locked"]}
    with pytest.raises(websockets.InvalidStatus) as no_key:
        async with connect(ws_url(srv, "/locked/ws")):
            pass
    assert no_key.value.response.status_code == 401
    async with connect(ws_url(srv, "/locked/ws"), additional_headers={"x-api-key": "k1"}) as client:
        await client.send("in")
        assert await client.recv() == "echo in"
    assert "x-api-key" not in echo_server.headers[0]  # a checked key is not passed on


async def test_no_ready_replica_is_503(router_server):
    srv = router_server()
    srv.call(srv.router.set_route, ApiRoute(name="empty"))
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(ws_url(srv, "/empty/ws")):
            pass
    assert refused.value.response.status_code == 503
    assert "no ready replica" in json.loads(refused.value.response.body)["error"]


def raw_handshake(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        data = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
                data += chunk
        return data


async def test_garbage_handshakes_are_refused_and_the_router_keeps_serving(router_server, echo_server):
    srv = router_server()
    add(srv, "chat", echo_server.url)
    base = b"GET /chat/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    garbage = [
        base + b"Sec-WebSocket-Version: 13\r\n\r\n",  # no key
        base + b"Sec-WebSocket-Key: not-base64!\r\nSec-WebSocket-Version: 13\r\n\r\n",
        base + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n",
    ]
    for head in garbage:
        answer = await asyncio.to_thread(raw_handshake, srv.port, head)
        assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert echo_server.headers == []  # none of them reached the replica
    async with connect(ws_url(srv, "/chat/ws")) as client:
        await client.send("still")
        assert await client.recv() == "echo still"
