"""Streaming end to end, and cancellation when the client leaves: real replicas
(``python -m workbench.serving``) behind the Router in a real uvicorn server, real HTTP clients.
Timings only bound hangs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.router.conftest import wait_for
from tests.serving.conftest import replica  # noqa: F401  (the fixture)
from workbench.router import Router

PREDICTOR = """
import asyncio, os, time

class Predictor:
    def __init__(self, config):
        self.markers = config["markers"]

    def mark(self, name, text):
        with open(os.path.join(self.markers, name), "w") as f:
            f.write(text)

    async def predict(self, payload):
        mode = payload["mode"]
        if mode == "quick":
            return {"ok": True}
        if mode == "sleep":
            try:
                await asyncio.sleep(payload["seconds"])
                return {"slept": payload["seconds"]}
            finally:
                self.mark(payload["id"], "finally ran")
        if mode == "agen":
            return self.agen(payload)
        return self.gen(payload)

    async def agen(self, p):
        n = 0
        try:
            while n < p.get("items", 10**9):
                if n and n == p.get("stall_after"):
                    await asyncio.sleep(3600)
                yield {"n": n, "at": time.time()}
                n += 1
                await asyncio.sleep(p.get("gap", 0.05))
        finally:
            self.mark(p["id"], f"closed after {n}")

    def gen(self, p):
        n = 0
        try:
            while n < p.get("items", 10**9):
                yield f"item {n};"
                n += 1
                time.sleep(p.get("gap", 0.05))
        finally:
            self.mark(p["id"], f"closed after {n}")
"""


@dataclass
class Streaming:
    url: str  # the API through the router
    markers: Path  # where the predictor's `finally` blocks leave their marks
    router: Router

    def cancelled(self) -> float:
        return self.router._metrics.client_cancelled.labels("s")._value.get()


@pytest.fixture
def streaming(replica, router_server, tmp_path: Path):  # noqa: F811
    """``streaming(serving=..., routing=...)``: one replica of PREDICTOR behind a router."""
    markers = tmp_path / "markers"
    markers.mkdir()

    def start(serving: dict | None = None, routing: dict | None = None) -> Streaming:
        rep = replica(PREDICTOR, config={"markers": str(markers)},
                      serving={"max_concurrency": 4, **(serving or {})})
        srv = router_server()
        srv.add_api("s", [rep], routing=routing or {})
        return Streaming(srv.url + "/s", markers, srv.router)

    return start


def marker(markers: Path, name: str, timeout: float = 10.0) -> str:
    path = markers / name
    wait_for(path.exists, timeout, f"the replica's finally for {name}")
    return path.read_text()


def test_a_generator_streams_through_the_router_chunk_by_chunk(streaming):
    s = streaming()
    payload = {"mode": "agen", "id": "a", "items": 5, "gap": 0.4}
    started = time.monotonic()
    arrivals: list[float] = []
    lines: list[dict] = []
    with httpx.stream("POST", s.url, json=payload, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["x-workbench-replica"]
        for line in response.iter_lines():
            arrivals.append(time.monotonic() - started)
            lines.append(json.loads(line))
    assert [item["n"] for item in lines] == [0, 1, 2, 3, 4]
    # the last item is produced 1.6 s in: the first must have come well before (held back, it
    # would come one gap late at best, or with the end)
    assert arrivals[0] < arrivals[-1] - 1.0, arrivals
    assert marker(s.markers, "a") == "closed after 5"


def test_sse_gets_one_event_per_item(streaming):
    s = streaming()
    with httpx.stream("POST", s.url, json={"mode": "agen", "id": "b", "items": 3, "gap": 0},
                      headers={"accept": "text/event-stream"}, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert len(events) == 3 and all(e.startswith("data: {") for e in events)
    assert [json.loads(e[len("data: "):])["n"] for e in events] == [0, 1, 2]


def test_a_sync_generator_streams_text(streaming):
    s = streaming()
    response = httpx.post(s.url, json={"mode": "gen", "id": "c", "items": 3, "gap": 0}, timeout=30)
    assert response.status_code == 200 and response.text == "item 0;item 1;item 2;"
    assert response.headers["content-type"].startswith("text/plain")
    assert marker(s.markers, "c") == "closed after 3"


def _slot_is_free(url: str) -> None:
    """With max_concurrency 1 and no queue, a quick request is served (not 503 "queue full")."""
    def served() -> bool:
        return httpx.post(url, json={"mode": "quick"}, timeout=10).status_code == 200

    wait_for(served, 5, "the freed slot to serve the next request")


def test_an_async_prediction_is_cancelled_when_the_client_leaves(streaming):
    s = streaming(serving={"max_concurrency": 1, "max_queue": 0})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(s.url, json={"mode": "sleep", "seconds": 60, "id": "d"}, timeout=0.5)
    assert marker(s.markers, "d") == "finally ran"  # cancelled, not left sleeping for 60 s
    _slot_is_free(s.url)
    assert s.cancelled() == 1


def test_an_async_generator_is_closed_when_the_client_leaves(streaming):
    s = streaming(serving={"max_concurrency": 1, "max_queue": 0})
    with httpx.stream("POST", s.url, json={"mode": "agen", "id": "e", "gap": 0.05}, timeout=30) as response:
        lines = response.iter_lines()
        next(lines), next(lines)
    left = time.monotonic()
    text = marker(s.markers, "e")
    assert text.startswith("closed after"), text
    assert time.monotonic() - left < 5
    _slot_is_free(s.url)


def test_a_sync_generator_is_closed_when_the_client_leaves(streaming):
    s = streaming(serving={"max_concurrency": 1, "max_queue": 0})
    with httpx.stream("POST", s.url, json={"mode": "gen", "id": "f", "gap": 0.05}, timeout=30) as response:
        next(response.iter_bytes())
    assert marker(s.markers, "f").startswith("closed after")
    _slot_is_free(s.url)


def test_stream_idle_timeout_ends_a_stalled_stream(streaming):
    s = streaming(routing={"stream_idle_timeout": 0.5})
    started = time.monotonic()
    with httpx.stream("POST", s.url, json={"mode": "agen", "id": "g", "stall_after": 2, "gap": 0},
                      headers={"accept": "text/event-stream"}, timeout=30) as response:
        text = response.read().decode()
    assert time.monotonic() - started < 10
    events = [e for e in text.split("\n\n") if e]
    assert [json.loads(e[len("data: "):])["n"] for e in events[:2]] == [0, 1]
    kind, data = events[2].split("\n")
    assert kind == "event: error" and "stream_idle_timeout" in json.loads(data[len("data: "):])["error"]
    assert marker(s.markers, "g") == "closed after 2"  # the router closed the connection: generator closed


def test_routing_timeout_bounds_the_first_byte_not_the_stream(streaming):
    s = streaming(routing={"timeout": 0.5})
    response = httpx.post(s.url, json={"mode": "agen", "id": "h", "items": 4, "gap": 0.3}, timeout=30)
    assert response.status_code == 200 and len(response.text.splitlines()) == 4  # 0.9 s in all
    slow = httpx.post(s.url, json={"mode": "sleep", "seconds": 5, "id": "i"}, timeout=30)
    assert slow.status_code == 504 and "0.5s" in slow.json()["error"]
