"""A real HTTP/1.1 server on loopback that answers as told: the upstream end of the forwarding
and shadow tests, where one replica must refuse, reset, hang or say "queue full" on cue.

An ASGI client side for those tests too: `receive` that hands over a body, `Sent` that keeps what
the router sends back.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from workbench.router.asgi import Message

ANSWER = "answer"  # 200 with a small JSON body
QUEUE_FULL = "queue_full"  # 503 {"error": "queue full"}
UNAVAILABLE = "unavailable"  # 503 {"error": "broken"}
ERROR = "error"  # 500
RESET = "reset"  # read the request, then close the connection without a word
HANG = "hang"  # read the request (and whatever follows), answer nothing


@dataclass
class Seen:
    """One request as the server read it."""

    head: bytes
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}

    @property
    def request_line(self) -> str:
        return self.head.decode("latin-1").split("\r\n", 1)[0]


@dataclass
class ScriptedReplica:
    url: str
    behaviour: str
    seen: list[Seen] = field(default_factory=list)


def _answer(status: int, reason: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\nx-from: scripted\r\n\r\n").encode() + data


@asynccontextmanager
async def scripted(behaviour: str) -> AsyncIterator[ScriptedReplica]:
    """A server on 127.0.0.1 that answers every request by `behaviour`."""
    replica = ScriptedReplica("", behaviour)
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen = Seen(head[:-4], b"")
                length = int(seen.headers.get("content-length", "0"))
                seen.body = await reader.readexactly(length) if length else b""
                replica.seen.append(seen)
                if behaviour == RESET:
                    return
                if behaviour == HANG:  # keep reading whatever comes (a streamed body), answer nothing
                    while await reader.read(65536):
                        pass
                    return
                if behaviour == QUEUE_FULL:
                    writer.write(_answer(503, "Service Unavailable", {"error": "queue full"}))
                elif behaviour == UNAVAILABLE:
                    writer.write(_answer(503, "Service Unavailable", {"error": "broken"}))
                elif behaviour == ERROR:
                    writer.write(_answer(500, "Internal Server Error", {"error": "flaky"}))
                else:
                    writer.write(_answer(200, "OK", {"n": len(replica.seen)}))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    replica.url = f"http://127.0.0.1:{port}"
    try:
        yield replica
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        await server.wait_closed()


def refused_url() -> str:
    """An address where nothing listens (a port bound and closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def body_receive(*chunks: bytes, disconnect: bool = False) -> Any:
    """An ASGI `receive` that hands over `chunks` as the request body (then, if `disconnect`, the
    client hangs up instead of ending it)."""
    messages: list[Message] = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    else:
        messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # nothing more: as a client that waits for its answer
        raise AssertionError("unreachable")

    return receive


class Sent:
    """An ASGI `send` that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return dict(starts[0]["headers"]) if starts else {}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    def json(self) -> Any:
        return json.loads(self.body)
