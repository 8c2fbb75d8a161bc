"""Fixtures for the predictor runtime: in-process apps and real `python -m workbench.serving`
subprocesses serving a predictor.py written by the test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from workbench.serving import create_app
from workbench.wire.replica import RUNTIME_CONFIG_ENV, RuntimeConfig, ServingConfig

READY_TIMEOUT = 60.0


def write_project(root: Path, code: str, name: str = "predictor.py") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(textwrap.dedent(code))
    return root


def runtime_config(project: Path, **kw: Any) -> RuntimeConfig:
    serving = ServingConfig(**kw.pop("serving", {}))
    return RuntimeConfig(api="test-api", project_dir=str(project), serving=serving, **kw)


def wait_until(check: Callable[[], bool], timeout: float = READY_TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[httpx.AsyncClient]]]:
    """``await app_client(code, serving={...}, config={...})``: the app in process (lifespan
    running) behind an httpx ASGITransport; ready unless ``ready=False``."""
    counter = itertools.count()
    async with contextlib.AsyncExitStack() as stack:

        async def make(code: str, *, ready: bool = True, **kw: Any) -> httpx.AsyncClient:
            project = write_project(tmp_path / f"app{next(counter)}", code)
            app = create_app(runtime_config(project, **kw))
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://replica")
            )
            client.app = app  # type: ignore[attr-defined]
            if ready:
                await wait_ready_async(client)
            return client

        yield make


async def wait_ready_async(client: httpx.AsyncClient, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get("/readyz")).status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError("app not ready in time")
        await asyncio.sleep(0.01)


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30.0), **kw)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"replica exited {self.proc.returncode}:\n{self.stderr()}")
            try:
                return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout, "replica ready")

    def wait_exit(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def spawn(args: list[str], env_config: str | None, stderr_path: Path, **kw: Any) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop(RUNTIME_CONFIG_ENV, None)
    if env_config is not None:
        env[RUNTIME_CONFIG_ENV] = env_config
    env["PYTHONUNBUFFERED"] = "1"
    with stderr_path.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "workbench.serving", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            **kw,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Callable[..., Replica]]:
    """``replica(code, serving={...}, ready=True)``: a real subprocess on a loopback socket
    it gets by ``--fd`` (no port races); killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(code: str, *, ready: bool = True, args: tuple[str, ...] = (), **kw: Any) -> Replica:
        n = len(procs)
        project = write_project(tmp_path / f"p{n}", code)
        cfg = runtime_config(project, **kw)
        sock = listening_socket()
        port = sock.getsockname()[1]
        try:
            proc = spawn(
                ["--fd", str(sock.fileno()), *args],
                cfg.model_dump_json(),
                tmp_path / f"stderr{n}.txt",
                pass_fds=[sock.fileno()],
            )
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


def config_json(project: Path, **kw: Any) -> str:
    return json.dumps(json.loads(runtime_config(project, **kw).model_dump_json()))
