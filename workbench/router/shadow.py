"""Shadow traffic: a traffic splitter's shadow API gets a copy of each request it routes.

A copy is sent in the background, after the client's body was read, and its answer is thrown
away: it never delays or changes the client's answer. At most SHADOW_CONCURRENCY copies are
out at once (more are dropped); a body too large to keep (streamed through) is not copied.
Every copy is counted by outcome in ``workbench_router_shadow_requests_total``, and every copy sent
is metered under the shadow API as its own requests are (status, latency to the answer's headers,
in flight), which is what lets the candidate's latency and errors be compared with the live API's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from prometheus_client import Counter

from .api import ApiState
from .policies import pick
from .proxy import StreamedBody, Upstream, read_all
from .request import IncomingRequest

SHADOW_CONCURRENCY = 32
_now = time.monotonic


class ShadowCopies:
    """Sends the copies. `upstream` is set while the router runs (None before start and after
    close: copies then count as "no_api")."""

    def __init__(self, counter: Counter, apis: Mapping[str, ApiState],
                 concurrency: int = SHADOW_CONCURRENCY) -> None:
        self._counter = counter  # labels: api, outcome
        self._apis = apis
        self.upstream: Upstream | None = None
        self._slots = concurrency
        self._tasks: set[asyncio.Task[None]] = set()

    def copy(self, name: str, request: IncomingRequest) -> None:
        """Send a copy of `request` (its body read) to API `name` in the background."""
        if isinstance(request.body, StreamedBody):
            self._counter.labels(name, "skipped").inc()  # too large to copy
            return
        if self._slots <= 0:
            self._counter.labels(name, "dropped").inc()
            return
        self._slots -= 1
        task = asyncio.get_running_loop().create_task(self._send(name, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the copies still out, and wait for them."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send(self, name: str, request: IncomingRequest) -> None:
        outcome = "error"
        try:
            api = self._apis.get(name)
            upstream = self.upstream
            if api is None or upstream is None:
                outcome = "no_api"
                return
            now = _now()
            state = pick(api.pool, api.policy, (), now)
            if state is None:
                outcome = "no_replica"
                api.stats.done(503, 0.0, now)  # as the live API counts its "no ready replica"
                return
            headers = [*request.headers, ("x-request-id", request.request_id.decode("latin-1"))]
            body = request.body
            if isinstance(body, bytes):
                headers.append(("content-length", str(len(body))))
            stats = api.stats
            stats.enter()
            state.begin(now)
            status = 0  # none: cancelled (the router closes)
            answered = 0.0
            try:
                async with asyncio.timeout(api.routing.timeout):
                    response = await upstream.open(state, request.method, request.target, headers, body)
                    answered = _now()
                    status = response.status
                    await read_all(response, 0)
                outcome = "ok" if status < 500 else "5xx"
            except TimeoutError:
                status = 504
                raise
            except Exception:
                status = 502
                raise
            finally:
                end = _now()
                if answered and status < 500:
                    state.observe(answered - now, answered)
                state.end(now, end, False)
                stats.leave()
                if status:
                    stats.done(status, (answered or end) - now, end)
        except Exception:
            outcome = "error"
        finally:
            self._slots += 1
            self._counter.labels(name, outcome).inc()
