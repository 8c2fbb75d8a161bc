"""The HTTP server: OpenAI's completions and chat completions (JSON, or Server-Sent Events with
`stream: true`), the model list, /health (503 while the model loads) and Prometheus /metrics.

A client that disconnects aborts its generation at once, streaming or not: each request races its
generation against the connection's `http.disconnect`, as vLLM's API server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tinylm import protocol
from tinylm.backend import Backend, choose_device, make_backend
from tinylm.engine import Delta, Engine, Failed, Finished, SamplingParams, Sequence
from tinylm.metrics import Metrics
from tinylm.model import TinyLM
from tinylm.protocol import OpenAIError
from tinylm.settings import Settings

log = logging.getLogger("tinylm")

MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_TOKENS = {"chat": 64, "completion": 16}  # OpenAI's default for /v1/completions is 16
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ROUTES_HINT = ("tinylm serves POST /v1/chat/completions, POST /v1/completions, GET /v1/models, "
               "GET /health and GET /metrics")


class ModelServer:
    """One server's state: it loads the model in the background, then serves through the engine."""

    def __init__(self, settings: Settings, on_fatal: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.engine: Engine | None = None
        self.fingerprint = "fp_unloaded"
        self.device = "loading"
        self.created = int(time.time())
        self._started = time.monotonic()
        self._on_fatal = on_fatal

    async def load(self) -> None:
        settings = self.settings
        try:
            if settings.load_delay > 0:
                await self._simulated_load(settings.load_delay)
            model, backend = await asyncio.to_thread(self._load_model)
        except Exception as error:
            message = f"could not load the model: {error}"
            log.error("%s", message)
            if self._on_fatal is not None:
                self._on_fatal(message)
            return
        self.engine = Engine(model, backend, self.metrics, max_concurrency=settings.max_concurrency,
                             token_delay=settings.token_delay)
        self.engine.start()
        self.device = backend.device
        self.metrics.model_loaded.set(1)
        log.info("ready in %.1f s: model %r on %s; %d at once, a token every %.3f s",
                 time.monotonic() - self._started, settings.model_name, backend.description,
                 settings.max_concurrency, settings.token_delay)

    async def _simulated_load(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            log.info("loading: %.0f s of %.0f s (TINYLM_LOAD_DELAY)", seconds - left, seconds)
            await asyncio.sleep(min(1.0, left))

    def _load_model(self) -> tuple[TinyLM, Backend]:
        path = self.settings.model_path
        if not path.is_file():
            if not self.settings.train_if_missing:
                raise FileNotFoundError(f"{path} does not exist: train it with `python -m tinylm.train "
                                        f"--out {path}` or leave out --no-train")
            self._train(path)
        log.info("loading %s", path)
        model = TinyLM.load(path)
        self.fingerprint = "fp_" + hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        choice = choose_device(self.settings.device)
        backend = make_backend(model, choice)
        backend.logits(np.array([model.context_of([])]))  # warm up, fail here if broken
        log.info("model: %d parameters, %d-character vocabulary, context %d, held-out loss %s nats/char",
                 model.parameter_count, len(model.vocab), model.shape.context,
                 model.info.get("held_out_loss", "?"))
        return model, backend

    @staticmethod
    def _train(path: Path) -> None:
        from tinylm.corpus import book_text
        from tinylm.train import train

        log.info("no model at %s: training one on the bundled book (seconds)", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        train(book_text()).save(path)

    def ready_engine(self) -> Engine:
        if self.engine is None:
            waited = time.monotonic() - self._started
            raise OpenAIError(503, f"The model is loading ({waited:.0f} s so far); retry once GET /health "
                              "answers 200.", type="server_error", code="model_loading",
                              headers={"Retry-After": "1"})
        return self.engine

    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise OpenAIError(400, f"The model `{name}` does not exist; this server serves "
                              f"`{self.settings.model_name}`.", param="model", code="model_not_found")

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.stop()


class EventStreamResponse(StreamingResponse):
    """Server-Sent Events, one `send` per event. It watches the connection while it streams: on
    `http.disconnect` the event generator is closed at once (its `finally` aborts the generation)
    instead of at the next failed write."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], on_close: Callable[[], object],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                          **(headers or {})})
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self._stream(send))
        disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, disconnected):
                task.cancel()
            outcomes = await asyncio.gather(streaming, disconnected, return_exceptions=True)
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                await aclose()
            self._on_close()
        failure = outcomes[0]
        if isinstance(failure, Exception):
            raise failure

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for event in self._events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection went away between two events
            return


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return bytes(body)


def _too_large() -> OpenAIError:
    return OpenAIError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.", code="body_too_large")


def _request_id(request: Request, prefix: str) -> str:
    given = request.headers.get("x-request-id", "")
    return f"{prefix}-{given if _REQUEST_ID.match(given) else uuid.uuid4().hex}"


async def _collect(request: Request, engine: Engine, sequence: Sequence) -> tuple[str, Finished] | None:
    """The whole generated text, or None when the client disconnected first (generation aborted)."""

    async def drain() -> tuple[str, Finished]:
        parts: list[str] = []
        while True:
            event = await sequence.events.get()
            if isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Finished):
                return "".join(parts), event
            else:
                raise OpenAIError(500, event.message, type="server_error", code="generation_failed")

    drained = asyncio.ensure_future(drain())
    disconnected = asyncio.ensure_future(_wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({drained, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        return drained.result() if drained.done() else None
    finally:
        for task in (drained, disconnected):
            task.cancel()
        await asyncio.gather(drained, disconnected, return_exceptions=True)
        engine.release(sequence)


def create_app(settings: Settings, on_fatal: Callable[[str], None] | None = None) -> Starlette:
    server = ModelServer(settings, on_fatal)

    def sampling(body: protocol.ChatCompletionRequest | protocol.CompletionRequest,
                 kind: str) -> SamplingParams:
        return SamplingParams(max_tokens=body.token_budget(DEFAULT_MAX_TOKENS[kind]),
                              temperature=body.temperature, top_p=body.top_p, stop=body.stop_strings(),
                              seed=body.seed)

    async def chat_completions(request: Request) -> Response:
        engine = server.ready_engine()
        body = protocol.parse_body(await _read_body(request), protocol.ChatCompletionRequest)
        server.check_model(body.model)
        request_id = _request_id(request, "chatcmpl")
        sequence = engine.submit(request_id, body.prompt(), sampling(body, "chat"))
        common: dict[str, Any] = {"id": request_id, "created": int(time.time()), "model": settings.model_name,
                                  "fingerprint": server.fingerprint}
        headers = {"X-Request-Id": request_id}
        if body.stream:
            return EventStreamResponse(_chat_events(engine, sequence, common, body.include_usage()),
                                       on_close=lambda: engine.release(sequence), headers=headers)
        result = await _collect(request, engine, sequence)
        if result is None:
            return Response(status_code=499)  # the client is gone; nobody reads this
        text, finished = result
        return JSONResponse(protocol.chat_completion(
            **common, text=text, finish_reason=finished.reason, prompt_tokens=sequence.prompt_tokens,
            completion_tokens=finished.completion_tokens), headers=headers)

    async def completions(request: Request) -> Response:
        engine = server.ready_engine()
        body = protocol.parse_body(await _read_body(request), protocol.CompletionRequest)
        server.check_model(body.model)
        request_id = _request_id(request, "cmpl")
        prompt = body.prompt_text()
        sequence = engine.submit(request_id, prompt, sampling(body, "completion"))
        common: dict[str, Any] = {"id": request_id, "created": int(time.time()), "model": settings.model_name,
                                  "fingerprint": server.fingerprint}
        headers = {"X-Request-Id": request_id}
        echoed = prompt if body.echo else ""
        if body.stream:
            return EventStreamResponse(_text_events(engine, sequence, common, body.include_usage(), echoed),
                                       on_close=lambda: engine.release(sequence), headers=headers)
        result = await _collect(request, engine, sequence)
        if result is None:
            return Response(status_code=499)
        text, finished = result
        return JSONResponse(protocol.text_completion(
            **common, text=echoed + text, finish_reason=finished.reason, prompt_tokens=sequence.prompt_tokens,
            completion_tokens=finished.completion_tokens), headers=headers)

    async def models(request: Request) -> Response:
        card = protocol.model_card(settings.model_name, server.created)
        return JSONResponse({"object": "list", "data": [card]})

    async def model(request: Request) -> Response:
        name = request.path_params["name"]
        if name != settings.model_name:
            raise OpenAIError(404, f"The model `{name}` does not exist; this server serves "
                              f"`{settings.model_name}`.", param="model", code="model_not_found")
        return JSONResponse(protocol.model_card(name, server.created))

    async def health(request: Request) -> Response:
        if server.engine is None:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ok", "model": settings.model_name, "device": server.device})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openai_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, OpenAIError)
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            message = f"Unknown route {request.method} {request.url.path}: {ROUTES_HINT}."
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}: {ROUTES_HINT}."
        else:
            message = str(error.detail)
        return JSONResponse(OpenAIError(error.status_code, message, code=None).body(),
                            status_code=error.status_code, headers=error.headers)

    async def server_error(request: Request, error: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse(OpenAIError(500, f"Internal error: {type(error).__name__}: {error}",
                                        type="server_error").body(), status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(server.load(), name="tinylm-load")
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await server.close()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{name:path}", model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={OpenAIError: openai_error, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.server = server
    return app


async def _chat_events(engine: Engine, sequence: Sequence, common: dict[str, Any],
                       include_usage: bool) -> AsyncIterator[bytes]:
    try:
        yield protocol.sse(protocol.chat_chunk(**common, delta={"role": "assistant", "content": ""},
                                               with_usage=include_usage))
        while True:
            event = await sequence.events.get()
            if isinstance(event, Delta):
                yield protocol.sse(protocol.chat_chunk(**common, delta={"content": event.text},
                                                       with_usage=include_usage))
            elif isinstance(event, Finished):
                yield protocol.sse(protocol.chat_chunk(**common, delta={}, finish_reason=event.reason,
                                                       with_usage=include_usage))
                if include_usage:
                    yield protocol.sse(protocol.chat_chunk(
                        **common, delta=None, with_usage=True,
                        usage=protocol.usage(sequence.prompt_tokens, event.completion_tokens)))
                yield protocol.sse("[DONE]")
                return
            else:
                yield _stream_error(event)
                return
    finally:
        engine.release(sequence)


async def _text_events(engine: Engine, sequence: Sequence, common: dict[str, Any], include_usage: bool,
                       echoed: str) -> AsyncIterator[bytes]:
    try:
        if echoed:
            yield protocol.sse(protocol.text_chunk(**common, text=echoed, with_usage=include_usage))
        while True:
            event = await sequence.events.get()
            if isinstance(event, Delta):
                yield protocol.sse(protocol.text_chunk(**common, text=event.text, with_usage=include_usage))
            elif isinstance(event, Finished):
                yield protocol.sse(protocol.text_chunk(**common, text="", finish_reason=event.reason,
                                                       with_usage=include_usage))
                if include_usage:
                    yield protocol.sse(protocol.text_chunk(
                        **common, text=None, with_usage=True,
                        usage=protocol.usage(sequence.prompt_tokens, event.completion_tokens)))
                yield protocol.sse("[DONE]")
                return
            else:
                yield _stream_error(event)
                return
    finally:
        engine.release(sequence)


def _stream_error(event: Failed) -> bytes:
    error = OpenAIError(500, event.message, type="server_error", code="generation_failed")
    return protocol.sse(error.body()) + protocol.sse("[DONE]")
