"""workbench.serving.limits: bounded concurrency and queue; 503 + Retry-After when full."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.serving.limits import Limiter, QueueFull


async def test_limiter_admits_queues_and_rejects() -> None:
    limiter = Limiter(max_concurrency=1, max_queue=1)
    await limiter.acquire()
    assert limiter.running == 1
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    with pytest.raises(QueueFull, match="queue full"):
        await limiter.acquire()
    limiter.release()  # hands the slot to the waiter
    await waiter
    assert (limiter.running, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.running == 0


async def test_cancelled_waiter_leaves_queue() -> None:
    limiter = Limiter(max_concurrency=1, max_queue=2)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.running == 0


async def test_fifo_order() -> None:
    limiter = Limiter(max_concurrency=1, max_queue=10)
    await limiter.acquire()
    order: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire()
        order.append(n)
        limiter.release()

    tasks = [asyncio.create_task(take(n)) for n in range(5)]
    await asyncio.sleep(0)
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.running == 0


SLOW = """
import threading
from pathlib import Path

class Predictor:
    def __init__(self, config):
        self.release = Path(config["release"])
    def predict(self, payload):
        Path(self.release.parent / f"started-{payload}").touch()
        for _ in range(3000):
            if self.release.exists():
                break
            threading.Event().wait(0.01)
        return payload
"""


async def test_queue_full_is_503_with_retry_after(replica: Callable[..., Any], tmp_path: Path) -> None:
    release = tmp_path / "release"
    rep = replica(
        SLOW,
        config={"release": str(release)},
        serving={"max_concurrency": 1, "max_queue": 1},
    )
    async with httpx.AsyncClient(base_url=rep.url, timeout=60) as client:
        first = asyncio.create_task(client.post("/", json=1))
        while not (tmp_path / "started-1").exists():  # 1 runs
            await asyncio.sleep(0.01)
        second = asyncio.create_task(client.post("/", json=2))  # 2 waits
        while "workbench_queue_depth 1.0" not in (await client.get("/metrics")).text:
            await asyncio.sleep(0.01)
        rejected = await asyncio.gather(*(client.post("/", json=n) for n in (3, 4, 5)))
        for response in rejected:
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"].startswith("queue full")
        release.touch()
        assert [(await first).json(), (await second).json()] == [1, 2]
        metrics = (await client.get("/metrics")).text
        assert 'workbench_requests_total{status="5xx"} 3.0' in metrics
        assert 'workbench_requests_total{status="2xx"} 2.0' in metrics


async def test_concurrency_bound_respected(replica: Callable[..., Any]) -> None:
    code = """
    import threading, time
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    class Predictor:
        def predict(self, payload):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.05)
            with lock:
                state["now"] -= 1
            return state["max"]
    """
    rep = replica(code, serving={"max_concurrency": 2, "max_queue": 50})
    async with httpx.AsyncClient(base_url=rep.url, timeout=60) as client:
        responses = await asyncio.gather(*(client.post("/") for _ in range(12)))
    assert all(r.status_code == 200 for r in responses)
    assert max(r.json() for r in responses) <= 2


async def test_timeouts_running_and_queued(app_client: Callable[..., Any]) -> None:
    """A timed-out sync predict keeps its slot until its thread ends; a request waiting
    behind it times out in the queue and leaves it."""
    code = """
    import time
    class Predictor:
        def predict(self, payload):
            time.sleep(payload)
            return payload
    """
    client = await app_client(code, serving={"max_concurrency": 1, "max_queue": 1, "request_timeout": 0.3})
    runtime = client.app.state.runtime
    slow_task = asyncio.create_task(client.post("/", json=1.5))
    while runtime.limiter.running == 0:
        await asyncio.sleep(0.005)
    queued = await client.post("/", json=0)
    slow = await slow_task
    assert slow.status_code == 504 and queued.status_code == 504
    assert runtime.limiter.waiting == 0
    while runtime.limiter.running:  # the abandoned thread finishes, then frees its slot
        await asyncio.sleep(0.01)
    assert (await client.post("/", json=0)).json() == 0


async def test_async_timeout_frees_slot_at_once(app_client: Callable[..., Any]) -> None:
    code = """
    import asyncio
    class Predictor:
        async def predict(self, payload):
            await asyncio.sleep(payload)
            return payload
    """
    client = await app_client(code, serving={"max_concurrency": 1, "max_queue": 0, "request_timeout": 0.3})
    assert (await client.post("/", json=30)).status_code == 504
    assert client.app.state.runtime.limiter.running == 0
    assert (await client.post("/", json=0)).json() == 0
