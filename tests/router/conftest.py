"""Fixtures for the router: real replicas (``python -m workbench.serving --fd N``) serving a
config-driven test predictor, and the Router inside a real uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from tests.serving.conftest import Replica, listening_socket, runtime_config, spawn, stop, write_project
from workbench.router import ApiRoute, Endpoint, Router
from workbench.spec.models import RoutingSpec

T = TypeVar("T")

PREDICTOR = """
import asyncio, os, time

class Predictor:
    def __init__(self, config):
        self.config = config
        while config.get("ready_file") and not os.path.exists(config["ready_file"]):
            time.sleep(0.05)  # still loading: /readyz answers 503 until the file exists

    async def predict(self, payload, query_params, headers):
        c = self.config
        delay = float(query_params.get("sleep", c.get("sleep", 0)))
        if c.get("sleep_file") and os.path.exists(c["sleep_file"]):
            delay = float(open(c["sleep_file"]).read() or 0)
        if delay:
            await asyncio.sleep(delay)
        if c.get("die") or query_params.get("die"):
            os._exit(1)
        if c.get("fail"):
            raise RuntimeError("flaky replica")
        if isinstance(payload, bytes):
            payload = {"bytes": len(payload)}
        answer = {"replica": c.get("name"), "payload": payload, "request_id": headers.get("x-request-id")}
        if query_params.get("headers"):
            answer["headers"] = headers  # what reached the replica
        return answer
"""


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[..., Replica]]:
    """``replicas(name, config={...}, serving={...})``: a ready replica subprocess."""
    procs: list[subprocess.Popen[bytes]] = []
    project = write_project(tmp_path / "project", PREDICTOR)

    def start(name: str = "r", *, ready: bool = True, config: dict[str, Any] | None = None,
              serving: dict[str, Any] | None = None) -> Replica:
        n = len(procs)
        cfg = runtime_config(project, config={"name": name, **(config or {})},
                             serving={"max_concurrency": 64, "max_queue": 1024, **(serving or {})})
        sock = listening_socket()
        port = sock.getsockname()[1]
        try:
            proc = spawn(["--fd", str(sock.fileno())], cfg.model_dump_json(), tmp_path / f"stderr{n}.txt",
                         pass_fds=[sock.fileno()])
        finally:
            sock.close()
        procs.append(proc)
        rep = Replica(proc, f"http://127.0.0.1:{port}", port, tmp_path / f"stderr{n}.txt")
        if ready:
            rep.wait_ready()
        return rep

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)


class RouterServer:
    """A Router in a real uvicorn server on its own event loop thread."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(router, log_level="warning", access_log=False, lifespan="on",
                                proxy_headers=False, server_header=False)
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 30, "router started")
        assert self.server.started

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the router's loop (as the controller would) and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add_api(self, name: str, reps: list[Replica], **kw: Any) -> None:
        routing = kw.pop("routing", {})
        self.call(self.router.set_route, ApiRoute(name=name, routing=RoutingSpec(**routing), **kw))
        self.set(name, reps)

    def set(self, name: str, reps: list[Replica]) -> None:
        self.call(self.router.set_endpoints, name, [endpoint(r) for r in reps])

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def endpoint(rep: Replica) -> Endpoint:
    return Endpoint(replica_id=f"replica-{rep.port}", url=rep.url)


def replica_id(rep: Replica) -> str:
    return f"replica-{rep.port}"


@pytest.fixture
def router_server() -> Iterator[Callable[..., RouterServer]]:
    """``router_server(**Router kwargs)``: started; shut down at teardown."""
    servers: list[RouterServer] = []

    def start(**kw: Any) -> RouterServer:
        kw.setdefault("registry", CollectorRegistry())
        server = RouterServer(Router(**kw))
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


def router_subprocess(args: list[str], stderr: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m workbench.router`` on a loopback socket passed by --fd."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    try:
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workbench.router", "--fd", str(sock.fileno()), *args],
                stdout=subprocess.DEVNULL, stderr=err, pass_fds=[sock.fileno()],
            )
    finally:
        sock.close()
    return proc, f"http://127.0.0.1:{port}"
