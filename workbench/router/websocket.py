"""WebSocket upgrades on ``/<api>/<path>``, passed through to a replica's ``/<path>``.

The router opens a WebSocket of its own to a replica (aiohttp's client, over the same pool's
session), accepts the client's handshake only once the replica accepted (with the subprotocol the
replica chose), then relays messages both ways until one side closes; the close code and reason
go on to the other side. A replica that refuses the upgrade, or cannot be reached, refuses the
client's handshake with a status and the wire's JSON error body saying why (ASGI's WebSocket Denial
Response; a server without it answers 403). Each hop answers its own pings.

Metered like a request: counted with the handshake's status and latency, in flight while open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
from yarl import URL

from workbench.wire.errors import error_body

from .api import ApiState
from .asgi import Receive, Scope, Send
from .policies import pick
from .proxy import UPSTREAM_ERRORS, Upstream, tls_context, with_endpoint_headers
from .request import IncomingRequest

#: the largest message relayed from the replica (uvicorn's default ws_max_size on the client's side)
MAX_MESSAGE = 16 * 1024 * 1024
#: handshake headers each hop makes itself
_OWN_HEADERS = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                          "sec-websocket-protocol", "sec-websocket-accept"})
CLOSE_WAIT = 10.0  # seconds a replica has to answer a close the client started
_DENIAL = "websocket.http.response"
_GONE = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
         aiohttp.WSMsgType.ERROR)
_now = time.monotonic


async def deny(scope: Scope, send: Send, status: int, message: str,
               extra: dict[str, Any] | None = None) -> None:
    """Refuse the client's handshake: `status` with ``{"error": message, **extra}``."""
    if _DENIAL in (scope.get("extensions") or {}):
        body = error_body(message, **(extra or {}))
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


def sendable(code: int | None, broken: int) -> int:
    """A close code that may go in a close frame: 1005 (none given) becomes 1000, and the codes
    that only say the connection broke (1006, 1015, or none) become `broken`."""
    if code == 1005:
        return 1000
    if code is None or code in (1006, 1015) or not 1000 <= code <= 4999:
        return broken
    return code


async def relay_websocket(api: ApiState, request: IncomingRequest, scope: Scope, receive: Receive,
                          send: Send, upstream: Upstream) -> None:
    """Open the replica's WebSocket, then accept the client's and relay (the client's
    ``websocket.connect`` was received already)."""
    stats = api.stats
    stats.enter()
    started = _now()
    try:
        state = pick(api.pool, api.policy, (), started)
        if state is None:
            stats.done(503, _now() - started, _now())
            await deny(scope, send, 503, f"API {api.name!r} has no ready replica")
            return
        endpoint = state.endpoint
        headers = [(k, v) for k, v in request.headers if k not in _OWN_HEADERS]
        headers.append(("x-request-id", request.request_id.decode("latin-1")))
        state.begin(started)
        try:
            try:
                async with asyncio.timeout(api.routing.timeout):
                    ws = await upstream.session.ws_connect(
                        URL(state.url + request.target, encoded=True),
                        headers=with_endpoint_headers(headers, endpoint.headers),
                        protocols=tuple(scope.get("subprotocols") or ()),
                        max_msg_size=MAX_MESSAGE, compress=0, autoclose=True, autoping=True,
                        ssl=tls_context(endpoint.ca_cert) if endpoint.ca_cert else True,
                    )
            except aiohttp.WSServerHandshakeError as error:
                status = error.status if 400 <= error.status < 600 else 502
                stats.done(status, _now() - started, _now())
                await deny(scope, send, status, (
                    f"API {api.name!r} refused the WebSocket upgrade on {request.target}: its server "
                    f"answered HTTP {error.status}" + (f" {error.message}" if error.message else "")
                    + " (does it serve a WebSocket on that path?)"))
                return
            except TimeoutError:
                stats.upstream_error("timeout")
                stats.done(504, _now() - started, _now())
                await deny(scope, send, 504, f"no WebSocket handshake from API {api.name!r} within "
                           f"{api.routing.timeout:g}s")
                return
            except (*UPSTREAM_ERRORS, ValueError) as error:
                stats.upstream_error("connect")
                stats.done(502, _now() - started, _now())
                await deny(scope, send, 502, f"cannot open a WebSocket to replica {state.replica_id} of "
                           f"API {api.name!r}: {str(error) or type(error).__name__}")
                return
            now = _now()
            stats.done(101, now - started, now)
            state.observe(now - started, now)
            try:
                await send({"type": "websocket.accept", "subprotocol": ws.protocol,
                            "headers": [(b"x-request-id", request.request_id),
                                        (b"x-workbench-replica", state.replica_bytes)]})
                await _relay(ws, receive, send)
            finally:
                await ws.close()
        finally:
            state.end(started, _now(), False)
    finally:
        stats.leave()


async def _relay(ws: aiohttp.ClientWebSocketResponse, receive: Receive, send: Send) -> None:
    client_closed = asyncio.Event()
    upward = asyncio.get_running_loop().create_task(_client_to_replica(receive, ws, client_closed))
    try:
        while True:
            message = await ws.receive()
            kind = message.type
            if kind is aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
            elif kind is aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
            elif kind in _GONE:
                break
        if not client_closed.is_set():  # the replica closed (or broke off): say so to the client
            extra = message.extra if kind is aiohttp.WSMsgType.CLOSE else None
            reason = extra if isinstance(extra, str) else ""
            with contextlib.suppress(Exception):  # the client may be gone meanwhile
                await send({"type": "websocket.close", "code": sendable(ws.close_code, 1011),
                            "reason": reason or ""})
    finally:
        if client_closed.is_set():  # let it finish the close handshake with the replica
            await asyncio.wait({upward}, timeout=CLOSE_WAIT)
        upward.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upward


async def _client_to_replica(receive: Receive, ws: aiohttp.ClientWebSocketResponse,
                             client_closed: asyncio.Event) -> None:
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await ws.send_str(text)
                else:
                    await ws.send_bytes(message.get("bytes") or b"")
            elif kind == "websocket.disconnect":
                client_closed.set()
                reason = str(message.get("reason") or "").encode()[:123]
                await ws.close(code=sendable(message.get("code"), 1001), message=reason)
                return
    except (*UPSTREAM_ERRORS, RuntimeError):  # the replica's side went away: its reader ends the relay
        return
