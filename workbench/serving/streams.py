"""Streaming answers: ``predict`` returned a generator (or an async generator), and each item it
yields is sent the moment it is produced.

Items are rendered as ``predict``'s return values are: dict, list and other JSON values as JSON,
``str`` as UTF-8 text, ``bytes`` as they are. A plain stream is chunked: JSON items one per line
(``application/x-ndjson``, as Ollama streams), text and bytes back to back; its media type follows
the first item. A request with ``Accept: text/event-stream`` gets Server-Sent Events instead: one
``data:`` event per item (``bytes`` are taken as a ready-made event and written as they are).

The stream holds the request's concurrency slot until it ends. A client that hangs up ends it at
once: an async generator is cancelled where it waits and closed, a sync generator (stepped in a
worker thread) is closed after the item it is producing; either way its ``finally`` runs and the
slot is free. A generator that raises mid-stream ends an SSE stream with an ``event: error``
carrying the wire's error body, and breaks a plain one off (the server closes the connection
without the chunked terminator), so that a cut answer never passes for a whole one.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from workbench.wire.errors import error_body

from .disconnect import DisconnectWatch
from .limits import Slot
from .logs import describe, log_exception
from .responses import json_bytes
from .runner import Runner

SSE = "text/event-stream"
_END = object()  # what a generator gives after its last item
_LINES = re.compile(r"\r\n|\r|\n")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def is_stream(result: Any) -> bool:
    """Whether `predict` returned something to stream."""
    return inspect.isgenerator(result) or inspect.isasyncgen(result)


def wants_sse(accept: str | None) -> bool:
    return accept is not None and SSE in accept


def media_type(first: Any, sse: bool) -> str:
    if sse:
        return SSE
    if first is _END or isinstance(first, str):
        return "text/plain; charset=utf-8"
    if isinstance(first, bytes | bytearray | memoryview):
        return "application/octet-stream"
    return "application/x-ndjson"


def render(item: Any, sse: bool) -> bytes:
    """One item as it goes on the wire."""
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, str):
        if not sse:
            return item.encode()
        text = item
    else:
        data = json_bytes(item)
        if not sse:
            return data + b"\n"
        text = data.decode()
    return "".join(f"data: {line}\n" for line in _LINES.split(text)).encode() + b"\n"


def error_event(message: str) -> bytes:
    """The SSE event that ends a stream that failed."""
    return b"event: error\ndata: " + error_body(message) + b"\n\n"


class ItemSource:
    """The generator behind a stream: `next` its items (an async generator on the event loop, a
    sync one a step at a time in the runner's worker threads), `close` it once."""

    __slots__ = ("_gen", "_runner", "_step")

    def __init__(self, gen: Iterator[Any] | AsyncIterator[Any], runner: Runner) -> None:
        self._gen = gen
        self._runner = runner
        self._step: asyncio.Future[Any] | None = None

    async def next(self) -> Any:
        """The next item, or _END."""
        gen = self._gen
        if inspect.isasyncgen(gen):
            try:
                return await gen.__anext__()
            except StopAsyncIteration:
                return _END
        assert isinstance(gen, Iterator)
        step = self._step = asyncio.ensure_future(
            self._runner.in_thread(functools.partial(next, gen, _END)))
        return await asyncio.shield(step)  # a thread cannot be stopped: close() waits for it

    async def close(self) -> None:
        """Close the generator (its ``finally`` runs); what that raises is logged."""
        gen = self._gen
        try:
            if inspect.isasyncgen(gen):
                await gen.aclose()
            else:
                step = self._step
                if step is not None and not step.done():
                    await asyncio.wait({step})
                close = getattr(gen, "close", None)
                if close is not None:
                    await self._runner.in_thread(close)
        except Exception as exc:
            log_exception("closing predict's generator failed", exc)


class PredictionStream(Response):
    """The response that streams `source`'s items, `first` (already produced) first; releases
    `slot` when it ends, however it ends."""

    def __init__(self, source: ItemSource, first: Any, sse: bool, slot: Slot) -> None:
        self.source = source
        self.first = first
        self.sse = sse
        self.slot = slot
        self.status_code = 200
        self.background = None
        self.init_headers(_SSE_HEADERS if sse else None)
        self.raw_headers.append((b"content-type", media_type(first, sse).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sse = self.sse
        source = self.source
        watch = DisconnectWatch(receive)
        complete = False
        try:
            try:
                async with asyncio.timeout(None) as waiting:
                    watch.guard(waiting)
                    watch.start()
                    await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                    item = self.first
                    while item is not _END:
                        await send({"type": "http.response.body", "body": render(item, sse),
                                    "more_body": True})
                        item = await source.next()
                complete = True
            except TimeoutError:
                if not watch.gone:
                    raise
                return  # the client hung up: nobody to send the end to
            except Exception as exc:
                log_exception("predict's stream failed", exc)
                if sse:
                    await send({"type": "http.response.body", "body": error_event(describe(exc)),
                                "more_body": False})
                return  # a plain stream is left incomplete: the server closes the connection
            finally:
                watch.stop()
                await source.close()
                self.slot.release()
            if complete:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if self.background is not None:
                await self.background()


class HeldResponse(Response):
    """A response of predict's own (a StreamingResponse) that holds `slot` until it was sent."""

    def __init__(self, inner: Response, slot: Slot) -> None:
        self.inner = inner
        self.slot = slot
        self.status_code = inner.status_code
        self.background = None
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.slot.release()
        if self.background is not None:
            await self.background()
