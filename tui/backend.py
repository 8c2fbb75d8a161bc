"""The TUI's one door to the world: the async control client (and, for test predictions, the
public router client) running on an event loop of their own, in a background thread.

The screens never do I/O. Their workers call this adapter: thread workers through the blocking
methods (which wait on the backend loop, so parsing a large fleet's answer never runs on the UI
loop), the log screen through :meth:`Backend.follow_logs`, an async iterator on the UI loop whose
cancellation closes the stream at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from workbench.client import AsyncClient
from workbench.clients.control import AsyncControlClient
from workbench.wire.agent import GpuReport
from workbench.wire.control import (
    AddHostRequest,
    ApiDetail,
    ApiSummary,
    CostReport,
    DeletedBody,
    DeployEvent,
    DeployRequest,
    HostBody,
    HostEvent,
    RemovedHostBody,
    ScaleRequest,
)
from workbench.wire.errors import ConnectionFailed, NotFound, WorkbenchError

__all__ = ["Backend", "PollResult", "PredictResult", "WorkbenchError"]

FIRST_HISTORY_S = 120.0  # GPU history fetched for a host the first time it is polled
PREDICT_TIMEOUT_S = 60.0
COST_EVERY_S = 10.0  # the cost report (spend per host and API) is read this often, not every poll
COST_WINDOW = "7d"  # what the spend columns add up
ACTION_GRACE_S = 120.0  # how long closing waits for an action under way (a host removal)
T = TypeVar("T")
_END = object()


@dataclass
class PollResult:
    """One refresh: everything the screens show, fetched in one worker run."""

    at: float
    hosts: list[HostBody] = field(default_factory=list)
    apis: list[ApiSummary] = field(default_factory=list)
    gpus: dict[str, GpuReport] = field(default_factory=dict)  # by host name, when the endpoint exists
    detail: ApiDetail | None = None
    gpu_errors: dict[str, str] = field(default_factory=dict)
    cost: CostReport | None = None  # the latest cost report (read every COST_EVERY_S)


@dataclass
class PredictResult:
    status: int | None
    body: str
    latency_ms: float
    error: str | None = None


class Backend:
    """The controller at `url`, reached through clients that live on the backend's own loop."""

    def __init__(self, url: str, token: str, *, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self._closing = False
        self._cost: CostReport | None = None  # touched on the backend loop only
        self._cost_at = 0.0
        self._pending: set[concurrent.futures.Future[Any]] = set()  # calls the workers wait for
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tui-backend", daemon=True)
        self._thread.start()

        async def make() -> tuple[AsyncControlClient, AsyncClient]:
            return (AsyncControlClient(self.url, token, timeout=timeout),
                    AsyncClient(self.url, timeout=PREDICT_TIMEOUT_S))

        self.client, self._router = self._wait(make())

    def close(self, wait: float = ACTION_GRACE_S) -> None:
        """Let the calls under way finish (an action the user started completes, as a removal
        or a deploy would with the CLI), then close the clients and the loop."""
        if self._closing:
            return
        self._closing = True
        if self._pending:
            concurrent.futures.wait(list(self._pending), timeout=wait)
        with contextlib.suppress(Exception):
            self._wait(self._close_clients(), timeout=5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self._loop.close()

    async def _close_clients(self) -> None:
        await self.client.aclose()
        await self._router.aclose()

    def _wait(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `work` on the backend loop; block the calling (worker) thread until it is done."""
        if self._closing and not self._loop.is_running():
            work.close()
            raise ConnectionFailed("the terminal UI is closing")
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future.result(timeout)

    def _iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """A stream of the backend loop, read from a worker thread."""
        items: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in stream:
                    items.put(item)
            except BaseException as error:  # handed to the reader, cancellation included
                items.put(error)
            finally:
                items.put(_END)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()

    # -- polling --------------------------------------------------------------------------------
    def poll(self, detail_of: str | None = None, gpu_history: bool = True,
             gpu_since: Mapping[str, float] | None = None) -> PollResult:
        """Hosts, APIs, the watched API's detail and each ready GPU host's report. GPU history:
        the samples after `gpu_since[host]`, or the last FIRST_HISTORY_S seconds for a host seen
        for the first time (each poll then moves a sample per GPU, not ten minutes of them)."""
        return self._wait(self._poll(detail_of, gpu_history, dict(gpu_since or {})))

    async def _poll(self, detail_of: str | None, gpu_history: bool,
                    gpu_since: dict[str, float]) -> PollResult:
        hosts, apis, _ = await asyncio.gather(self.client.hosts(), self.client.apis(), self._read_cost())
        result = PollResult(at=time.time(), hosts=hosts, apis=apis, cost=self._cost)
        if detail_of:
            with contextlib.suppress(NotFound):
                result.detail = await self.client.api(detail_of)
        gpu_hosts = [h.name for h in result.hosts if h.state == "ready" and h.info and h.info.gpus]
        if gpu_history and gpu_hosts:
            since = {name: gpu_since.get(name, result.at - FIRST_HISTORY_S) for name in gpu_hosts}
            try:
                body = await self.client.fleet_gpus(since)
            except WorkbenchError as error:  # hosts and APIs still count; the GPU note says why
                result.gpu_errors = {name: f"GPU values not read: {error}" for name in gpu_hosts}
            else:
                result.gpus = body.reports
                result.gpu_errors = body.errors
        return result

    async def _read_cost(self) -> None:
        """Refresh the cost report when it is COST_EVERY_S old; a controller without one (older)
        or a failure keeps the last (the spend columns then show what they showed)."""
        if time.monotonic() - self._cost_at < COST_EVERY_S:
            return
        self._cost_at = time.monotonic()
        with contextlib.suppress(WorkbenchError):
            self._cost = await self.client.cost(COST_WINDOW)

    # -- APIs -----------------------------------------------------------------------------------
    def delete(self, name: str) -> DeletedBody:
        return self._wait(self.client.delete(name))

    def scale(self, name: str, request: ScaleRequest) -> ApiSummary:
        return self._wait(self.client.scale(name, request))

    def restart(self, name: str, replica_id: str) -> None:
        self._wait(self.client.restart(name, replica_id))

    def deploy(self, request: DeployRequest) -> Iterator[DeployEvent]:
        return self._iterate(self.client.deploy(request))

    def predict(self, name: str, payload: str) -> PredictResult:
        """POST `payload` (JSON text, or plain text) to the router at controller URL + /name."""
        return self._wait(self._predict(name, payload))

    async def _predict(self, name: str, payload: str) -> PredictResult:
        try:
            json.loads(payload)
            content_type = "application/json"
        except ValueError:
            content_type = "text/plain"
        started = time.perf_counter()
        try:
            response = await self._router.predict_response(name, data=payload.encode(),
                                                           headers={"Content-Type": content_type})
        except WorkbenchError as error:
            latency = (time.perf_counter() - started) * 1000
            answer = error.response
            if answer is None:  # nothing answered
                return PredictResult(None, "", latency, f"cannot reach the router at {self.url}: {error}")
            return PredictResult(answer.status_code, answer.text, latency)
        return PredictResult(response.status_code, response.text, (time.perf_counter() - started) * 1000)

    async def follow_logs(self, name: str, *, tail: int = 200,
                          replica: str | None = None) -> AsyncIterator[str]:
        """The API's log lines as they come, on the caller's (UI) loop; closing the iterator (a
        cancelled worker) ends the stream at once."""
        ui = asyncio.get_running_loop()
        lines: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for line in self.client.logs(name, tail=tail, follow=True, replica=replica):
                    ui.call_soon_threadsafe(lines.put_nowait, line)
            except WorkbenchError as error:
                ui.call_soon_threadsafe(lines.put_nowait, error)
            finally:
                ui.call_soon_threadsafe(lines.put_nowait, _END)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := await lines.get()) is not _END:
                if isinstance(item, WorkbenchError):
                    raise item
                yield item
        finally:
            future.cancel()

    # -- hosts ----------------------------------------------------------------------------------
    def add_host(self, request: AddHostRequest) -> Iterator[HostEvent]:
        return self._iterate(self.client.add_host(request))

    def upgrade_host(self, name: str) -> Iterator[HostEvent]:
        return self._iterate(self.client.upgrade_host(name))

    def remove_host(self, name: str) -> RemovedHostBody:
        return self._wait(self.client.remove_host(name))
