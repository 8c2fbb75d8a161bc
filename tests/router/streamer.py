"""A real HTTP/1.1 server on loopback that streams a chunked answer on cue: the upstream end of
the relay tests, where the test decides when each chunk leaves, and sees when the router closed
the connection.

And an ASGI client side whose messages can be awaited one by one, and whose client hangs up on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from workbench.router.asgi import Message

END = b""  # push() this to end the answer (the chunked terminator)


@dataclass
class Streamer:
    url: str = ""
    content_type: str = "text/event-stream"
    requests: int = 0
    chunks: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # the router closed the connection
    headers_sent: asyncio.Event = field(default_factory=asyncio.Event)
    hold_headers: bool = False  # answer nothing until the first push

    def push(self, chunk: bytes) -> None:
        self.chunks.put_nowait(chunk)


@asynccontextmanager
async def streamer(content_type: str = "text/event-stream", hold_headers: bool = False
                   ) -> AsyncIterator[Streamer]:
    """Answers one request at a time: headers at once (or at the first push when `hold_headers`),
    then each pushed chunk as one chunk of a chunked body, END to finish."""
    server_state = Streamer(content_type=content_type, hold_headers=hold_headers)
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        closed: asyncio.Task[None] | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            server_state.requests += 1
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            closed = asyncio.get_running_loop().create_task(_wait_closed(reader))
            first: bytes | None = None
            if server_state.hold_headers:
                first = await _next_or_closed(server_state.chunks, closed)
                if first is None:
                    return
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: {server_state.content_type}\r\n"
                         "transfer-encoding: chunked\r\n\r\n".encode())
            await writer.drain()
            server_state.headers_sent.set()
            while True:
                chunk = first if first is not None else await _next_or_closed(server_state.chunks, closed)
                first = None
                if chunk is None:
                    return
                if chunk == END:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    await closed  # keep-alive: until the router lets go of the connection
                    return
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if closed is not None:
                if closed.done() and not closed.cancelled():
                    server_state.closed.set()
                closed.cancel()
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    server_state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield server_state
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        await server.wait_closed()


async def _wait_closed(reader: asyncio.StreamReader) -> None:
    """Returns when the peer closed the connection (whatever it sends meanwhile is dropped)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


async def _next_or_closed(chunks: asyncio.Queue[bytes], closed: asyncio.Task[None]) -> bytes | None:
    """The next pushed chunk, or None once the router closed the connection."""
    getter = asyncio.ensure_future(chunks.get())
    done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    return None


class Client:
    """The client side of one request at ASGI level: `receive` hands over an empty body, then
    waits until `leave()` (the client hangs up); `next()` awaits what the router sent."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[Message] = asyncio.Queue()
        self.messages: list[Message] = []
        self._gone = asyncio.Event()
        self._body_given = False

    async def receive(self) -> Message:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        self.sent.put_nowait(message)

    def leave(self) -> None:
        self._gone.set()

    async def next(self, timeout: float = 10.0) -> Message:
        async with asyncio.timeout(timeout):
            return await self.sent.get()
