"""The replica's ASGI app: ``POST /`` predict, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from workbench.wire.errors import status_of
from workbench.wire.replica import RuntimeConfig

from .batching import Batcher
from .disconnect import DisconnectWatch
from .limits import Limiter, QueueFull, Slot
from .loader import load_predictor
from .logs import describe, log, log_exception
from .metrics import CONTENT_TYPE, Metrics
from .payload import PayloadError, parse_payload, read_body
from .predictor import PredictorHandle
from .responses import error_response, http_exception_response, json_response, to_response
from .runner import Runner
from .streams import HeldResponse, ItemSource, PredictionStream, is_stream, wants_sse

LOADING, READY, DRAINING, FAILED = "loading", "ready", "draining", "failed"
RETRY = {"Retry-After": "1"}

Loader = Callable[[RuntimeConfig], PredictorHandle]


class PredictorRuntime:
    """One replica's serving state: the predictor (once loaded), limits, batching, metrics.

    `on_fatal` is called (on the event loop) when the predictor fails to load.
    """

    def __init__(
        self,
        cfg: RuntimeConfig,
        *,
        loader: Loader = load_predictor,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.serving = s = cfg.serving
        self.state = LOADING
        self.error: str | None = None
        self.handle: PredictorHandle | None = None
        self._loader = loader
        self._on_fatal = on_fatal
        self._load_task: asyncio.Task[None] | None = None
        self.limiter = Limiter(s.max_concurrency, s.max_queue)
        self.runner = Runner(s.max_concurrency)
        self.batcher: Batcher | None = None
        if s.max_batch_size > 1:
            self.batcher = Batcher(
                self._predict_batch,
                max_batch_size=s.max_batch_size,
                batch_timeout=s.batch_timeout,
                max_concurrency=s.max_concurrency,
                max_queue=s.max_queue,
                on_batch=self._observe_batch,
            )
        self.metrics = Metrics(self.in_flight, self.queue_depth, s.max_batch_size)

    # -- state ---------------------------------------------------------------------------

    def in_flight(self) -> float:
        return self.batcher.running if self.batcher else self.limiter.running

    def queue_depth(self) -> float:
        return self.batcher.waiting if self.batcher else self.limiter.waiting

    def begin_drain(self) -> None:
        """Stop reporting ready (the server stops accepting connections meanwhile)."""
        if self.state != FAILED:
            self.state = DRAINING

    def start(self) -> None:
        """Start loading the predictor in a worker thread; returns at once."""
        if self._load_task is None:
            self._load_task = asyncio.get_running_loop().create_task(self._load())

    async def stop(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            await self.batcher.close()

    async def _load(self) -> None:
        started = time.monotonic()
        limit = self.serving.startup_timeout
        timeout = asyncio.timeout(limit)
        try:
            try:
                async with timeout:
                    handle = await anyio.to_thread.run_sync(self._loader, self.cfg, abandon_on_cancel=True)
            except TimeoutError as exc:
                if not timeout.expired():
                    raise
                raise TimeoutError(f"not loaded within startup_timeout ({limit:g}s)") from exc
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.state = FAILED
            self.error = describe(exc)
            log_exception("predictor failed to load", exc, tagged=False)
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return
        self.handle = handle
        if self.state == LOADING:
            self.state = READY
        log(f"predictor ready (loaded in {time.monotonic() - started:.2f}s)")

    # -- endpoints -----------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self._predict(request)
        except Exception as exc:  # a bug of ours: answer, log, keep serving
            log_exception("internal error", exc)
            response = error_response(500, f"internal error: {describe(exc)}")
        self.metrics.observe(response.status_code, time.perf_counter() - started)
        return response

    async def _predict(self, request: Request) -> Response:
        handle = self.handle
        if handle is None:
            return error_response(503, f"predictor not ready ({self.state})", RETRY)
        serving = self.serving
        try:
            body = await read_body(request, serving.max_body_bytes)
            payload = await parse_payload(request, body, serving.max_body_bytes)
        except PayloadError as exc:
            return error_response(status_of(exc), exc.message)
        query_params = dict(request.query_params) if handle.wants_query_params else None
        headers = dict(request.headers) if handle.wants_headers else None
        timeout = asyncio.timeout(serving.request_timeout)
        watch = DisconnectWatch(request.receive)  # a client that leaves cancels the prediction
        slot: Slot | None = None  # held by a stream (or predict's StreamingResponse) once it `kept` it
        try:
            try:
                async with timeout:
                    watch.guard(timeout)
                    watch.start_later()
                    if self.batcher is not None:
                        result = await self.batcher.submit(payload, query_params, headers)
                        response = to_response(result)
                    else:
                        await self.limiter.acquire()
                        slot = Slot(self.limiter)
                        result = await self._call(handle, payload, query_params, headers, slot)
                        if is_stream(result):
                            response = await self._stream(result, request, slot)
                            slot = None  # the stream releases it
                        else:
                            response = to_response(result)
                            if slot.kept:  # predict's own StreamingResponse
                                response, slot = HeldResponse(response, slot), None
            finally:
                watch.stop()
                if slot is not None and slot.kept:  # kept for a stream that never started
                    slot.release()
        except QueueFull as exc:
            return error_response(503, str(exc), RETRY)
        except TimeoutError as exc:
            if watch.gone:
                return error_response(499, "the client hung up")
            if timeout.expired():
                return error_response(504, f"request timed out after {serving.request_timeout:g}s")
            return _user_error(exc)
        except HTTPException as exc:
            return http_exception_response(exc)
        except Exception as exc:
            return _user_error(exc)
        if handle.has_post_predict:
            post = BackgroundTask(self._post_predict, handle, result, payload, query_params, headers)
            if response.background is not None:
                first = response.background
                response.background = BackgroundTask(_in_order, first, post)
            else:
                response.background = post
        elif isinstance(payload, FormData):
            await payload.close()
        return response

    async def _call(self, handle: PredictorHandle, payload: Any, query_params: Any, headers: Any,
                    slot: Slot) -> Any:
        """Call predict with `slot` held; a result that streams keeps it (see Slot)."""
        call = handle.bind_predict(payload, query_params, headers)
        if handle.predict_is_generator:
            slot.keep()
            return call()  # makes the generator; its code runs as it is iterated
        if handle.predict_is_async:
            async def run() -> Any:
                result = await call()
                if is_stream(result) or isinstance(result, StreamingResponse):
                    slot.keep()
                return result

            return await self.runner.call(run, True, slot.call_done)

        def run_sync() -> Any:
            result = call()
            if is_stream(result) or isinstance(result, StreamingResponse):
                slot.keep()
            return result

        return await self.runner.call(run_sync, False, slot.call_done)

    async def _stream(self, gen: Any, request: Request, slot: Slot) -> Response:
        """The stream of `gen`'s items. Its first item is taken here, within request_timeout, so
        that what fails before it is an error answer rather than a broken stream."""
        source = ItemSource(gen, self.runner)
        try:
            first = await source.next()
        except BaseException:
            await source.close()
            raise
        return PredictionStream(source, first, wants_sse(request.headers.get("accept")), slot)

    async def _post_predict(
        self, handle: PredictorHandle, result: Any, payload: Any, query_params: Any, headers: Any
    ) -> None:
        try:
            call = handle.bind_post_predict(result, payload, query_params, headers)
            if handle.post_is_async:
                await call()
            else:
                await anyio.to_thread.run_sync(call)
        except Exception as exc:
            log_exception("post_predict failed", exc)
        finally:
            if isinstance(payload, FormData):
                await payload.close()

    async def _predict_batch(
        self,
        payloads: list[Any],
        query_params: list[Any],
        headers: list[Any],
        done: Callable[[], None],
    ) -> Any:
        handle = self.handle
        assert handle is not None
        return await self.runner.call(
            handle.bind_predict(payloads, query_params, headers), handle.predict_is_async, done
        )

    def _observe_batch(self, size: int) -> None:
        self.metrics.observe_batch(size)

    async def readyz(self, request: Request) -> Response:
        if self.state == READY:
            return json_response(200, {"ready": True, "state": READY})
        body: dict[str, Any] = {"ready": False, "state": self.state}
        if self.error:
            body["error"] = self.error
        return json_response(503, body)

    async def healthz(self, request: Request) -> Response:
        return json_response(200, {"ok": True})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


def _user_error(exc: BaseException) -> Response:
    """500 ``{"error": "ExcType: message"}``; the traceback goes to the log (once)."""
    if not getattr(exc, "_workbench_logged", False):
        log_exception("predict failed", exc)
        with contextlib.suppress(AttributeError):
            exc._workbench_logged = True  # type: ignore[attr-defined]
    return error_response(500, describe(exc))


async def _in_order(first: BackgroundTask, second: BackgroundTask) -> None:
    await first()
    await second()


def create_app(
    cfg: RuntimeConfig,
    *,
    loader: Loader = load_predictor,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The app for one replica; the predictor starts loading when the app starts up.

    The PredictorRuntime is ``app.state.runtime``.
    """
    runtime = PredictorRuntime(cfg, loader=loader, on_fatal=on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=f"workbench predictor: {cfg.api}",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # plain Starlette routes: no dependency injection or validation on the hot path
    app.add_route("/", runtime.predict, methods=["POST"], include_in_schema=False)
    app.add_route("/healthz", runtime.healthz, methods=["GET"], include_in_schema=False)
    app.add_route("/readyz", runtime.readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", runtime.metrics_endpoint, methods=["GET"], include_in_schema=False)
    return app
