"""workbench.serving.batching: grouping requests into one predict call, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.serving.batching import Batcher, BatchError
from workbench.serving.limits import QueueFull


def make_batcher(results: Callable[[list[Any]], Any], sizes: list[int], **kw: Any) -> Batcher:
    async def predict(payloads: list[Any], qp: list[Any], hd: list[Any], done: Callable[[], None]) -> Any:
        try:
            await asyncio.sleep(0.01)
            return results(payloads)
        finally:
            done()

    opts: dict[str, Any] = {
        "max_batch_size": 4,
        "batch_timeout": 0.05,
        "max_concurrency": 1,
        "max_queue": 100,
    }
    opts.update(kw)
    return Batcher(predict, on_batch=sizes.append, **opts)


async def test_groups_and_keeps_order() -> None:
    sizes: list[int] = []
    batcher = make_batcher(lambda p: [x * 10 for x in p], sizes)
    try:
        results = await asyncio.gather(*(batcher.submit(n) for n in range(10)))
    finally:
        await batcher.close()
    assert results == [n * 10 for n in range(10)]
    assert sizes == [4, 4, 2]
    assert (batcher.waiting, batcher.running) == (0, 0)


async def test_timeout_sends_partial_batch() -> None:
    sizes: list[int] = []
    batcher = make_batcher(lambda p: p, sizes, max_batch_size=8, batch_timeout=0.02)
    try:
        assert await asyncio.wait_for(batcher.submit("x"), 5) == "x"
    finally:
        await batcher.close()
    assert sizes == [1]


async def test_wrong_length_fails_whole_batch() -> None:
    batcher = make_batcher(lambda p: p[:-1], [])
    try:
        results = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    finally:
        await batcher.close()
    assert all(isinstance(r, BatchError) for r in results)
    assert "list of 3 results" in str(results[0])


async def test_predict_exception_reaches_every_caller() -> None:
    def boom(p: list[Any]) -> Any:
        raise ValueError("batch boom")

    batcher = make_batcher(boom, [])
    try:
        results = await asyncio.gather(*(batcher.submit(n) for n in range(2)), return_exceptions=True)
    finally:
        await batcher.close()
    assert [type(r) for r in results] == [ValueError, ValueError]


async def test_queue_full() -> None:
    gate = asyncio.Event()

    async def predict(payloads: list[Any], qp: list[Any], hd: list[Any], done: Callable[[], None]) -> Any:
        try:
            await gate.wait()
            return payloads
        finally:
            done()

    batcher = Batcher(predict, max_batch_size=2, batch_timeout=0, max_concurrency=1, max_queue=1)
    try:
        first = asyncio.create_task(batcher.submit(0))  # runs alone
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(batcher.submit(n)) for n in (1, 2, 3)]  # 2 + 1 may wait
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await batcher.submit(4)
        gate.set()
        assert await first == 0
        assert await asyncio.gather(*waiting) == [1, 2, 3]
    finally:
        await batcher.close()


async def test_cancelled_request_is_skipped() -> None:
    sizes: list[int] = []
    batcher = make_batcher(lambda p: p, sizes, batch_timeout=0.2)
    try:
        gone = asyncio.create_task(batcher.submit("gone"))
        await asyncio.sleep(0.01)
        gone.cancel()
        assert await batcher.submit("kept") == "kept"
    finally:
        await batcher.close()
    assert sizes == [1]
    assert batcher.waiting == 0


BATCHED = """
import json, time
from pathlib import Path

class Predictor:
    def __init__(self, config):
        self.log = Path(config["log"])
    def predict(self, payload, query_params, headers):
        with self.log.open("a") as f:
            f.write(json.dumps(len(payload)) + "\\n")
        time.sleep(0.05)
        if payload and payload[0] == "short":
            return payload[1:]
        rows = zip(payload, query_params, headers)
        return [{"p": p, "q": q.get("i"), "h": h.get("x-i")} for p, q, h in rows]
"""


async def test_batching_over_http(replica: Callable[..., Any], tmp_path: Path) -> None:
    log = tmp_path / "sizes.log"
    rep = replica(
        BATCHED,
        config={"log": str(log)},
        serving={"max_batch_size": 4, "batch_timeout": 0.5, "max_concurrency": 1},
    )
    async with httpx.AsyncClient(base_url=rep.url, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post(f"/?i={n}", json=n, headers={"x-i": str(n)}) for n in range(8))
        )
        assert [r.json() for r in responses] == [{"p": n, "q": str(n), "h": str(n)} for n in range(8)]
        sizes = [int(line) for line in log.read_text().split()]
        assert sum(sizes) == 8 and max(sizes) > 1 and max(sizes) <= 4

        bad = await asyncio.gather(client.post("/", json="short"), client.post("/", json="x"))
        for response in bad:
            assert response.status_code == 500
            assert "BatchError" in response.json()["error"]
        assert (await client.post("/", json=1)).status_code == 200

        metrics = (await client.get("/metrics")).text
        assert "workbench_batch_size_count" in metrics
        assert 'workbench_requests_total{status="5xx"} 2.0' in metrics
