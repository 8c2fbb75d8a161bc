"""One HTTP client core for every service workbench talks to: the router, the controller, agents.

As httpx does with its ``BaseClient``: everything that is not I/O is written once — a call is a
:class:`Call` (or a :class:`Stream`) that says what to send and how to read the answer; the core
turns an error answer or a failed connection into the wire's error family — and two thin senders
do the I/O, :class:`SyncCore` (httpx.Client) and :class:`AsyncCore` (httpx.AsyncClient).

A typed client is its calls, bound to one sender with :func:`sync_call` / :func:`async_call`
(or the ``*_stream`` variants)::

    class ControlClient(SyncCore):
        apis = sync_call(calls.apis)

    class AsyncControlClient(AsyncCore):
        apis = async_call(calls.apis)
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import httpx

from workbench.wire.errors import ConnectionFailed, Timeout, WorkbenchError, error_from_response

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="SyncCore")
A = TypeVar("A", bound="AsyncCore")

#: "use the client's own timeout" (None means: no timeout at all)
DEFAULT: Any = httpx.USE_CLIENT_DEFAULT
UPLOAD_CHUNK = 1 << 20
#: for streams (progress, logs): connect within this, then wait for lines as long as it takes
STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)


def _response(response: httpx.Response) -> httpx.Response:
    return response


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its (successful) answer."""

    method: str
    path: str
    params: Any = None
    json: Any = None
    content: bytes | None = None
    upload: Path | None = None  # a file sent as the body, in chunks
    upload_offset: int = 0  # where in `upload` the body starts (the rest of a file, resumed)
    #: called with each chunk's size as it is sent (progress of a large upload)
    on_chunk: Callable[[int], None] | None = None
    headers: Mapping[str, str] | None = None
    timeout: Any = DEFAULT
    parse: Callable[[httpx.Response], T] = _response  # type: ignore[assignment]
    #: what the call is about, for the error messages of clients that say more (the router's)
    context: Mapping[str, Any] = field(default_factory=dict)
    #: statuses that are an answer, not an error (e.g. 404 for "does this artifact exist?")
    accept: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Stream(Call[T]):
    """A streamed answer read line by line (NDJSON progress, logs); `parse` is not used."""

    parse_line: Callable[[str], T] = str  # type: ignore[assignment]
    what: str = "stream"  # "deployment", "log" …: named when the stream breaks
    timeout: Any = field(default_factory=lambda: STREAM_TIMEOUT)
    skip_blank: bool = True  # NDJSON: blank lines are keep-alives; logs keep theirs


def quoted(name: str) -> str:
    """A name as one path segment (a '/' or '?' in it cannot reach another route)."""
    from urllib.parse import quote

    return quote(name, safe="")


class _Core:
    """What both senders share: the address, the token, TLS, and the error family."""

    #: the peer, as error messages name it ("the controller", "the agent")
    service = "the server"

    def __init__(self, base_url: str, *, token: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: Any = 30.0,
                 verify: bool | str | Path | ssl.SSLContext = True, trust_env: bool = True) -> None:
        self.base_url = self.url = base_url.rstrip("/")
        self.timeout = timeout
        merged = dict(headers or {})
        if token:
            merged["Authorization"] = f"Bearer {token}"  # never logged: not in repr or messages
        if isinstance(verify, str | Path):
            verify = ssl.create_default_context(cafile=str(verify))
        self._options: dict[str, Any] = {
            "base_url": self.base_url, "headers": merged, "timeout": timeout, "verify": verify,
            "trust_env": trust_env, "follow_redirects": False,
        }

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any], content: Any = None,
               timeout: Any = None) -> httpx.Request:
        return http.build_request(
            call.method, call.path, params=call.params, json=call.json,
            content=content if content is not None else call.content, headers=call.headers,
            timeout=timeout if timeout is not None else call.timeout,
        )

    def check(self, response: httpx.Response, call: Call[Any]) -> httpx.Response:
        """The response when it is an answer; else the error it stands for."""
        if response.status_code < 400 or response.status_code in call.accept:
            return response
        error = error_from_response(response.status_code, response.content, response.headers,
                                    reason=response.reason_phrase)
        error.url, error.response = self.base_url, response
        raise error

    def transport_error(self, exc: httpx.TransportError, call: Call[Any]) -> WorkbenchError:
        """A request that got no answer: nothing listens, a timeout, a broken connection."""
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return Timeout(f"{self.service} at {self.base_url} did not answer in time: {detail}",
                           source="client", url=self.base_url)
        if isinstance(call, Stream):
            return ConnectionFailed(f"the {call.what} stream from {self.base_url} broke: {detail}",
                                    url=self.base_url)
        return ConnectionFailed(f"cannot reach {self.service} at {self.base_url}: {detail}",
                                url=self.base_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class SyncCore(_Core):
    """The blocking sender (CLI, worker threads)."""

    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None,
                 **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.Client(**self._options, transport=transport)

    def run(self, call: Call[T]) -> T:
        content = _upload(call)
        request = self._build(self._http, call, content)
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise self.transport_error(exc, call) from exc
        return call.parse(self.check(response, call))

    def lines(self, call: Stream[T]) -> Iterator[T]:
        content = _upload(call)
        request = self._build(self._http, call, content)
        try:
            response = self._http.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                    self.check(response, call)
                for line in response.iter_lines():
                    if line.strip() or not call.skip_blank:
                        yield call.parse_line(line)
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise self.transport_error(exc, call) from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCore(_Core):
    """The asyncio sender (the controller's event loop, the TUI's adapter)."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.AsyncClient(**self._options, transport=transport)

    async def run(self, call: Call[T]) -> T:
        content = (_file_chunks_async(call.upload, call.upload_offset, call.on_chunk)
                   if call.upload is not None else None)
        request = self._build(self._http, call, content)
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise self.transport_error(exc, call) from exc
        return call.parse(self.check(response, call))

    async def lines(self, call: Stream[T]) -> AsyncIterator[T]:
        content = (_file_chunks_async(call.upload, call.upload_offset, call.on_chunk)
                   if call.upload is not None else None)
        request = self._build(self._http, call, content)
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    self.check(response, call)
                async for line in response.aiter_lines():
                    if line.strip() or not call.skip_blank:
                        yield call.parse_line(line)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise self.transport_error(exc, call) from exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self: A) -> A:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _upload(call: Call[Any] | Stream[Any]) -> Iterator[bytes] | None:
    """The chunks of the call's file upload, if it has one."""
    return _file_chunks(call.upload, call.upload_offset, call.on_chunk) if call.upload is not None else None


def _file_chunks(path: Path, offset: int = 0,
                 on_chunk: Callable[[int], None] | None = None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(offset)
        while block := handle.read(UPLOAD_CHUNK):
            yield block
            if on_chunk is not None:
                on_chunk(len(block))


async def _file_chunks_async(path: Path, offset: int = 0,
                             on_chunk: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(offset)
        while block := await asyncio.to_thread(handle.read, UPLOAD_CHUNK):
            yield block
            if on_chunk is not None:
                on_chunk(len(block))


# -- binding calls to a sender ------------------------------------------------------------------

def sync_call(build: Callable[P, Call[T]]) -> Callable[Concatenate[SyncCore, P], T]:
    """A blocking method that sends the call `build` describes."""

    @functools.wraps(build)
    def method(self: SyncCore, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(build(*args, **kwargs))

    return method


def async_call(build: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncCore, P], Coroutine[Any, Any, T]]:
    """An async method that sends the call `build` describes."""

    @functools.wraps(build)
    async def method(self: AsyncCore, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run(build(*args, **kwargs))

    return method


def sync_stream(build: Callable[P, Stream[T]]) -> Callable[Concatenate[SyncCore, P], Iterator[T]]:
    """A blocking method that yields the lines of the stream `build` describes."""

    @functools.wraps(build)
    def method(self: SyncCore, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self.lines(build(*args, **kwargs))

    return method


def async_stream(build: Callable[P, Stream[T]]) -> Callable[Concatenate[AsyncCore, P], AsyncIterator[T]]:
    """An async method that yields the lines of the stream `build` describes."""

    @functools.wraps(build)
    def method(self: AsyncCore, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self.lines(build(*args, **kwargs))

    return method
