"""A real controller in a subprocess (its own home, agent and port), projects, and a load loop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.real_parts import EXAMPLES, Workbench, free_port, wait_until

#: echo, plus: config.delay (seconds to sleep), config.crash (raise at start), config.tag (echoed).
PREDICTOR = '''
import asyncio, os


class Predictor:
    def __init__(self, config):
        if config.get("crash"):
            print("boom: this predictor refuses to start", flush=True)
            raise RuntimeError("boom")
        self.delay = float(config.get("delay", 0))
        self.tag = config.get("tag")

    async def predict(self, payload):
        if self.delay:
            await asyncio.sleep(self.delay)
        return {"echo": payload, "tag": self.tag, "pid": os.getpid()}
'''


def make_project(root: Path, text: str, name: str = "proj") -> Path:
    """A project folder with the test predictor and `text` as workbench.yaml."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictor.py").write_text(PREDICTOR)
    (folder / "workbench.yaml").write_text(text)
    return folder


def echo_project(root: Path, **overrides: str) -> Path:
    """examples/echo as a project folder with a workbench.yaml of our own."""
    folder = root / overrides.pop("folder", "echo")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictor.py").write_text((EXAMPLES / "echo" / "predictor.py").read_text())
    (folder / "workbench.yaml").write_text(overrides.pop("yaml"))
    return folder


@dataclass
class Controller:
    """`python -m workbench.controller serve` against the bench's home, on a free port."""

    bench: Workbench
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return dict(self.bench.env, WORKBENCH_PORT=str(self.port))

    @property
    def home(self) -> Path:
        return self.bench.home / "controller"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.home / "token").read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        self.bench.home.mkdir(parents=True, exist_ok=True)
        log = (self.bench.home / "controller-test.out").open("ab")
        return subprocess.Popen([sys.executable, "-m", "workbench.controller", "serve", *args],
                                env=self.env, stdout=log, stderr=log, start_new_session=True)

    def start(self, timeout: float = 60) -> None:
        self.process = self.spawn()

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"controller exited {self.process.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/v1/hosts", headers=self.headers, timeout=2).status_code == 200
            except (httpx.HTTPError, OSError):
                return False

        wait_until(answers, timeout, what="the controller to answer")

    def output(self) -> str:
        path = self.bench.home / "controller-test.out"
        return path.read_text(errors="replace")[-5000:] if path.is_file() else ""

    def signal(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.process = None
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.signal(signal.SIGTERM)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    # -- the control API --------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers,
                             timeout=kwargs.pop("timeout", 60), **kwargs)

    def deploy(self, path: Path, timeout: float = 600, **body: Any) -> list[dict[str, Any]]:
        events = []
        with httpx.stream("POST", f"{self.url}/v1/deployments", headers=self.headers,
                          json={"path": str(path), **body}, timeout=timeout) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.strip():
                    events.append(json.loads(line))
        assert events and events[-1]["kind"] in ("done", "error"), events
        assert sum(e["kind"] in ("done", "error") for e in events) == 1
        return events

    def detail(self, name: str) -> dict[str, Any]:
        response = self.api("GET", f"/v1/apis/{name}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def predict(self, name: str, payload: Any, timeout: float = 30) -> httpx.Response:
        return httpx.post(f"{self.url}/{name}", json=payload, timeout=timeout)

    def agent_replicas(self, api: str | None = None) -> list[dict[str, Any]]:
        config = json.loads((self.bench.agent_home / "config.json").read_text())
        response = httpx.get(f"http://127.0.0.1:{config['port']}/v1/replicas",
                             params={"api": api} if api else None, timeout=10,
                             headers={"Authorization": f"Bearer {config['token']}"})
        response.raise_for_status()
        return list(response.json())

    def wait_ready(self, name: str, count: int, timeout: float = 120) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            detail = self.detail(name)
            live = [r for r in detail["replica_list"] if r["state"] == "ready" and r["up_to_date"]]
            ok = detail["replicas"]["ready"] == count and len(detail["replica_list"]) == count
            return detail if ok and len(live) == count else None

        return wait_until(ready, timeout, interval=0.3, what=f"{count} ready replicas of {name}")  # type: ignore[no-any-return]


class Load:
    """`clients` threads POSTing to an API through the router until stopped; counts failures."""

    def __init__(self, url: str, clients: int = 4, payload: Any = None, timeout: float = 30):
        self.url = url
        self.clients = clients
        self.payload = payload if payload is not None else {"x": 1}
        self.timeout = timeout
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=self.payload)
                    good = response.status_code == 200
                    why = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as error:
                    good, why = False, repr(error)
                with self._lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failures.append(why)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def pids_of(bench: Workbench) -> list[int]:
    """Process-runtime replica pids the agent recorded that are alive."""
    alive = []
    for meta in (bench.agent_home / "replicas").glob("*.json"):
        with contextlib.suppress(ValueError, OSError):
            pid = json.loads(meta.read_text()).get("pid")
            if pid:
                try:
                    os.kill(int(pid), 0)
                    alive.append(int(pid))
                except ProcessLookupError:
                    pass
    return alive


def wait_gone(check: Any, timeout: float = 60, what: str = "cleanup") -> None:
    wait_until(check, timeout, what=what)
    time.sleep(0)
