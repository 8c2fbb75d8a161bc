"""Talking to replicas: request bodies (kept for replay when small, streamed when large), the
pooled keep-alive upstream connections (aiohttp's client: measured 3-5x less overhead per
request than httpx/httpcore on this path), and relaying responses to the client."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from enum import Enum
from functools import lru_cache

import aiohttp
from yarl import URL

from workbench.wire.errors import ConnectionFailed, TooLarge, error_body
from workbench.wire.sizes import size_text

from .asgi import Receive, Send
from .pool import EndpointState
from .watch import ExchangeWatch

REPLAY_LIMIT = 1024 * 1024  # bodies up to this size are kept, so a failed attempt can be replayed
CONNECT_TIMEOUT = 3.0

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
# response headers the router sets itself (uvicorn adds date/server)
_OWN_RESPONSE_HEADERS = HOP_BY_HOP | {b"date", b"server", b"x-request-id", b"x-workbench-replica"}

#: what talking to a replica can raise (workbench/router/forward.py tells the kinds apart)
UPSTREAM_ERRORS = (aiohttp.ClientError, OSError)


class ClientGone(ConnectionFailed):
    """The client hung up before its request body was read (nobody to answer: counted as 499)."""

    def __init__(self) -> None:
        super().__init__("the client hung up before its request body was read")


def body_too_large(limit: int) -> TooLarge:
    return TooLarge(too_large_text(limit))


def too_large_text(limit: int) -> str:
    """A 413's words: the limit, and the setting that raises it."""
    return f"request body over {size_text(limit)}: the API's serving.max_body_bytes in workbench.yaml"


class StreamedBody:
    """A request body too large to keep: what was read so far, then the rest as it comes.
    `started` tells whether any of it was handed to an upstream connection (then it cannot
    be replayed), `finished` whether all of it was (then the client side is free to watch)."""

    __slots__ = ("_prefix", "_receive", "failure", "finished", "limit", "size", "started")

    def __init__(self, prefix: list[bytes], size: int, receive: Receive, limit: int) -> None:
        self._prefix = prefix
        self._receive = receive
        self.size = size
        self.limit = limit
        self.started = False
        self.finished = False
        self.failure: Exception | None = None  # why the client side broke off (the client
        # library may wrap what the iterator raised)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        prefix, self._prefix = self._prefix, []
        for chunk in prefix:
            yield chunk
        receive = self._receive
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.failure = ClientGone()
                raise self.failure
            chunk = message.get("body", b"")
            if chunk:
                self.size += len(chunk)
                if self.size > self.limit:
                    self.failure = body_too_large(self.limit)
                    raise self.failure
                yield chunk
            if not message.get("more_body", False):
                self.finished = True
                return


async def read_body(receive: Receive, limit: int) -> bytes | StreamedBody:
    """The request body: bytes when it ends within REPLAY_LIMIT, else a StreamedBody.
    Raises TooLarge past `limit`, ClientGone when the client hung up."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if size > REPLAY_LIMIT:
            return StreamedBody(chunks, size, receive, limit)


class Upstream:
    """Pooled keep-alive HTTP/1.1 connections to every replica."""

    def __init__(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, keepalive_timeout=30.0,  # replicas keep idle connections 65 s
            ttl_dns_cache=None, use_dns_cache=True,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            trust_env=False,
            raise_for_status=False,
        )

    async def close(self) -> None:
        await self.session.close()

    async def open(
        self,
        state: EndpointState,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        content: bytes | StreamedBody | None,
    ) -> aiohttp.ClientResponse:
        """Send the request; returns once the response headers arrived (body not read)."""
        endpoint = state.endpoint
        if endpoint.headers or endpoint.ca_cert:  # a direct-mode host: off the common path
            return await self.session.request(
                method,
                URL(state.url + target, encoded=True),
                headers=with_endpoint_headers(headers, endpoint.headers),
                data=content,
                allow_redirects=False,
                compress=None,
                chunked=None,
                ssl=tls_context(endpoint.ca_cert) if endpoint.ca_cert else True,
            )
        return await self.session.request(
            method,
            URL(state.url + target, encoded=True),
            headers=headers,
            data=content,
            allow_redirects=False,
            compress=None,
            chunked=None,
        )


def with_endpoint_headers(
    headers: list[tuple[str, str]], extra: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    """The request's headers with the endpoint's own replacing any of the same name."""
    if not extra:
        return headers
    names = {name.lower() for name, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + list(extra)


@lru_cache(maxsize=64)
def tls_context(ca_cert: str) -> ssl.SSLContext:
    """Verifies a direct-mode agent's certificate against its own CA file (cached per file)."""
    return ssl.create_default_context(cafile=ca_cert)


def response_headers(
    upstream: tuple[tuple[bytes, bytes], ...], request_id: bytes, replica: bytes
) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", request_id), (b"x-workbench-replica", replica)]
    for name, value in upstream:
        name = name.lower()
        if name not in _OWN_RESPONSE_HEADERS:
            headers.append((name, value))
    return headers


async def send_buffered(
    send: Send, status: int, upstream: tuple[tuple[bytes, bytes], ...], body: bytes, request_id: bytes,
    replica: bytes,
) -> None:
    """Pass on an answer whose body was read already (a replica's 503) as one message."""
    headers = [(k, v) for k, v in response_headers(upstream, request_id, replica) if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_all(response: aiohttp.ClientResponse, limit: int = 65536) -> bytes:
    """A small response body (an error answer), at most `limit` bytes kept."""
    try:
        data = await response.content.read(limit) if limit else b""
        while await response.content.readany():
            pass
        return data
    finally:
        response.release()


class Relayed(Enum):
    """How relaying an answer's body ended."""

    COMPLETE = "complete"
    BROKEN = "broken"  # the replica broke off mid-body
    STALLED = "stalled"  # no chunk within routing.stream_idle_timeout: the stream was ended
    CLIENT_LEFT = "client_left"  # the client hung up: the upstream connection was closed


_SSE = b"text/event-stream"


async def relay_body(response: aiohttp.ClientResponse, send: Send, watch: ExchangeWatch,
                     idle_timeout: float) -> Relayed:
    """Pass the response body on, every chunk the moment it arrives.

    A body that came whole with the headers (a small fixed-length answer) goes as one message.
    Anything longer is a stream: `watch` then watches the client (the upstream connection is
    closed the moment it leaves, which a model server takes as the end of the generation) and the
    gaps between chunks (after `idle_timeout` s without one the stream ends: an SSE answer with an
    ``event: error`` carrying the wire's error body, any other answer broken off, so that a cut
    answer never passes for a whole one)."""
    content = response.content
    try:
        data = content.read_nowait(-1)  # what came with the headers
    except UPSTREAM_ERRORS:
        response.close()
        return Relayed.BROKEN
    if content.at_eof():
        response.release()
        await send({"type": "http.response.body", "body": data, "more_body": False})
        return Relayed.COMPLETE

    clock = asyncio.get_running_loop().time
    try:
        async with asyncio.timeout(None) as scope:
            watch.enter(scope)
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            watch.watch_client()
            watch.watch_idle(idle_timeout)
            while True:
                watch.moved = clock()
                data = await content.readany()
                if not data:
                    break
                end = content.at_eof()
                watch.sending = True  # a client slow to read is not the replica stalling
                await send({"type": "http.response.body", "body": data, "more_body": not end})
                watch.sending = False
                if end:
                    watch.leave()
                    response.release()
                    return Relayed.COMPLETE
    except TimeoutError:
        response.close()  # never back to the pool: the replica sees the connection close
        if watch.gone:
            return Relayed.CLIENT_LEFT
        if not watch.stalled:
            raise
        if _SSE in response.headers.get("content-type", "").encode("latin-1", "replace"):
            message = (f"no data from the replica for {idle_timeout:g}s "
                       "(routing.stream_idle_timeout); the stream was ended")
            await send({"type": "http.response.body", "more_body": False,
                        "body": b"event: error\ndata: " + error_body(message) + b"\n\n"})
        return Relayed.STALLED
    except UPSTREAM_ERRORS:
        response.close()
        return Relayed.BROKEN
    finally:
        watch.leave()
    response.release()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return Relayed.COMPLETE
