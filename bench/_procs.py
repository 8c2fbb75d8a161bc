"""Start echo-style replicas and a standalone router for the router benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pin(cpus: set[int] | None):  # type: ignore[no-untyped-def]
    if not cpus:
        return None
    usable = os.sched_getaffinity(0)
    cpus = cpus & usable or None
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


@contextlib.contextmanager
def replica(project: Path, config: dict | None = None, cpus: set[int] | None = None) -> Iterator[str]:
    port = free_port()
    cfg = {"api": "echo", "project_dir": str(project), "config": config or {},
           "serving": {"max_concurrency": 64, "max_queue": 1024}}
    env = {**os.environ, "WORKBENCH_RUNTIME_CONFIG": json.dumps(cfg)}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.serving", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pin(cpus))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/readyz")
        yield url
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def router(apis: dict[str, list[str]], policy: str = "ewma", cpus: set[int] | None = None,
           routing: dict | None = None) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "workbench.router", "--port", str(port), "--policy", policy,
            "--routing", json.dumps(routing or {})]
    for name, urls in apis.items():
        args += ["--api", f"{name}={','.join(urls)}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_pin(cpus))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + f"/{next(iter(apis))}/readyz")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
