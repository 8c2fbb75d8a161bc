"""Direct mode's replica proxy: `ANY /v1/replicas/{id}/proxy/{path}` forwarded to the replica's
loopback URL, so replicas never listen on the box's network while a workstation on the LAN/VPN
still reaches them through the (token-checked) agent.

HTTP/1.1 framing is h11's (always installed with uvicorn); the I/O is asyncio streams, so a
client that goes away cancels the upstream exchange at once. One upstream connection per request
(loopback: a handshake costs tens of microseconds). Request and response bodies are streamed.
The agent's own Authorization header is never forwarded to the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import h11
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from workbench.wire.errors import UpstreamFailed
from workbench.wire.handlers import error_response

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 300.0  # longest silence from a replica (a slow prediction) before 504
CHUNK = 65536

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
_DROP_REQUEST = HOP_BY_HOP | {b"host", b"authorization", b"content-length"}
_DROP_RESPONSE = HOP_BY_HOP | {b"date", b"server"}  # uvicorn sets its own


class UpstreamError(UpstreamFailed):
    """The replica could not be reached or broke off before answering."""


def _error(status: int, message: str) -> Response:
    return error_response(status, message)


def _named_in_connection(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    return named


def request_headers(raw: list[tuple[bytes, bytes]], host: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The headers to send upstream, and whether the client's body was chunked (no length)."""
    drop = _DROP_REQUEST | _named_in_connection(raw)
    out: list[tuple[bytes, bytes]] = [(b"host", host)]
    length: bytes | None = None
    chunked = False
    for key, value in raw:
        key = key.lower()
        if key == b"content-length":
            length = value
        elif key == b"transfer-encoding":
            chunked = True
        if key not in drop:
            out.append((key, value))
    if length is not None and not chunked:
        out.append((b"content-length", length))
    elif chunked:
        out.append((b"transfer-encoding", b"chunked"))
    return out, chunked or length is not None


def response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    drop = _DROP_RESPONSE | _named_in_connection(raw)
    return [(k, v) for k, v in raw if k not in drop]


class _Exchange:
    """One request/response with a replica over its own connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), READ_TIMEOUT)
            except TimeoutError:
                raise  # (a subclass of OSError) the caller answers 504
            except OSError as e:
                raise UpstreamError(f"connection broke: {e}") from e
            self.conn.receive_data(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def forward(request: Request, replica_id: str, replica_url: str, path: str) -> Response:
    """Forward `request` to `replica_url` + `/path` (query kept); stream the answer back.
    502 (JSON) when the replica is down or breaks off, 504 when it stays silent too long."""
    parts = urlsplit(replica_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raw: bytes = request.scope.get("raw_path") or b""
    marker = f"/replicas/{replica_id}/proxy".encode()
    at = raw.find(marker)
    # the path as the client encoded it (`path` is percent-decoded)
    rest = raw[at + len(marker):] if at >= 0 else quote("/" + path).encode()
    target = parts.path.rstrip("/").encode() + (rest if rest.startswith(b"/") else b"/" + rest)
    if request.url.query:
        target += b"?" + request.url.query.encode()
    host_header = f"{host}:{port}".encode()
    headers, has_body = request_headers(list(request.headers.raw), host_header)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        return _error(502, f"replica {replica_id} at {replica_url} is not answering: {e or 'timed out'}")
    exchange = _Exchange(reader, writer)
    handed_over = False
    try:
        try:
            await exchange.send(h11.Request(method=request.method, target=target, headers=headers))
            if has_body:
                async for chunk in request.stream():
                    if chunk:
                        await exchange.send(h11.Data(data=chunk))
            await exchange.send(h11.EndOfMessage())
            while True:
                event = await exchange.next_event()
                if isinstance(event, h11.Response):
                    break
                if isinstance(event, h11.ConnectionClosed):
                    raise UpstreamError("the replica closed the connection without answering")
                if not isinstance(event, h11.InformationalResponse):
                    raise UpstreamError(f"unexpected answer {event!r}")
        except TimeoutError:
            return _error(504, f"replica {replica_id} did not answer within {READ_TIMEOUT:.0f} s")
        except (UpstreamError, OSError, h11.ProtocolError) as e:
            return _error(502, f"replica {replica_id} at {replica_url} broke off: {e}")

        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    event = await exchange.next_event()
                    if isinstance(event, h11.Data):
                        yield bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        return
            except (TimeoutError, UpstreamError, OSError, h11.ProtocolError) as e:
                # the headers are out: break the client's connection so it sees a cut-off body
                raise UpstreamError(f"replica {replica_id} broke off mid-answer: {e}") from e
            finally:
                exchange.close()

        response = StreamingResponse(body(), status_code=event.status_code)
        response.raw_headers = response_headers(list(event.headers))
        handed_over = True
        return response
    finally:
        if not handed_over:
            exchange.close()
