"""The controller's listening socket (daemon._bind): its connections get TCP_NODELAY, so an answer
written in two parts (the router's headers, then its body) is not held back by Nagle until the
client's delayed ACK (40 ms on Linux) on a kept-alive connection."""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from typing import Any

import httpx
import uvicorn

from workbench.controller.daemon import _bind


async def two_part_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_kept_alive_answers_are_not_held_by_nagle() -> None:
    sock = _bind("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(two_part_answer, log_level="warning", lifespan="off"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        times = []
        with httpx.Client() as client:
            for _ in range(8):
                started = time.monotonic()
                assert client.get(f"http://127.0.0.1:{port}/").text == "ok"
                times.append(time.monotonic() - started)
        assert statistics.median(times[1:]) < 0.02, times  # with proto 0: ~0.044 s each
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
